"""The jobs the worker and the CLI run: each takes params, a progress callback and a cancel check."""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
from osgeo import gdal

from .errors import SpecAwareWarning
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


def run_job(name: str, params: dict, progress=None, cancel=None, runtime=None) -> tuple[dict, list[str]]:
    """Run a job in-process; returns its result and the user-facing warnings it raised."""
    from .errors import EngineError
    from .runtime import Runtime
    if name not in JOBS:
        raise EngineError(f"unknown job {name!r}; this engine runs: {', '.join(sorted(JOBS))}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecAwareWarning)
        result = JOBS[name](params, progress, cancel, runtime or Runtime("cpu"))
    msgs = [str(w.message) for w in caught if issubclass(w.category, SpecAwareWarning)]
    msgs += result.pop("warnings", []) if isinstance(result, dict) else []
    return result, msgs
