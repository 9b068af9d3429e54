"""Opening rasters with GDAL, with an error that names the file and says why it cannot be used; their ground pixel."""
from __future__ import annotations

import math
import os
from pathlib import Path

from osgeo import gdal, osr

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


def ground_pixel(ds) -> tuple[float | None, float | None]:
    """(metres along a row, m² per pixel) of a raster's grid, rotation included. A projected CRS counts in its
    linear unit; a geographic one (degrees, as EMIT or some mosaics ship) is measured on a local equal-area
    projection at the raster's centre. None without georeferencing."""
    gt = ds.GetGeoTransform(can_return_null=True)
    if gt is None or tuple(gt) == (0.0, 1.0, 0.0, 0.0, 0.0, 1.0):
        return None, None
    row, area = math.hypot(gt[1], gt[2]), abs(gt[1] * gt[5] - gt[2] * gt[4])  # as GSD has always been read
    srs = osr.SpatialReference(wkt=ds.GetProjection()) if ds.GetProjection() else None
    if srs is None or not srs.IsGeographic():
        unit = srs.GetLinearUnits() if srs is not None and srs.IsProjected() else 1.0
        return row * unit, area * unit * unit
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    cx, cy = ds.RasterXSize / 2, ds.RasterYSize / 2
    corners = [(gt[0] + px * gt[1] + py * gt[2], gt[3] + px * gt[4] + py * gt[5])
               for px, py in ((cx, cy), (cx + 1, cy), (cx + 1, cy + 1), (cx, cy + 1))]
    if not all(-360 <= x <= 360 and -90 <= y <= 90 for x, y in corners):
        return row, area  # not degrees whatever the CRS says (UTM metres tagged EPSG:4326): the grid as it is
    try:
        local = osr.SpatialReference()
        local.ImportFromProj4(f"+proj=laea +lat_0={corners[0][1]} +lon_0={corners[0][0]} +datum=WGS84 +units=m")
        local.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        to_local = osr.CoordinateTransformation(srs, local)
        xy = [to_local.TransformPoint(x, y)[:2] for x, y in corners]
    except (RuntimeError, TypeError):
        return row, area
    shoelace = 0.5 * abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(xy, xy[1:] + xy[:1])))
    return math.hypot(xy[1][0] - xy[0][0], xy[1][1] - xy[0][1]), shoelace
