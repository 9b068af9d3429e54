"""The scenes of the few-label benchmarks (`real-scenes`, `suggest`) as rasters on disk with their reference maps."""
from __future__ import annotations

from pathlib import Path

from osgeo import gdal, ogr

from engine.io.raster import RasterSource
from engine.io.synthetic import make_scene
from real_scenes import GT, abu, samson, write_geotiff
from scenes import pixel_to_map, srs_of


class Scene:
    """A raster on disk with its reference map [H, W] (1…K), class names, grid and the classic arms' cube."""

    def __init__(self, name, raster, labels, names, cube, gt, epsg):
        self.name, self.raster, self.labels, self.names = name, Path(raster), labels, names
        self.cube, self.gt, self.epsg = cube, gt, epsg


def load_scene(name: str, tmp: Path) -> Scene:
    if name == "demo":
        s = make_scene(tmp / "demo", seed=0)
        truth = gdal.Open(str(s.truth)).ReadAsArray()
        src = RasterSource.open(str(s.raster))
        cube = src.read(0, 0, src.width, src.height)[0]  # the bands the engine uses (library range)
        return Scene(name, s.raster, truth, s.class_names, cube, src.ds.GetGeoTransform(), 32611)
    real = samson() if name == "samson" else abu(name)
    return Scene(name, write_geotiff(tmp / f"{name}.tif", real), real.labels, real.class_names, real.cube, GT, 32610)


SCENES = ("samson", "abu-airport-1", "abu-urban-2", "demo")


def write_points(path: Path, scene: Scene, points: list[tuple[str, int, int]]) -> Path:
    """Labelled pixel centres as a point layer with a `class` field (pseudo-labels, labelled suggestions)."""
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    lyr = ds.CreateLayer("points", srs_of(scene.epsg), ogr.wkbPoint)
    lyr.CreateField(ogr.FieldDefn("class", ogr.OFTString))
    for value, x, y in points:
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetField("class", value)
        g = ogr.Geometry(ogr.wkbPoint)
        g.AddPoint_2D(*pixel_to_map(scene.gt, x + 0.5, y + 0.5))
        f.SetGeometry(g)
        lyr.CreateFeature(f)
    ds = None
    return path
