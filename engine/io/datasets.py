"""Opening rasters with GDAL, with an error that names the file and says why it cannot be used."""
from __future__ import annotations

import os
from pathlib import Path

from osgeo import gdal

from ..core.errors import EngineError, shorten
from ..core.request import exists

gdal.UseExceptions()
if "GDAL_CACHEMAX" not in os.environ:  # windows are read once; a large block cache only grows RSS with file size
    gdal.SetCacheMax(128 * 2**20)
COMPLEX_TYPES = {gdal.GDT_CInt16, gdal.GDT_CInt32, gdal.GDT_CFloat32, gdal.GDT_CFloat64}
GDAL_PREFIXES = ("NETCDF:", "HDF5:", "HDF4_", "/vsi")


def open_raster(path: str | Path):
    """A GDAL dataset, or an error naming the file and saying why it cannot be used."""
    path = str(path)
    if not path.startswith(GDAL_PREFIXES):
        p = Path(path)
        if not exists(p, "raster"):
            raise EngineError(f"raster {shorten(path)} does not exist; check the path")
        if p.is_dir():
            raise EngineError(f"{shorten(path)} is a folder, not a raster; give the raster file")
        if not os.access(p, os.R_OK):
            raise EngineError(f"raster {shorten(path)} cannot be read (permission denied)")
    try:
        ds = gdal.Open(path, gdal.GA_ReadOnly)
    except RuntimeError as e:
        raise EngineError(f"GDAL cannot read {shorten(path)}: {shorten(e, 300)}") from e
    if ds is None:
        raise EngineError(f"GDAL cannot read {shorten(path)}")
    if ds.RasterCount == 0:
        subs = ds.GetSubDatasets()
        hint = f"; open one of its subdatasets, e.g. {subs[0][0]}" if subs else ""
        raise EngineError(f"{shorten(path)} has no raster bands{hint}")
    dtype = ds.GetRasterBand(1).DataType
    if dtype in COMPLEX_TYPES:
        raise EngineError(f"{shorten(path)} holds complex numbers ({gdal.GetDataTypeName(dtype)}); SpecAware needs "
                          "real-valued radiance or reflectance")
    return ds


def file_list(ds) -> list[Path]:
    """The files GDAL read for this dataset (the raster and sidecars such as an ENVI .hdr)."""
    return [Path(f) for f in (ds.GetFileList() or [])]
