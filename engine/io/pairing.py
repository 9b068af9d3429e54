"""Two dates on one grid: the second is windowed or warped onto the first one's pixel grid over their overlap
(VRTs, no copy, unless the first grid is rotated), and both are read together as one source."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

from ..core.errors import EngineError, shorten
from .datasets import ground_pixel, open_raster
from .raster import RasterSource, detected_profile
from .strips import StackedStrip
from .vectors import raster_footprint, spatial_ref


def _overlap_window(a, b) -> tuple[int, int, int, int] | None:
    """The part of `a`'s pixel grid that `b` covers: (x, y, w, h), or None."""
    fb = raster_footprint(b)
    sa, sb = spatial_ref(a.GetProjection()), spatial_ref(b.GetProjection())
    if sa and sb and not sa.IsSame(sb):
        fb.Transform(osr.CoordinateTransformation(sb, sa))
    inter = fb.Intersection(raster_footprint(a))
    if inter is None or inter.IsEmpty() or inter.GetArea() <= 0:
        return None
    inv = gdal.InvGeoTransform(a.GetGeoTransform())
    ring = inter.GetGeometryRef(0) if inter.GetGeometryCount() else inter
    pts = [gdal.ApplyGeoTransform(inv, *ring.GetPoint_2D(i)) for i in range(ring.GetPointCount())]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, y0 = max(0, math.floor(min(xs) + 1e-6)), max(0, math.floor(min(ys) + 1e-6))
    x1, y1 = min(a.RasterXSize, math.ceil(max(xs) - 1e-6)), min(a.RasterYSize, math.ceil(max(ys) - 1e-6))
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def _extent(ds) -> str:
    gt = ds.GetGeoTransform()
    corners = [gdal.ApplyGeoTransform(gt, x, y) for x, y in ((0, 0), (ds.RasterXSize, ds.RasterYSize))]
    srs = osr.SpatialReference(wkt=ds.GetProjection()) if ds.GetProjection() else None
    return f"{corners[0][0]:.1f}, {corners[0][1]:.1f} to {corners[1][0]:.1f}, {corners[1][1]:.1f} " \
           f"({srs.GetName() if srs else 'no CRS'})"


def pair(before: str, after: str, workdir: Path) -> tuple[str, str, dict]:
    """VRTs of both dates on the first date's grid over their intersection, and facts about the overlap.

    The second date is warped with `gdal.Warp` into a VRT (no copy). A rotated first grid cannot be a warp
    target for a VRT, so there, unless both grids already coincide, the warp goes to a temporary GeoTIFF.
    """
    a, b = open_raster(before), open_raster(after)
    win = _overlap_window(a, b)
    if win is None:
        raise EngineError(f"{shorten(before)} and {shorten(after)} do not overlap: the first covers {_extent(a)}, "
                          f"the second "
                          f"{_extent(b)}; choose two rasters of the same area")
    a_vrt = str(workdir / "before.vrt")
    gdal.Translate(a_vrt, a, format="VRT", srcWin=list(win))
    ga = gdal.Open(a_vrt)
    gt, proj, (W, H) = ga.GetGeoTransform(), ga.GetProjection(), (ga.RasterXSize, ga.RasterYSize)
    b_gt = b.GetGeoTransform()
    same_crs = osr.SpatialReference(wkt=proj).IsSame(osr.SpatialReference(wkt=b.GetProjection())) if proj else True
    inv_b = gdal.InvGeoTransform(b_gt)
    bx, by = gdal.ApplyGeoTransform(inv_b, gt[0], gt[3])
    same_grid = same_crs and np.allclose(gt[1:3] + gt[4:6], b_gt[1:3] + b_gt[4:6], rtol=1e-9) and \
        abs(bx - round(bx)) < 1e-6 and abs(by - round(by)) < 1e-6 and \
        0 <= round(bx) and round(bx) + W <= b.RasterXSize and 0 <= round(by) and round(by) + H <= b.RasterYSize
    b_path = str(workdir / "after.vrt")
    if same_grid:
        gdal.Translate(b_path, b, format="VRT", srcWin=[int(round(bx)), int(round(by)), W, H])
        how = "same grid (window, no resampling)"
    elif gt[2] == 0 and gt[4] == 0:
        bounds = [gt[0], gt[3] + H * gt[5], gt[0] + W * gt[1], gt[3]]
        gdal.Warp(b_path, b, format="VRT", dstSRS=proj, outputBounds=bounds, width=W, height=H,
                  resampleAlg="bilinear", dstNodata=-9999)
        how = "warped into a VRT (bilinear)"
    else:
        b_path = str(workdir / "after_warped.tif")
        dst = gdal.GetDriverByName("GTiff").Create(b_path, W, H, b.RasterCount, gdal.GDT_Float32,
                                                   ["TILED=YES", "BIGTIFF=IF_SAFER"])
        dst.SetGeoTransform(gt)
        dst.SetProjection(proj)
        for i in range(1, b.RasterCount + 1):
            dst.GetRasterBand(i).SetNoDataValue(-9999)
            dst.GetRasterBand(i).Fill(-9999)
        gdal.Warp(dst, b, resampleAlg="bilinear", dstNodata=-9999)
        dst = None
        how = "warped onto the rotated grid (temporary GeoTIFF)"
    pixel_area = ground_pixel(ga)[1] or abs(gt[1] * gt[5] - gt[2] * gt[4])
    return a_vrt, b_path, {"overlap_px": [W, H], "overlap_window_in_before": list(win),
                           "overlap_area_ha": round(W * H * pixel_area / 1e4, 4), "pairing": how}


def open_pair(before: str, after: str, workdir: Path, profile=None, sensor=None, level=None,
              after_profile=None):
    """(source before, source after, pairing facts): both dates on the first one's grid, each read with the sensor
    profile of its own original file (bad bands, FWHM, scale, no-data: a VRT would drop the ENVI header's)."""
    a_path, b_path, facts = pair(before, after, workdir)
    sources = []
    for path, user_path, opts in ((a_path, before, (profile, sensor, level)), (b_path, after, (after_profile,))):
        prof = detected_profile(user_path, *opts)
        paired = gdal.Open(path)
        prof.gsd = ground_pixel(paired)[0] or prof.gsd  # pixels now on the first grid
        sources.append(RasterSource(user_path, prof, paired))
    return sources[0], sources[1], facts


class PairSource:
    """Both dates as one source for the streaming driver: values are [Ca + Cb, h, w], valid where both are."""

    def __init__(self, a: RasterSource, b: RasterSource):
        self.a, self.b = a, b
        self.path = f"{a.path} + {b.path}"
        self.width, self.height = a.width, a.height
        self.bands = list(range(len(a.bands) + len(b.bands)))

    def read(self, x, y, w, h):
        return self.read_strip(x, y, w, h).values()

    def read_strip(self, x, y, w, h, reuse: StackedStrip | None = None, pool=None) -> StackedStrip:
        """Both dates' strips of the window, for the streaming driver."""
        ra, rb = reuse.parts if reuse is not None else (None, None)
        return StackedStrip([self.a.read_strip(x, y, w, h, ra, pool), self.b.read_strip(x, y, w, h, rb, pool)])
