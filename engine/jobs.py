"""The jobs the worker and the CLI run: each takes params, a progress callback and a cancel check."""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
from osgeo import gdal

from .errors import EngineError, SpecAwareWarning
from .raster import open_raster
from .sensors import profile_for_raster, warn_dropped

JOBS: dict[str, Callable] = {}


def job(name: str):
    def register(fn):
        JOBS[name] = fn
        return fn
    return register


def raster_info(path: str, profile: str | None = None, sensor: str | None = None, level: str | None = None) -> dict:
    """What the engine will make of a raster: sensor, level, bands used and dropped, GSD, no-data, size."""
    ds = open_raster(path)
    prof = profile_for_raster(path, ds, profile, sensor, level)
    warn_dropped(prof, path)
    good = prof.good_bands()
    wl = np.asarray(prof.wavelength_nm)
    return {
        "path": str(path), "driver": ds.GetDriver().ShortName, "width": ds.RasterXSize, "height": ds.RasterYSize,
        "bands": ds.RasterCount, "dtype": gdal.GetDataTypeName(ds.GetRasterBand(1).DataType),
        "sensor": prof.sensor, "sensor_name": prof.name, "level": prof.level, "profile_source": prof.source,
        "bands_used": len(good),
        "dropped": [{"band": i, "wavelength_nm": round(float(wl[i]), 2), "reason": r}
                    for i, r in sorted(prof.dropped().items())],
        "wavelength_range_nm": [round(float(wl[good].min()), 2), round(float(wl[good].max()), 2)] if good else None,
        "gsd_m": round(prof.gsd, 4) if prof.gsd else None, "nodata": prof.nodata, "scale": prof.scale,
        "crs": bool(ds.GetProjection()), "profile": prof.to_dict(),
    }


@job("info")
def info_job(params: dict, progress=None, cancel=None, runtime=None) -> dict:
    return raster_info(params["raster"], params.get("profile"), params.get("sensor"), params.get("level"))


@job("classify")
def classify_job(params: dict, progress=None, cancel=None, runtime=None) -> dict:
    from .classify import classify
    return classify(params["raster"], params["out"], params.get("model"), params.get("clusters"),
                    params.get("profile"), params.get("sensor"), params.get("level"),
                    bool(params.get("probabilities")), params.get("preset", "tiny"), params.get("backbone"),
                    int(params.get("seed", 0)), runtime, progress, cancel)


@job("finetune")
def finetune_job(params: dict, progress=None, cancel=None, runtime=None) -> dict:
    from .finetune import finetune
    from .train import TrainConfig
    known = set(TrainConfig.__dataclass_fields__)
    train = TrainConfig(**{k: params[k] for k in known if params.get(k) is not None})
    return finetune(params["raster"], params["polygons"], params["class_field"], params["out"],
                    params.get("preset") or "tiny", params.get("head") or "light", params.get("backbone"), train,
                    params.get("layer"), params.get("val_polygons"), float(params.get("val_fraction", 0.3)),
                    params.get("colors"), params.get("profile"), params.get("sensor"), params.get("level"),
                    bool(params.get("overwrite")), bool(params.get("resume")),
                    runtime.device if runtime else "cpu", progress, cancel, params.get("task") or "pixels",
                    params.get("after"))


@job("change")
def change_job(params: dict, progress=None, cancel=None, runtime=None) -> dict:
    from .change import detect_change
    return detect_change(params["before"], params["after"], params["out"], params.get("model"),
                         params.get("threshold") or "otsu", float(params.get("min_area") or 0.0),
                         params.get("preset") or "tiny", params.get("backbone"), int(params.get("seed", 0)),
                         runtime, progress, cancel)


@job("classify-cells")
def classify_cells_job(params: dict, progress=None, cancel=None, runtime=None) -> dict:
    from .cells import classify_cells
    return classify_cells(params["raster"], params["model"], params["out"], params.get("cell_size"),
                          params.get("zones"), params.get("profile"), params.get("sensor"), params.get("level"),
                          runtime, progress, cancel)


@job("adapt")
def adapt_job(params: dict, progress=None, cancel=None, runtime=None) -> dict:
    """Scene-adaptive MAE pre-training on the rasters being mapped, for a time budget."""
    from .pretrain import adapt
    rasters = params["rasters"] if isinstance(params.get("rasters"), list) else [params["raster"]]
    return adapt(rasters, params["out"], float(params.get("minutes") or 5), params.get("backbone"),
                 params.get("preset") or "tiny", int(params.get("patch") or 64), int(params.get("batch_size") or 8),
                 str(runtime.device) if runtime else "cpu", int(params.get("seed", 0)), progress, cancel)


@job("pretrain")
def pretrain_job(params: dict, progress=None, cancel=None, runtime=None) -> dict:
    """MAE pre-training in this process (several GPUs or nodes: `torchrun ... -m engine pretrain`)."""
    from .distributed import Ranks
    from .pretrain import PretrainConfig, pretrain
    cfg = PretrainConfig.from_params(params)
    data = params["data"] if isinstance(params["data"], list) else [params["data"]]
    device = runtime.device if runtime else __import__("torch").device("cpu")
    return pretrain(data, params["out"], cfg, Ranks(device=device), params.get("init"),
                    params.get("preset") or "tiny", bool(params.get("resume")), progress, cancel)


@job("models")
def models_job(params: dict, progress=None, cancel=None, runtime=None) -> dict:
    """List, show, delete or rename model bundles."""
    from . import bundles
    action = params.get("action", "list")
    if action == "list":
        return {"models": [{"name": b.name, "path": str(b.path), "classes": b.meta.get("classes", {}).get("names"),
                            "sensor": b.meta.get("profile", {}).get("name"), "created": b.meta.get("created"),
                            "val_miou": (b.meta.get("validation") or {}).get("miou"),
                            "damaged": bool(b.meta.get("damaged"))} for b in bundles.list_bundles()],
                "directory": str(bundles.models_dir())}
    if action == "show":
        b = bundles.load_bundle(params["name"])
        return {"name": b.name, "path": str(b.path), **b.meta}
    if action == "delete":
        return {"deleted": str(bundles.delete_bundle(params["name"]))}
    if action == "rename":
        return {"renamed": str(bundles.rename_bundle(params["name"], params["new_name"]))}
    raise EngineError(f"unknown models action {action!r}: use list, show, delete or rename")


@job("profiles")
def profiles_job(params: dict, progress=None, cancel=None, runtime=None) -> dict:
    """The sensor profiles a user can choose: built-in and custom, by key."""
    from .sensors import all_profiles
    return {"profiles": [{"key": k, "name": p.name, "sensor": p.sensor, "level": p.level, "bands": p.n_bands}
                         for k, p in all_profiles().items()]}


@job("inspect-weights")
def inspect_weights_job(params: dict, progress=None, cancel=None, runtime=None) -> dict:
    """Check that a file is a SpecAware checkpoint and say what it holds (the plugin's weights download)."""
    from .model.weights import load_checkpoint
    return load_checkpoint(params["path"]).summary()


@job("diagnostics")
def diagnostics_job(params: dict, progress=None, cancel=None, runtime=None) -> dict:
    """Versions and device for bug reports."""
    import platform
    import sys

    import torch

    from . import __version__
    from .bundles import data_dir
    return {"engine": __version__, "python": sys.version.split()[0], "executable": sys.executable,
            "platform": platform.platform(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(), "gdal": gdal.__version__, "numpy": np.__version__,
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "device": runtime.device_name if runtime else "CPU", "data_dir": str(data_dir())}


def run_job(name: str, params: dict, progress=None, cancel=None, runtime=None) -> tuple[dict, list[str]]:
    """Run a job in-process; returns its result and the user-facing warnings it raised."""
    from .runtime import Runtime
    if name not in JOBS:
        raise EngineError(f"unknown job {name!r}; this engine runs: {', '.join(sorted(JOBS))}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecAwareWarning)
        result = JOBS[name](params, progress, cancel, runtime or Runtime("cpu"))
    msgs = [str(w.message) for w in caught if issubclass(w.category, SpecAwareWarning)]
    msgs += result.pop("warnings", []) if isinstance(result, dict) else []
    return result, msgs
