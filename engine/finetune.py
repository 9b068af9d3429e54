"""Fine-tune from polygons, end to end: raster and labels in, a model bundle with its accuracy report out.

The backbone starts from the official checkpoint when one is configured (or given), from another bundle's
backbone, or at random; the bundle and the report say which, plainly.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import __version__
from .bundles import check_name, data_dir, load_bundle, models_dir, save_bundle
from .errors import EngineError
from .model.config import SpecAwareConfig, preset
from .model.segmenter import PairInput, Segmenter, SpectralInput, build_segmenter
from .model.weights import ENCODER_PREFIXES, load_checkpoint
from .raster import RasterSource
from .report import render_html
from .samples import load_labels
from .train import TrainConfig, Trainer

RANDOM = "random"


def configured_checkpoint() -> Path | None:
    """The official checkpoint the user pointed the engine at: `SPECAWARE_CHECKPOINT`, else `settings.json`."""
    value = os.environ.get("SPECAWARE_CHECKPOINT")
    if not value:
        import platformdirs
        settings = Path(platformdirs.user_config_dir("specaware", appauthor=False)) / "settings.json"
        if settings.is_file():
            try:
                value = json.loads(settings.read_text()).get("checkpoint")
            except ValueError as e:
                raise EngineError(f"{settings} is not valid JSON ({e}); fix or delete it") from e
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise EngineError(f"the configured SpecAware checkpoint {path} does not exist; download "
                          "SpecAware_Base_model.pth again or change the setting")
    return path


def init_model(preset_name: str, head: str, num_classes: int, backbone: str | None,
               patch_size: int | None = None, task: str = "pixels") -> tuple[Segmenter, str, bool]:
    """(model, provenance sentence, pretrained?) for the backbone choice: None = configured or random."""
    source = backbone
    if source is None:
        ckpt = configured_checkpoint()
        source = str(ckpt) if ckpt else RANDOM
    if source == RANDOM:
        cfg = preset(preset_name, **({"patch_size": patch_size} if patch_size else {}))
        why = "as asked" if backbone == RANDOM else "no pretrained weights configured"
        return build_segmenter(cfg, head, num_classes, task), f"random initialisation — {why}", False
    path = Path(source)
    if path.is_file():
        ckpt = load_checkpoint(path, patch_size=patch_size)
        model = build_segmenter(ckpt.config, head, num_classes, task)
        model.encoder.load_state_dict({k: v for k, v in ckpt.state_dict.items() if k.startswith(ENCODER_PREFIXES)})
        note = f" ({'; '.join(ckpt.notes)})" if ckpt.notes else ""
        return model, f"pretrained checkpoint {path} (E={ckpt.config.embed_dim}, depth {ckpt.config.depth}){note}", True
    bundle = load_bundle(source)  # a bundle's backbone
    cfg = SpecAwareConfig.from_dict(bundle.meta["preset_config"])
    model = build_segmenter(cfg, head, num_classes, task)
    enc = {k[len("encoder."):]: v for k, v in bundle.state_dict().items() if k.startswith("encoder.")}
    model.encoder.load_state_dict(enc)
    return model, f"backbone of model bundle {bundle.path} ({bundle.meta.get('backbone', 'unknown origin')})", True


def finetune(raster: str, polygons: str, class_field: str, out: str, preset_name: str = "tiny",
             head: str = "light", backbone: str | None = None, train: TrainConfig | None = None,
             layer: str | None = None, val_polygons: str | None = None, val_fraction: float = 0.3,
             colors: dict | None = None, profile=None, sensor=None, level=None, overwrite: bool = False,
             resume: bool = False, device: torch.device | str = "cpu", progress=None, cancel=None,
             task: str = "pixels", after: str | None = None) -> dict:
    """Train a bundle named `out` (or a folder path); returns where it is, its accuracy and its provenance.

    With task `change`, `raster` is the first date and `after` the second; the polygons mark change and no change.
    """
    t0 = time.perf_counter()
    progress = progress or (lambda f, m: None)
    out_path = Path(out)
    directory, name = (out_path.parent, out_path.name) if os.sep in str(out) else (models_dir(), out)
    check_name(name)
    if (directory / name).exists() and not overwrite:
        raise EngineError(f"a model named {name!r} already exists ({directory / name}); choose another name or "
                          "pass --overwrite")
    train = train or TrainConfig()
    if (task == "change") != (after is not None):
        raise EngineError("a change model needs --task change and --after (the second date); other tasks take "
                          "one raster")
    work = Path(tempfile.mkdtemp(prefix=".specaware-pair-")) if after else None
    try:
        spec, extra = None, {}
        if after:
            from .change import PairSource, open_pair
            source_a, source_b, _ = open_pair(raster, after, work, profile, sensor, level)
            ds, prof = source_a.ds, source_a.profile
            spec = PairInput(SpectralInput.from_source(source_a), SpectralInput.from_source(source_b),
                             len(source_a.bands))
            source = PairSource(source_a, source_b)
            extra = {"task": "change", "profile_after": source_b.profile.to_dict(), "after": str(after)}
        else:
            source = RasterSource.open(raster, profile, sensor, level)
            ds, prof = source.ds, source.profile
        progress(0.0, "rasterising the training polygons")
        labels = load_labels(ds, polygons, class_field, layer, val_polygons, val_fraction, train.seed, colors)
        if after:
            extra["change_class"] = change_class(labels.scheme.names, polygons, class_field)
        torch.manual_seed(train.seed)
        model, provenance, pretrained = init_model(preset_name, head, len(labels.scheme.names), backbone,
                                                   task=task)
        resume_dir = data_dir() / "training" / name
        if not resume and resume_dir.exists():
            shutil.rmtree(resume_dir)
        if task == "cells":  # scene classification: one label per polygon, the pooled-token head
            from .cells import train_cells
            result, cell_window = train_cells(model, source, labels, train, torch.device(device), progress, cancel)
            head, extra = "pooled", {"task": "cells"}
        else:
            trainer = Trainer(model, source, labels, train, torch.device(device), resume_dir, progress, cancel,
                              spec)
            result = trainer.run(resume=resume)
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)
    cfg = model.cfg
    meta = {
        "name": name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "preset": preset_name if not pretrained else "from backbone", "preset_config": cfg.to_dict(), "head": head,
        "classes": labels.scheme.to_dict(), "profile": prof.to_dict(),
        "tile": cell_window if task == "cells" else train.window,
        "normalisation": "none: values as the sensor profile scales them (L2 reflectance 0–1, L1 radiance in the "
                         "product's units), as in pre-training",
        "backbone": provenance, "backbone_pretrained": pretrained, "backbone_mode": train.backbone_mode,
        "training": {**train.to_dict(), "raster": str(raster), "polygons": str(polygons),
                     "class_field": class_field, "validation_layer": val_polygons, "epochs_run": len(result.history),
                     "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
                     "seconds": round(result.seconds, 1), "device": str(device), "final_batch_size": result.batch_size},
        "labels": labels.summary(), "validation": result.validation, "history": result.history,
        "engine_version": __version__, **extra,
    }
    report = finetune_report(meta)
    path = save_bundle(name, result.state_dict, meta, overwrite=overwrite, directory=directory,
                       files={"report.json": json.dumps(report, indent=1), "report.html": render_html(report)})
    shutil.rmtree(resume_dir, ignore_errors=True)
    progress(1.0, f"saved model {name}")
    return {"bundle": str(path), "name": name, "report": str(path / "report.html"),
            "validation": result.validation, "backbone": provenance, "epochs_run": len(result.history),
            "best_epoch": result.best_epoch, "seconds": round(time.perf_counter() - t0, 1),
            "labels": labels.summary(), "warnings": labels.notes +
            ([] if pretrained else [f"backbone: {provenance}"])}


def change_class(names: list[str], polygons, class_field: str) -> str:
    """The class of a change model's labels that means "change" (`change`, `changed` or 1)."""
    found = [n for n in names if n.strip().lower() in ("change", "changed", "1")]
    if len(found) != 1 or len(names) != 2:
        raise EngineError(f"{polygons}: a change model needs two classes in {class_field!r}, one of them "
                          f"'change' (or 1) and the other no change; found {', '.join(names)}")
    return found[0]


def finetune_report(meta: dict) -> dict:
    val = meta["validation"]
    facts = {"model": meta["name"], "created": meta["created"], "backbone": meta["backbone"],
             "backbone mode": meta["backbone_mode"], "head": meta["head"],
             "encoder": f"E={meta['preset_config']['embed_dim']}, depth {meta['preset_config']['depth']}, "
                        f"patch {meta['preset_config']['patch_size']}",
             "sensor": f"{meta['profile']['name']} ({meta['profile']['sensor']}, {meta['profile']['level']})",
             "raster": meta["training"]["raster"], "polygons": meta["training"]["polygons"],
             "epochs": f"{meta['training']['epochs_run']} run, best {meta['training']['best_epoch']}"
                       f"{' (stopped early)' if meta['training']['stopped_early'] else ''}",
             "training time": f"{meta['training']['seconds']} s on {meta['training']['device']}"}
    return {"title": f"SpecAware fine-tuning: {meta['name']}", "facts": facts, "classes": meta["classes"],
            "validation": val, "history": meta["history"], "labels": meta["labels"],
            "warnings": meta["labels"]["notes"]}
