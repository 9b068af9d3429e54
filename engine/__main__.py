"""Command-line interface: `python -m engine <command>`. It only parses arguments and calls the modules."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from .errors import EngineError, SpecAwareWarning


def cmd_verify_golden(args) -> int:
    from .golden import run_golden
    failed = False
    for path in args.files:
        for name, diff, scale, ok in run_golden(path, args.device):
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


def _progress(fraction: float, message: str) -> None:
    print(f"[{100 * fraction:5.1f}%] {message}", file=sys.stderr, flush=True)


def _run_and_print(job: str, params: dict, as_json: bool, device: str | None = None):
    from .jobs import run_job
    from .runtime import Runtime
    result, warns = run_job(job, params, progress=_progress, runtime=Runtime(device or "auto"))
    for w in warns:
        print(f"warning: {w}", file=sys.stderr)
    if as_json:
        print(json.dumps({**result, "warnings": warns}, indent=2, default=str))
    return result


def _accuracy_line(acc: dict | None) -> str:
    if not acc:
        return "no held-out polygons, so no independent accuracy"
    return (f"OA {100 * acc['oa']:.1f} %, AA {100 * acc['aa']:.1f} %, kappa {acc['kappa']:.3f}, "
            f"mIoU {acc['miou']:.3f} on {acc['pixels']} held-out pixels")


def _job_from_args(job: str, args) -> dict:
    """Run `job` with the command's options as its params; prints the JSON result itself with --json."""
    params = {k: v for k, v in vars(args).items() if k not in ("func", "command", "json", "device")}
    return _run_and_print(job, params, args.json, args.device)


def cmd_finetune(args) -> int:
    r = _job_from_args("finetune", args)
    if not args.json:
        print(f"model {r['name']} saved in {r['bundle']}")
        print(f"backbone: {r['backbone']}")
        print(f"accuracy: {_accuracy_line(r['validation'])}")
        print(f"report: {r['report']}")
    return 0


def cmd_classify(args) -> int:
    r = _job_from_args("classify", args)
    if not args.json:
        print("\n".join(f"wrote {path}" for path in r["outputs"]))
        print(f"report: {r['report']} ({r['kind']})")
        for name, ha in (r["areas_ha"] or {}).items():
            print(f"  {name:20s} {ha:12.2f} ha")
    return 0


def cmd_change(args) -> int:
    r = _job_from_args("change", args)
    if not args.json:
        print("\n".join(f"wrote {path}" for path in r["outputs"]))
        print(f"overlap {r['overlap_area_ha']} ha ({r['pairing']}); threshold {r['threshold']} "
              f"({r['threshold_method']}); changed {r['changed_area_ha']} ha in {r['polygons']['count']} polygon(s)")
        for t, ha in (r.get("transitions_ha") or {}).items():
            print(f"  {t:32s} {ha:12.2f} ha")
    return 0


def cmd_classify_cells(args) -> int:
    r = _job_from_args("classify-cells", args)
    if not args.json:
        print(f"wrote {r['out']}: {r['cells']} cells ({r['method']})")
        for name, count in r["cells_per_class"].items():
            print(f"  {name:20s} {count:8d} cells")
    return 0


def cmd_adapt(args) -> int:
    r = _run_and_print("adapt", {"rasters": args.raster, "out": args.out, "minutes": args.minutes,
                                 "backbone": args.backbone, "preset": args.preset, "patch": args.patch,
                                 "batch_size": args.batch_size, "seed": args.seed}, args.json, args.device)
    if not args.json:
        print(f"adapted backbone {r['backbone']} after {r['steps']} MAE steps in {r['seconds']} s "
              f"(loss {r['loss_first']:.4f} → {r['loss_last']:.4f}); start fine-tuning from it with "
              f"`finetune --backbone {r['backbone']}`")
    return 0


def cmd_pretrain(args) -> int:
    """Single process, or one rank of a torchrun launch."""
    from .distributed import process_group
    from .pretrain import PretrainConfig, pretrain
    cfg = PretrainConfig.from_params(vars(args))
    with process_group(args.device) as ranks:
        r = pretrain(args.data, args.out, cfg, ranks, args.init, args.preset, args.resume,
                     _progress if ranks.main else None)
        if ranks.main:
            print(json.dumps({k: r[k] for k in ("steps", "world_size", "seconds", "loss_first", "loss_last",
                                                "rank_checksums", "init")}, indent=1) if args.json else
                  f"{r['steps']} steps on {r['world_size']} rank(s), loss {r['loss_first']:.4f} → "
                  f"{r['loss_last']:.4f}; backbone {Path(args.out) / 'backbone.pth'}")
    return 0


def cmd_make_patches(args) -> int:
    from .patches import write_patches
    manifest = write_patches(args.raster, args.out, args.patch)
    print(f"wrote {manifest} and its .npz patches")
    return 0


def cmd_classify_batch(args) -> int:
    from .batch import classify_batch
    from .distributed import process_group
    with process_group(args.device) as ranks:
        r = classify_batch(args.rasters, args.model, args.out, ranks, _progress if ranks.main else None)
        if ranks.main:
            print(f"{r['classified']} classified, {r['skipped']} skipped (already done) on {r['world_size']} "
                  f"rank(s); summary {Path(args.out) / 'summary.json'}")
    return 0


def cmd_models(args) -> int:
    params = {"action": args.action, "name": args.name, "new_name": args.new_name}
    if args.action in ("show", "delete", "rename") and not args.name:
        raise EngineError(f"models {args.action} needs a model name")
    if args.action == "rename" and not args.new_name:
        raise EngineError("models rename needs the old and the new name")
    r = _run_and_print("models", params, args.json)
    if args.json:
        return 0
    if args.action == "list":
        print(f"models in {r['directory']}:" if r["models"] else f"no models yet in {r['directory']}")
        for m in r["models"]:
            miou = f"val mIoU {m['val_miou']:.3f}" if m["val_miou"] is not None else "not validated"
            print(f"  {m['name']:24s} {len(m['classes'] or [])} classes, {m['sensor']}, {miou}, {m['created']}"
                  if not m["damaged"] else f"  {m['name']:24s} DAMAGED model.json")
    elif args.action == "show":
        print(json.dumps({k: r[k] for k in ("name", "path", "backbone", "head", "classes", "tile", "created",
                                            "engine_version") if k in r}, indent=2))
        print(f"accuracy: {_accuracy_line(r.get('validation'))}")
    else:
        print(next(iter(r.values())))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="SpecAware engine")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("verify-golden", help="compare the engine model with golden reference files")
    s.add_argument("files", nargs="+")
    s.add_argument("--device", default="cpu", help="cpu (default) or cuda: check the model on the GPU")
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

    def sensor_options(s):
        s.add_argument("--profile", help="sensor profile to use when the raster has no wavelength metadata")
        s.add_argument("--sensor", choices=["avc", "avng", "av3", "others"])
        s.add_argument("--level", choices=["L1", "L2"])
        s.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
        s.add_argument("--json", action="store_true")

    s = sub.add_parser("finetune", help="train a model bundle from training polygons")
    s.add_argument("--raster", required=True)
    s.add_argument("--polygons", required=True, help="vector file (GPKG, SHP, GeoJSON) of labelled polygons/points")
    s.add_argument("--class-field", required=True, dest="class_field")
    s.add_argument("--out", required=True, help="model name (saved under the user data dir) or a folder path")
    s.add_argument("--preset", choices=["tiny", "small", "base"], default="tiny")
    s.add_argument("--head", choices=["light", "upernet"], default="light")
    s.add_argument("--backbone", help="SpecAware checkpoint (.pth), a model bundle, or 'random'; default: the "
                                      "configured checkpoint, else random")
    s.add_argument("--backbone-mode", dest="backbone_mode", help="frozen (default: features cached once, fast), "
                                                                 "last-N (e.g. last-2) or full")
    s.add_argument("--epochs", type=int)
    s.add_argument("--seed", type=int)
    s.add_argument("--window", type=int, help="training window in px, a multiple of the patch size")
    s.add_argument("--batch-size", type=int, dest="batch_size")
    s.add_argument("--lr", type=float)
    s.add_argument("--windows-per-epoch", type=int, dest="windows_per_epoch")
    s.add_argument("--frozen-pool", type=int, dest="frozen_pool",
                   help="augmented windows whose frozen features are computed once (default 256)")
    s.add_argument("--layer", help="layer name inside the vector file")
    s.add_argument("--val-polygons", dest="val_polygons", help="independent validation layer (replaces the split)")
    s.add_argument("--val-fraction", dest="val_fraction", type=float, default=0.3)
    s.add_argument("--task", choices=["pixels", "change", "cells"], default="pixels",
                   help="pixels: land cover (default); change: --raster is the first date, --after the second, "
                        "and the polygons mark 'change' and no change; cells: one label per polygon (grid cells, "
                        "parcels) for classify-cells' pooled-token head")
    s.add_argument("--after", help="second date, for --task change")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--resume", action="store_true", help="continue an interrupted run of the same settings")
    sensor_options(s)
    s.set_defaults(func=cmd_finetune)

    s = sub.add_parser("classify", help="classify a raster with a model bundle, or cluster it (unsupervised)")
    s.add_argument("--raster", required=True)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="model name or bundle folder")
    g.add_argument("--clusters", type=int, help="unsupervised: k-means with this many clusters")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--probabilities", action="store_true", help="also write probabilities.tif")
    s.add_argument("--preset", choices=["tiny", "small", "base"], default="tiny", help="encoder for --clusters")
    s.add_argument("--backbone", help="checkpoint for --clusters (default: the configured one, else random)")
    sensor_options(s)
    s.set_defaults(func=cmd_classify)

    s = sub.add_parser("change", help="change between two dates: change.tif, magnitude.tif, change.gpkg, summary")
    s.add_argument("--before", required=True)
    s.add_argument("--after", required=True)
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--model", help="a change model (finetune --task change) gives the change probability; a "
                                   "land-cover model also classifies both dates (fromto.tif, transitions)")
    s.add_argument("--threshold", default="otsu", help="'otsu' (default) or a magnitude between 0 and 1")
    s.add_argument("--min-area", dest="min_area", type=float, default=0.0, help="minimum polygon area in m²")
    s.add_argument("--preset", choices=["tiny", "small", "base"], default="tiny")
    s.add_argument("--backbone", help="checkpoint (default: the configured one, else random)")
    s.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_change)

    s = sub.add_parser("classify-cells", help="classify grid cells or parcels into a GeoPackage")
    s.add_argument("--raster", required=True)
    s.add_argument("--model", required=True, help="classification bundle")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--cell-size", dest="cell_size", type=int, help="square grid cells of this many pixels")
    g.add_argument("--zones", help="polygons to classify (parcels, fields), any CRS")
    s.add_argument("--out", required=True, help="output .gpkg")
    sensor_options(s)
    s.set_defaults(func=cmd_classify_cells)

    s = sub.add_parser("adapt", help="scene-adaptive MAE pre-training on the rasters being mapped")
    s.add_argument("--raster", action="append", required=True, help="a raster to adapt to (repeatable)")
    s.add_argument("--minutes", type=float, required=True, help="time budget")
    s.add_argument("--out", required=True, help="the adapted backbone, a .pth file")
    s.add_argument("--backbone", help="start from this checkpoint (default: the configured one, else random)")
    s.add_argument("--preset", default="tiny", help="preset when starting from random")
    s.add_argument("--patch", type=int, default=64)
    s.add_argument("--batch-size", dest="batch_size", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_adapt)

    s = sub.add_parser("pretrain", help="MAE pre-training; run it under torchrun for several GPUs or nodes")
    s.add_argument("--data", action="append", required=True,
                   help="a Hyper-400K folder (manifest.csv + .npz), a folder of rasters, or a raster (repeatable)")
    s.add_argument("--out", required=True, help="run folder: checkpoints/, loss.csv, loss.png, backbone.pth")
    s.add_argument("--init", help="random (default), a checkpoint .pth (e.g. the official one), or a run folder")
    s.add_argument("--preset", default="tiny", help="preset when starting from random")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    for name, typ in (("steps", int), ("minutes", float), ("batch-size", int), ("accumulate", int), ("lr", float),
                      ("warmup-steps", int), ("patch", int), ("checkpoint-every", int), ("keep", int),
                      ("seed", int), ("mask-ratio", float)):
        s.add_argument(f"--{name}", dest=name.replace("-", "_"), type=typ)
    s.add_argument("--views", choices=["progressive", "full"])
    s.add_argument("--device", default="auto")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_pretrain)

    s = sub.add_parser("make-patches", help="write Hyper-400K-style .npz patches and manifest.csv from rasters")
    s.add_argument("--raster", action="append", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--patch", type=int, default=64)
    s.set_defaults(func=cmd_make_patches)

    s = sub.add_parser("classify-batch", help="classify a list of rasters; run it under torchrun to share them")
    s.add_argument("--rasters", required=True, help="text file with one raster path per line")
    s.add_argument("--model", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--device", default="auto")
    s.set_defaults(func=cmd_classify_batch)

    s = sub.add_parser("models", help="list, show, delete or rename model bundles")
    s.add_argument("action", choices=["list", "show", "delete", "rename"])
    s.add_argument("name", nargs="?")
    s.add_argument("new_name", nargs="?")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_models)
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
