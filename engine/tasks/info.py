"""`info`: what the engine makes of a raster (sensor, level, bands used and dropped, GSD, no-data, size)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from osgeo import gdal

from ..core.progress import CancelFn, ProgressFn
from ..core.request import param
from ..core.runtime import Runtime
from ..io.datasets import open_raster
from ..io.sensors import profile_for_raster, warn_dropped
from .options import SensorChoice


@dataclass(kw_only=True)
class InfoRequest(SensorChoice):
    job = "info"
    summary = "the sensor profile the engine detects for a raster"
    raster: str = param(help="the raster to describe", kind="raster", positional=True)


def raster_info(req: InfoRequest, runtime: Runtime | None = None, progress: ProgressFn | None = None,
                cancel: CancelFn | None = None) -> dict:
    ds = open_raster(req.raster)
    prof = profile_for_raster(req.raster, ds, req.profile, req.sensor, req.level)
    warn_dropped(prof, req.raster)
    good = prof.good_bands()
    wl = np.asarray(prof.wavelength_nm)
    return {
        "path": str(req.raster), "driver": ds.GetDriver().ShortName, "width": ds.RasterXSize,
        "height": ds.RasterYSize, "bands": ds.RasterCount, "dtype": gdal.GetDataTypeName(ds.GetRasterBand(1).DataType),
        "sensor": prof.sensor, "sensor_name": prof.name, "level": prof.level, "profile_source": prof.source,
        "sensor_decided_by": prof.sensor_reason or "the sensor profile",
        "bands_used": len(good),
        "dropped": [{"band": i, "wavelength_nm": round(float(wl[i]), 2), "reason": r}
                    for i, r in sorted(prof.dropped().items())],
        "wavelength_range_nm": [round(float(wl[good].min()), 2), round(float(wl[good].max()), 2)] if good else None,
        "gsd_m": round(prof.gsd, 4) if prof.gsd else None, "nodata": prof.nodata, "scale": prof.scale,
        "crs": bool(ds.GetProjection()), "profile": prof.to_dict(),
    }
