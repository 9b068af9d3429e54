"""Small real GDAL/OGR files for the fine-tuning tests: a labelled three-material raster and polygon layers."""
from __future__ import annotations

import numpy as np
from osgeo import gdal, ogr, osr

from test_engine_io import WL20, make_tif

NORTH_UP = (500000.0, 2.0, 0.0, 4100000.0, 0.0, -2.0)
EPSG = 32612
# Three materials with distinct spectral shapes over the 20 test bands (420–2400 nm).
MATERIALS = {
    "water": np.linspace(0.08, 0.01, 20),
    "grass": np.where(np.asarray(WL20) > 700, 0.45, 0.06),
    "sand": np.linspace(0.2, 0.5, 20),
}
# Three vertical stripes: water | grass | sand (px, half-open).
STRIPES = [("water", 0, 16), ("grass", 16, 32), ("sand", 32, 48)]


def labelled_raster(path, size: int = 48, gt=NORTH_UP, seed: int = 0, wavelengths=WL20):
    """A [20, size, size] float32 GeoTIFF of three stripes with noise; returns the path and the truth (1…3)."""
    rng = np.random.default_rng(seed)
    cube = np.zeros((20, size, size), np.float32)
    truth = np.zeros((size, size), np.uint8)
    names = sorted(MATERIALS)
    for name, x0, x1 in STRIPES:
        cube[:, :, x0:x1] = MATERIALS[name][:, None, None]
        truth[:, x0:x1] = names.index(name) + 1
    cube *= rng.normal(1, 0.05, (1, size, size)).astype(np.float32)
    cube += rng.normal(0, 0.005, cube.shape).astype(np.float32)
    make_tif(path, cube, gt=gt, wavelengths=wavelengths)
    return path, truth


def srs_of(epsg: int) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def pixel_to_map(gt, px, py):
    return gt[0] + px * gt[1] + py * gt[2], gt[3] + px * gt[4] + py * gt[5]


def write_polygons(path, shapes, gt=NORTH_UP, epsg: int = EPSG, to_epsg: int | None = None, field="class",
                   field_type=ogr.OFTString, driver="GPKG", rings=None):
    """Polygons given in pixel coordinates [(value, [(px, py), ...])], written in `to_epsg` (default: the raster's).

    A value of None leaves the class field empty; `rings` may hold ready point lists instead of rectangles.
    """
    src = srs_of(epsg)
    dst = srs_of(to_epsg or epsg)
    tr = osr.CoordinateTransformation(src, dst) if to_epsg else None
    ds = ogr.GetDriverByName(driver).CreateDataSource(str(path))
    lyr = ds.CreateLayer("labels", dst, ogr.wkbUnknown)
    lyr.CreateField(ogr.FieldDefn(field, field_type))
    lyr.CreateField(ogr.FieldDefn("note", ogr.OFTString))
    for value, pts in shapes:
        if len(pts) == 1:
            geom = ogr.Geometry(ogr.wkbPoint)
            geom.AddPoint_2D(*pixel_to_map(gt, *pts[0]))
        else:
            ring = ogr.Geometry(ogr.wkbLinearRing)
            for px, py in list(pts) + [pts[0]]:
                ring.AddPoint_2D(*pixel_to_map(gt, px, py))
            geom = ogr.Geometry(ogr.wkbPolygon)
            geom.AddGeometry(ring)
        if tr:
            geom.Transform(tr)
        f = ogr.Feature(lyr.GetLayerDefn())
        if value is not None:
            f.SetField(field, value)
        f.SetGeometry(geom)
        lyr.CreateFeature(f)
    ds = None
    return path


def rect(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def stripe_polygons(per_class: int = 3, size: int = 48):
    """`per_class` small squares inside each stripe, spread down the raster."""
    shapes = []
    for name, x0, x1 in STRIPES:
        for i in range(per_class):
            y = 2 + i * (size - 4) // per_class
            shapes.append((name, rect(x0 + 3, y, x1 - 3, y + 6)))
    return shapes


def read_array(path) -> np.ndarray:
    return gdal.Open(str(path)).ReadAsArray()
