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
