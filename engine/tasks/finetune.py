"""`finetune`: raster and labelled polygons in, a model bundle with its accuracy report out.

The backbone starts from the official checkpoint when one is configured (or given), from another bundle's
backbone, or at random; the bundle and the report say which, plainly. Three tasks share the one training loop:
land cover per pixel, change between two dates, and one label per grid cell or parcel.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from .. import __version__
from ..core.errors import EngineError, shorten
from ..core.paths import data_dir
from ..core.progress import CancelFn, ProgressFn, no_progress
from ..core.request import param, writable_ancestor
from ..core.runtime import Runtime
from ..core.vocabulary import BACKBONE_MODES, CHANGE_METHODS, HEADS, PRESETS, TASKS
from ..io.pairing import PairSource, open_pair
from ..io.raster import RasterSource
from ..io.report import render_html
from ..learn.cells import CELL_WINDOW, CellTrainer
from ..learn.linear import LinearFit
from ..learn.pixels import PixelTrainer
from ..learn.samples import change_class, load_labels
from ..learn.trainer import TrainConfig
from ..model.bundles import check_destination, destination, save_bundle
from ..model.factory import init_model
from ..model.segmenter import SpectralInput
from .change.measures import ChangeMeasure
from .change.supervised import train_change_model
from .options import SensorChoice

DEFAULTS = TrainConfig()
LINEAR_TILE = 128  # px: a per-pixel model has no context to gain from larger tiles


@dataclass(kw_only=True)
class FinetuneRequest(SensorChoice):
    job = "finetune"
    summary = "train a model bundle from training polygons"
    computes = True
    raster: str = param(help="the raster the polygons were drawn on (the first date for --task change)",
                        kind="raster")
    polygons: str = param(help="vector file (GPKG, SHP, GeoJSON) of labelled polygons or points", kind="vector")
    class_field: str = param(help="the field that holds each polygon's class")
    out: str = param(help="model name (saved under the user data dir) or a folder path")
    preset: str = param("tiny", "encoder size when no checkpoint is configured", choices=PRESETS)
    head: str | None = param(None, "linear (the default for land cover: a logistic regression on frozen per-pixel "
                                   "SpecAware features, fitted in seconds), light or upernet (trained for epochs; "
                                   "light is the default for a trained backbone; change models have their own)",
                             choices=HEADS)
    backbone: str | None = param(None, "SpecAware checkpoint (.pth), a model bundle, or 'random'; default: the "
                                       "configured checkpoint, else random", kind="model")
    backbone_mode: str = param(DEFAULTS.backbone_mode, "frozen (features cached once, fast), last-N (e.g. last-2) or "
                               "full", choices=BACKBONE_MODES, pattern=r"last-\d+")
    epochs: int = param(DEFAULTS.epochs, "training epochs of the light and upernet heads (the linear head is fitted "
                                         "to convergence)", lo=1, hi=1000)
    seed: int = param(DEFAULTS.seed, "random seed", lo=0, hi=2**31 - 1)
    window: int | None = param(None, "training window in px, a multiple of the patch size (default 64; cells 32)",
                               lo=8, hi=1024)
    batch_size: int = param(DEFAULTS.batch_size, "windows per optimiser step", lo=1, hi=1024)
    lr: float = param(DEFAULTS.lr, "learning rate of the heads", lo=0.0, hi=1.0, lo_open=True)
    windows_per_epoch: int = param(DEFAULTS.windows_per_epoch, "training windows per epoch", lo=1, hi=100000)
    frozen_pool: int = param(DEFAULTS.frozen_pool, "augmented windows whose frozen features are computed once",
                             lo=1, hi=100000)
    layer: str | None = param(None, "layer name inside the vector file")
    samples: str | None = param(None, "more labelled points or polygons with the same class field, e.g. the points "
                                      "of `suggest` once labelled (points not labelled yet are skipped)", kind="vector")
    val_polygons: str | None = param(None, "independent validation layer (replaces the split)", kind="vector")
    val_fraction: float = param(0.3, "share of each class's polygons held out for validation", lo=0.0, hi=0.9)
    task: str = param("pixels", "pixels: land cover; change: --raster is the first date, --after the second, and "
                      "the polygons mark 'change' and no change; cells: one label per polygon (grid cells, parcels)",
                      choices=TASKS)
    after: str | None = param(None, "second date, for --task change", kind="raster")
    change_method: str = param("specaware", "the change statistic a change model reads (task change)",
                               choices=CHANGE_METHODS)
    colors: dict | None = param(None, "class value → #rrggbb", cli=False)
    overwrite: bool = param(False, "replace an existing model of this name (never anything else)")
    resume: bool = param(False, "continue an interrupted run of the same command")

    def check(self) -> None:
        if (self.task == "change") != (self.after is not None):
            raise EngineError("a change model needs task 'change' and 'after' (the second date); other tasks take "
                              "one raster")
        if self.head == "linear" and self.task == "change":
            raise EngineError("head 'linear' classifies land cover per pixel; task 'change' trains its own logistic "
                              "layer on the pair's change statistics: leave the head out")
        if self.head == "linear" and self.backbone_mode != "frozen":
            raise EngineError(f"backbone mode {self.backbone_mode!r} trains the encoder, which the linear head never "
                              "does (it reads frozen features); choose the light or upernet head to train it")
        dest = destination(self.out)
        check_destination(dest, self.overwrite)
        for folder, what in ((dest.parent, "the model's folder"), (data_dir(), "the engine's data folder")):
            if writable_ancestor(folder) is None:
                raise EngineError(f"{what} {shorten(folder)} is read-only; the model could not be saved there. "
                                  "Choose another output, or set SPECAWARE_DATA_DIR to a writable folder")

    @property
    def resolved_head(self) -> str:
        """The head this request trains: as given, else linear for land cover on a frozen backbone, and light for
        change or when the backbone is to be trained."""
        return self.head or ("linear" if self.task == "pixels" and self.backbone_mode == "frozen" else "light")

    def replaced_folders(self) -> list[Path]:
        return [destination(self.out)]

    def train_config(self) -> TrainConfig:
        window = self.window or (CELL_WINDOW if self.task == "cells" else DEFAULTS.window)
        return TrainConfig(epochs=self.epochs, window=window, batch_size=self.batch_size, lr=self.lr,
                           windows_per_epoch=self.windows_per_epoch, seed=self.seed,
                           backbone_mode=self.backbone_mode, frozen_pool=self.frozen_pool)


def _file_id(path: str | None) -> str | None:
    """A file's identity for resume checks: its absolute path, size and modification time."""
    if path is None:
        return None
    p = Path(path).resolve()
    st = p.stat()
    return f"{p}:{st.st_size}:{st.st_mtime_ns}"


def fingerprint(req: FinetuneRequest) -> dict:
    """What a resumed run must share with the interrupted one (settings are compared separately)."""
    return {"raster": _file_id(req.raster), "polygons": _file_id(req.polygons), "class field": req.class_field,
            "layer": req.layer, "samples": _file_id(req.samples), "validation layer": _file_id(req.val_polygons),
            "after": _file_id(req.after), "task": req.task, "preset": req.preset, "head": req.resolved_head,
            "backbone": req.backbone, "change method": req.change_method, "validation share": req.val_fraction}


def resume_folder(dest: Path) -> Path:
    """Resume state of the run that writes `dest` (another destination, another state)."""
    return data_dir() / "training" / f"{dest.name}-{hashlib.sha1(str(dest.resolve()).encode()).hexdigest()[:10]}"


def finetune(req: FinetuneRequest, runtime: Runtime | None = None, progress: ProgressFn | None = None,
             cancel: CancelFn | None = None) -> dict:
    """Train the bundle `req.out`; returns where it is, its accuracy and its provenance."""
    t0 = time.perf_counter()
    progress = progress or no_progress
    device = runtime.device if runtime else torch.device("cpu")
    dest = destination(req.out)
    train = req.train_config()
    work = Path(tempfile.mkdtemp(prefix=".specaware-pair-")) if req.after else None
    try:
        extra = {}
        if req.after:
            source_a, source_b, _ = open_pair(req.raster, req.after, work, req.profile, req.sensor, req.level)
            source, ds, prof = PairSource(source_a, source_b), source_a.ds, source_a.profile
            extra = {"task": "change", "profile_after": source_b.profile.to_dict(), "after": str(req.after),
                     "change_method": req.change_method}
        else:
            source = RasterSource.open(req.raster, req.profile, req.sensor, req.level)
            ds, prof = source.ds, source.profile
        progress(0.0, "rasterising the training polygons")
        labels = load_labels(ds, req.polygons, req.class_field, req.layer, req.val_polygons, req.val_fraction,
                             train.seed, req.colors, req.samples)
        labels.check_data(source, shorten(req.raster))
        if req.after:
            extra["change_class"] = change_class(labels.scheme, req.polygons, req.class_field)
        torch.manual_seed(train.seed)
        head = req.resolved_head
        options = {"wavelength": [float(w) for w in source.wavelength]} if head == "linear" else {}
        model, provenance, pretrained = init_model(req.preset, head, len(labels.scheme.names), req.backbone,
                                                   task=req.task, **options)
        resume_dir = resume_folder(dest)
        if not req.resume and resume_dir.exists():
            shutil.rmtree(resume_dir)
        common = {"resume_dir": resume_dir, "fingerprint": fingerprint(req), "progress": progress, "cancel": cancel}
        if req.task == "change":  # a logistic layer on the pair's change statistics
            tile = 8 * model.cfg.patch_size
            measure = ChangeMeasure(req.change_method, SpectralInput.from_source(source_a),
                                    SpectralInput.from_source(source_b), len(source_a.bands),
                                    model.encoder.to(device).eval() if pretrained else None)
            progress(0.02, f"fitting the no-change distribution of the pair ({req.change_method})")
            measure.fit(source, tile, device, cancel)
            result = train_change_model(model, measure, source, labels, extra["change_class"], train, device, tile,
                                        req.resume, **common)
            head = "logistic"
        elif req.task == "cells":  # scene classification: one label per polygon, the pooled-token head
            trainer = CellTrainer(model, source, labels, train, device, **common)
            head, tile, extra = "pooled", trainer.window, {"task": "cells"}
            result = trainer.run(resume=req.resume)
        elif head == "linear":  # a convex fit in seconds: nothing to resume
            trainer = LinearFit(model, source, labels, device, train.seed, progress, cancel)
            tile, extra = LINEAR_TILE, {**extra, "head_options": model.options()}
            result = trainer.run()
        else:
            trainer = PixelTrainer(model, source, labels, train, device, **common)
            tile = train.window
            result = trainer.run(resume=req.resume)
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)
    meta = {
        "name": dest.name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "preset": req.preset if not pretrained else "from backbone", "preset_config": model.cfg.to_dict(),
        "head": head, "classes": labels.scheme.to_dict(), "profile": prof.to_dict(), "tile": tile,
        "normalisation": "none: values as the sensor profile scales them (L2 reflectance 0–1, L1 radiance in the "
                         "product's units), as in pre-training",
        "backbone": provenance, "backbone_pretrained": pretrained, "backbone_mode": train.backbone_mode,
        "training": {**train.to_dict(), "raster": str(req.raster), "polygons": str(req.polygons),
                     "class_field": req.class_field, "samples": req.samples, "validation_layer": req.val_polygons,
                     "epochs_run": len(result.history), "best_epoch": result.best_epoch,
                     "stopped_early": result.stopped_early, "seconds": round(result.seconds, 1),
                     "device": str(device), "final_batch_size": result.batch_size},
        "labels": labels.summary(), "validation": result.validation, "history": result.history,
        "validation_split": labels.split_method(req.val_fraction, req.val_polygons), "fit": result.details,
        "engine_version": __version__, **extra,
    }
    report = finetune_report(meta)
    path = save_bundle(dest, result.state_dict, meta, overwrite=req.overwrite,
                       files={"report.json": json.dumps(report, indent=1), "report.html": render_html(report)})
    shutil.rmtree(resume_dir, ignore_errors=True)
    progress(1.0, f"saved model {dest.name}")
    return {"bundle": str(path), "name": dest.name, "report": str(path / "report.html"),
            "validation": result.validation, "backbone": provenance, "epochs_run": len(result.history),
            "best_epoch": result.best_epoch, "seconds": round(time.perf_counter() - t0, 1),
            "labels": labels.summary(), "warnings": labels.notes + ((result.validation or {}).get("warnings") or []) +
            ([] if pretrained else [f"backbone: {provenance}"])}


def fit_sentence(meta: dict) -> str:
    """How the head was trained, in words: epochs of the training loop, or the linear head's convex fit."""
    t, fit = meta["training"], meta.get("fit") or {}
    if meta["head"] != "linear":
        return f"{t['epochs_run']} epochs run, best {t['best_epoch']}{' (stopped early)' if t['stopped_early'] else ''}"
    refit = fit.get("refitted_with_validation_pixels", 0)
    return (f"logistic regression (L2, C={fit.get('penalty_c')}) on {fit.get('features')} standardised per-pixel "
            f"features, {fit.get('solver')} to convergence ({fit.get('iterations')} iterations) on "
            f"{fit.get('train_pixels')} training pixels" +
            (f"; validated, then refitted with the {refit} held-out pixels for the saved model" if refit else ""))


def finetune_report(meta: dict) -> dict:
    facts = {"model": meta["name"], "created": meta["created"], "backbone": meta["backbone"],
             "backbone mode": meta["backbone_mode"], "head": meta["head"],
             "encoder": f"E={meta['preset_config']['embed_dim']}, depth {meta['preset_config']['depth']}, "
                        f"patch {meta['preset_config']['patch_size']}",
             "sensor": f"{meta['profile']['name']} ({meta['profile']['sensor']}, {meta['profile']['level']})",
             "raster": meta["training"]["raster"], "polygons": meta["training"]["polygons"],
             "training": fit_sentence(meta), "validation": meta.get("validation_split", "–"),
             "training time": f"{meta['training']['seconds']} s on {meta['training']['device']}"}
    return {"title": f"SpecAware fine-tuning: {meta['name']}", "facts": facts, "classes": meta["classes"],
            "validation": meta["validation"], "history": meta["history"], "labels": meta["labels"],
            "warnings": meta["labels"]["notes"] + ((meta["validation"] or {}).get("warnings") or [])}
