"""Change polygons out: the changed pixels of `change.tif` polygonised (`gdal.Polygonize`) into a GeoPackage
with each polygon's area, mean magnitude and dominant from/to classes. Helper rasters live on disk, not in
memory, so a long flight line stays within the streaming bound."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr, osr

from .vectors import create_gpkg_layer

def polygonize(change_tif: Path, magnitude_tif: Path, fromto_tif: Path | None, names: list[str], out: Path,
               min_area: float, m2_per_area_unit: float = 1.0) -> dict:
    """Changed areas as polygons (`gdal.Polygonize`) with area_m2, mean magnitude and from/to classes."""
    scratch = Path(tempfile.mkdtemp(prefix=".specaware-polygonize-", dir=out.parent))
    try:
        return _polygonize(change_tif, magnitude_tif, fromto_tif, names, out, min_area, scratch, m2_per_area_unit)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _scratch_raster(path: Path, like, dtype):
    """A tiled single-band GeoTIFF on the grid of `like`: full-size helper rasters live on disk, not in memory,
    so polygonizing a long flight line stays within the streaming driver's memory bound."""
    ds = gdal.GetDriverByName("GTiff").Create(str(path), like.RasterXSize, like.RasterYSize, 1, dtype,
                                              ["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"])
    ds.SetGeoTransform(like.GetGeoTransform())
    ds.SetProjection(like.GetProjection())
    return ds


def _polygonize(change_tif, magnitude_tif, fromto_tif, names, out: Path, min_area: float, scratch: Path,
                m2_per_area_unit: float) -> dict:
    ds = gdal.Open(str(change_tif))
    band = ds.GetRasterBand(1)
    W, H = ds.RasterXSize, ds.RasterYSize
    mem = _scratch_raster(scratch / "changed.tif", ds, gdal.GDT_Byte)
    for y0 in range(0, H, 256):
        h = min(256, H - y0)
        mem.GetRasterBand(1).WriteArray((band.ReadAsArray(0, y0, W, h) == 1).astype(np.uint8), 0, y0)
    srs = osr.SpatialReference(wkt=ds.GetProjection()) if ds.GetProjection() else None
    vds, lyr = create_gpkg_layer(out, "change", srs, ogr.wkbPolygon,
                                 [("value", ogr.OFTInteger), ("area_m2", ogr.OFTReal), ("mean_magnitude", ogr.OFTReal),
                                  ("from_class", ogr.OFTString), ("to_class", ogr.OFTString)])
    gdal.Polygonize(mem.GetRasterBand(1), mem.GetRasterBand(1), lyr, 0)
    # Zonal statistics: burn each polygon's FID, then average the magnitude and count from/to codes per FID.
    fids = [f.GetFID() for f in lyr]
    ids = _scratch_raster(scratch / "ids.tif", ds, gdal.GDT_Int32)
    if fids:
        _burn_fids(ids, lyr)
    n = max(fids) + 1 if fids else 1
    sums, counts = np.zeros(n), np.zeros(n)
    K = len(names)
    codes = np.zeros((n, K * K + 1), np.int64) if fromto_tif else None
    mag = gdal.Open(str(magnitude_tif))
    ft = gdal.Open(str(fromto_tif)) if fromto_tif else None
    for y0 in range(0, H, 256):
        h = min(256, H - y0)
        fid = ids.ReadAsArray(0, y0, W, h).ravel()
        keep = fid > 0
        m = np.nan_to_num(mag.ReadAsArray(0, y0, W, h).ravel())
        np.add.at(sums, fid[keep], m[keep])
        np.add.at(counts, fid[keep], 1)
        if ft is not None:
            np.add.at(codes, (fid[keep], ft.ReadAsArray(0, y0, W, h).ravel()[keep].astype(int)), 1)
    kept = dropped = 0
    lyr.ResetReading()
    for f in list(lyr):
        area = f.GetGeometryRef().GetArea() * m2_per_area_unit  # a geographic CRS's degrees², in m²
        if area < min_area:
            lyr.DeleteFeature(f.GetFID())
            dropped += 1
            continue
        i = f.GetFID()
        f.SetField("area_m2", round(area, 3))
        f.SetField("mean_magnitude", round(sums[i] / max(counts[i], 1), 5))
        if codes is not None and codes[i, 1:].any():
            c = int(codes[i, 1:].argmax())
            f.SetField("from_class", names[c // K])
            f.SetField("to_class", names[c % K])
        lyr.SetFeature(f)
        kept += 1
    del lyr, vds  # closes the GeoPackage
    note = None
    if kept == 0:
        note = ("no changed area" + (f" of at least {min_area:g} m²" if min_area else "") +
                f": {out.name} is written with an empty layer")
    return {"count": kept, "dropped_below_min_area": dropped, "min_area_m2": min_area, "note": note}


def _burn_fids(ids_ds, layer) -> None:
    """Burn each feature's FID into `ids_ds` (0 = no polygon)."""
    layer.ResetReading()
    vds = gdal.GetDriverByName("Memory").Create("", 0, 0, 0, gdal.GDT_Unknown)
    tmp = vds.CreateLayer("ids", layer.GetSpatialRef(), ogr.wkbPolygon)
    tmp.CreateField(ogr.FieldDefn("fid_value", ogr.OFTInteger64))
    for f in layer:
        g = ogr.Feature(tmp.GetLayerDefn())
        g.SetGeometry(f.GetGeometryRef())
        g.SetField("fid_value", f.GetFID())
        tmp.CreateFeature(g)
    gdal.Rasterize(ids_ds, vds, layers=["ids"], attribute="fid_value")
