"""Command-line interface: `python -m engine <command>`. It only parses arguments and calls the modules."""
from __future__ import annotations

import argparse
import json
import sys
import warnings

from .errors import EngineError, SpecAwareWarning


def cmd_verify_golden(args) -> int:
    from .golden import run_golden
    failed = False
    for path in args.files:
        for name, diff, scale, ok in run_golden(path):
            failed |= not ok
            print(f"{'ok  ' if ok else 'FAIL'} {path} {name}: max|diff| {diff:.3g} (max|ref| {scale:.3g})")
    return 1 if failed else 0


def cmd_inspect_weights(args) -> int:
    from .model.weights import load_checkpoint
    ckpt = load_checkpoint(args.path, num_heads=args.num_heads)
    summary = ckpt.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['path']}: SpecAware encoder E={summary['embed_dim']}, depth {summary['depth']}, "
          f"{summary['num_heads']} heads, patch {summary['patch_size']}, rank {summary['rank']}, "
          f"content grid {summary['content_grid']}")
    d = summary["decoder"]
    print(f"decoder: {'E=%d, depth %d, %d heads' % (d['embed_dim'], d['depth'], d['num_heads']) if d else 'none (encoder only)'}")
    print(f"{summary['tensors']} tensors, {summary['parameters'] / 1e6:.1f} M parameters; every encoder tensor present")
    for note in summary["notes"]:
        print(f"note: {note}")
    return 0


def cmd_info(args) -> int:
    from .jobs import run_job
    result, warns = run_job("info", {"raster": args.raster, "profile": args.profile, "sensor": args.sensor,
                                     "level": args.level})
    for w in warns:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps({**result, "warnings": warns}, indent=2))
        return 0
    r = result
    print(f"{r['path']}")
    print(f"  size       {r['width']} × {r['height']} px, {r['bands']} bands ({r['dtype']}, {r['driver']})")
    print(f"  sensor     {r['sensor']} ({r['sensor_name']}), level {r['level']}, profile from {r['profile_source']}")
    wr = r["wavelength_range_nm"]
    print(f"  bands used {r['bands_used']} of {r['bands']}" + (f", {wr[0]:.1f}–{wr[1]:.1f} nm" if wr else ""))
    reasons: dict[str, list[int]] = {}
    for d in r["dropped"]:
        reasons.setdefault(d["reason"], []).append(d["band"])
    for reason, bands in reasons.items():
        print(f"  dropped    {len(bands)}: {reason} (0-based {bands[:10]}{'…' if len(bands) > 10 else ''})")
    print(f"  GSD        {r['gsd_m']} m" if r["gsd_m"] else "  GSD        unknown (no georeferencing)")
    print(f"  no-data    {r['nodata'] if r['nodata'] is not None else 'none declared'} (also -9999, NaN, ±inf); "
          f"scale ×{r['scale']:g}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="SpecAware engine")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("verify-golden", help="compare the engine model with golden reference files")
    s.add_argument("files", nargs="+")
    s.set_defaults(func=cmd_verify_golden)
    s = sub.add_parser("inspect-weights", help="check a SpecAware checkpoint and print its configuration")
    s.add_argument("path")
    s.add_argument("--num-heads", type=int, help="attention heads, when the width is not a preset's")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_inspect_weights)
    s = sub.add_parser("info", help="the sensor profile the engine detects for a raster")
    s.add_argument("raster")
    s.add_argument("--profile", help="built-in or custom profile name, or a profile JSON file")
    s.add_argument("--sensor", choices=["avc", "avng", "av3", "others"])
    s.add_argument("--level", choices=["L1", "L2"])
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_info)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    warnings.simplefilter("always", SpecAwareWarning)
    warnings.showwarning = lambda msg, *a, **k: print(f"warning: {msg}", file=sys.stderr)
    try:
        return args.func(args)
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
