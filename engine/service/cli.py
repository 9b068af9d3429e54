"""Command-line interface: `python -m engine <command>`. Every command's options are built from its job's request
class, validated by it, run through the same job registry as the worker, and printed for a person (or as JSON)."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import warnings
from dataclasses import MISSING

from ..core.distributed import process_group
from ..core.errors import Cancelled, EngineError, SpecAwareWarning
from ..core.runtime import Runtime
from ..core.vocabulary import DEVICES
from .jobs import JOBS, run_request

DISTRIBUTED = {"pretrain", "classify-batch"}  # run inside torchrun's process group; rank 0 prints


def _progress(fraction: float, message: str) -> None:
    print(f"[{100 * fraction:5.1f}%] {message}", file=sys.stderr, flush=True)


def _accuracy_line(acc: dict | None) -> str:
    if not acc:
        return "no held-out polygons, so no independent accuracy"
    ci = acc.get("intervals") or {}
    oa, kappa = ci.get("oa") or [None], ci.get("kappa") or [None]
    oa_ci = f" (95 % CI {100 * oa[0]:.1f}–{100 * oa[1]:.1f} %)" if oa[0] is not None else ""
    kappa_ci = f" ({kappa[0]:.3f}–{kappa[1]:.3f})" if kappa[0] is not None else ""
    return (f"OA {100 * acc['oa']:.1f} %{oa_ci}, AA {100 * acc['aa']:.1f} %, kappa {acc['kappa']:.3f}{kappa_ci}, "
            f"mIoU {acc['miou']:.3f} on {acc['pixels']} held-out pixels")


# --- how each command prints its result -------------------------------------------------------------------------

def print_info(r: dict) -> None:
    print(f"{r['path']}")
    print(f"  size       {r['width']} × {r['height']} px, {r['bands']} bands ({r['dtype']}, {r['driver']})")
    print(f"  sensor     {r['sensor']} ({r['sensor_name']}), level {r['level']}, profile from {r['profile_source']}")
    print(f"             decided by {r['sensor_decided_by']}")
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


def print_finetune(r: dict) -> None:
    print(f"model {r['name']} saved in {r['bundle']}")
    print(f"backbone: {r['backbone']}")
    print(f"accuracy: {_accuracy_line(r['validation'])}")
    print(f"report: {r['report']}")


def print_classify(r: dict) -> None:
    print("\n".join(f"wrote {path}" for path in r["outputs"]))
    print(f"report: {r['report']} ({r['kind']})")
    for name, ha in (r["areas_ha"] or {}).items():
        print(f"  {name:20s} {ha:12.2f} ha")
    if r.get("validation"):
        print(f"accuracy on the validation layer: {_accuracy_line(r['validation'])}")
        for name, c in r["adjusted_areas"]["classes"].items():
            print(f"  {name:20s} error-adjusted {c['adjusted']:.2f} ± {c['margin']:.2f} {r['adjusted_areas']['unit']}")


def print_suggest(r: dict) -> None:
    print(f"wrote {r['points']} points to label in {r['out']} (fill in their {r['class_field']!r} field, then "
          "fine-tune again with --samples)")


def print_change(r: dict) -> None:
    print("\n".join(f"wrote {path}" for path in r["outputs"]))
    print(f"overlap {r['overlap_area_ha']} ha ({r['pairing']}); threshold {r['threshold']} "
          f"({r['threshold_method']}); changed {r['changed_area_ha']} ha in {r['polygons']['count']} polygon(s)")
    for t, ha in (r.get("transitions_ha") or {}).items():
        print(f"  {t:32s} {ha:12.2f} ha")


def print_cells(r: dict) -> None:
    print(f"wrote {r['out']}: {r['cells']} cells ({r['method']})")
    for name, count in r["cells_per_class"].items():
        print(f"  {name:20s} {count:8d} cells")


def print_adapt(r: dict) -> None:
    print(f"adapted backbone {r['backbone']} after {r['steps']} MAE steps in {r['seconds']} s "
          f"(loss {r['loss_first']:.4f} → {r['loss_last']:.4f}); start fine-tuning from it with "
          f"`finetune --backbone {r['backbone']}`")


def print_pretrain(r: dict) -> None:
    print(f"{r['steps']} steps on {r['world_size']} rank(s), loss {r['loss_first']:.4f} → {r['loss_last']:.4f}; "
          f"backbone {r['backbone']}")


def print_batch(r: dict) -> None:
    print(f"{r['classified']} classified, {r['skipped']} skipped (already done) on {r['world_size']} rank(s); "
          f"summary {r['summary']}")


def print_models(r: dict) -> None:
    if "models" in r:
        print(f"models in {r['directory']}:" if r["models"] else f"no models yet in {r['directory']}")
        for m in r["models"]:
            miou = f"val mIoU {m['val_miou']:.3f}" if m["val_miou"] is not None else "not validated"
            print(f"  {m['name']:24s} {len(m['classes'] or [])} classes, {m['sensor']}, {miou}, {m['created']}"
                  if not m["damaged"] else f"  {m['name']:24s} DAMAGED model.json")
    elif "deleted" in r or "renamed" in r:
        print(next(iter(r.values())))
    else:
        print(json.dumps({k: r[k] for k in ("name", "path", "backbone", "head", "classes", "tile", "created",
                                            "engine_version") if k in r}, indent=2))
        print(f"accuracy: {_accuracy_line(r.get('validation'))}")


def print_weights(r: dict) -> None:
    print(f"{r['path']}: SpecAware encoder E={r['embed_dim']}, depth {r['depth']}, {r['num_heads']} heads, "
          f"patch {r['patch_size']}, rank {r['rank']}, content grid {r['content_grid']}")
    d = r["decoder"]
    print("decoder: " + (f"E={d['embed_dim']}, depth {d['depth']}, {d['num_heads']} heads" if d else
                         "none (encoder only)"))
    print(f"{r['tensors']} tensors, {r['parameters'] / 1e6:.1f} M parameters; every encoder tensor present")
    for note in r["notes"]:
        print(f"note: {note}")


def print_golden(r: dict) -> None:
    for row in r["rows"]:
        print(f"{'ok  ' if row['ok'] else 'FAIL'} {row['file']} {row['output']}: max|diff| {row['max_abs_diff']:.3g} "
              f"(max|ref| {row['max_abs_reference']:.3g})")


def print_json(r: dict) -> None:
    print(json.dumps(r, indent=2, default=str))


PRINTERS = {"info": print_info, "finetune": print_finetune, "classify": print_classify, "change": print_change,
            "classify-cells": print_cells, "adapt": print_adapt, "pretrain": print_pretrain,
            "classify-batch": print_batch, "models": print_models, "inspect-weights": print_weights,
            "verify-golden": print_golden, "suggest": print_suggest,
            "make-patches": lambda r: print(f"wrote {r['manifest']} and its patches")}


# --- the parser, from the request classes ------------------------------------------------------------------------

def add_request_arguments(parser: argparse.ArgumentParser, request) -> None:
    """One option per request field: `--field-name` (repeatable for lists, a switch for booleans) or a positional
    argument; values are checked by the request itself, so the CLI and the worker say the same sentences."""
    for name, typ, p, default in request.spec():
        if not p.cli:
            continue
        text = p.help + (f" (one of {', '.join(map(str, p.choices))})" if p.choices else "")
        text = text.replace("%", "%%")  # argparse formats help with %: "95 % intervals" must stay text
        is_list = "list" in str(typ)
        if p.positional:
            nargs = ("+" if default is MISSING else "*") if is_list else (None if default is MISSING else "?")
            parser.add_argument(name, nargs=nargs, help=text)
        elif typ is bool or str(typ) == "bool":
            parser.add_argument(f"--{name.replace('_', '-')}", dest=name, action="store_true", help=text)
        else:
            parser.add_argument(f"--{name.replace('_', '-')}", dest=name, action="append" if is_list else "store",
                                required=default is MISSING, help=text + ("" if default in (MISSING, None) or
                                                                          is_list else f"; default {default}"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="SpecAware engine")
    sub = p.add_subparsers(dest="command", required=True)
    for name, job in JOBS.items():
        s = sub.add_parser(name, help=job.request.summary.replace("%", "%%"))
        add_request_arguments(s, job.request)
        if getattr(job.request, "computes", False):
            s.add_argument("--device", choices=DEVICES, default="auto", help="where to compute (default auto)")
        s.add_argument("--json", action="store_true", help="print the result as JSON")
        s.set_defaults(job=job)
    return p


def run(args) -> int:
    request = args.job.request
    params = {k: v for k, v in vars(args).items() if k not in ("command", "job", "json", "device") and
              v not in (None, [], False)}
    req = request.from_params(params)
    device = getattr(args, "device", None) or "auto"
    if req.job in DISTRIBUTED:
        with process_group(device) as ranks:
            result, warns = run_request(req, _progress if ranks.main else None, runtime=Runtime(str(ranks.device)),
                                        ranks=ranks)
            if not ranks.main:
                return 0
    else:
        result, warns = run_request(req, _progress, runtime=Runtime(device))
    for w in warns:
        print(f"warning: {w}", file=sys.stderr)
    (print_json if args.json else PRINTERS.get(req.job, print_json))({**result, "warnings": warns} if args.json
                                                                     else result)
    return 1 if req.job == "verify-golden" and not result["ok"] else 0


def _terminated(signum, frame):
    raise Cancelled(f"stopped by {signal.Signals(signum).name}")


def main(argv=None) -> int:
    """Run one command; exit status 0, 1 (verify-golden failed), 2 (an error the user can fix), 130 or 143 (stopped
    by Ctrl-C or SIGTERM, its outputs removed)."""
    args = build_parser().parse_args(argv)
    warnings.simplefilter("always", SpecAwareWarning)
    warnings.showwarning = lambda msg, *a, **k: print(f"warning: {msg}", file=sys.stderr)
    previous = signal.signal(signal.SIGTERM, _terminated)  # unwinds the job, so its outputs are removed
    try:
        return run(args)
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Cancelled as e:
        print(f"{e}; nothing was written", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("stopped by the user (Ctrl-C); nothing was written", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
