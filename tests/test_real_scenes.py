"""Fine-tune and classify through the CLI on real scenes from ../shared/data, written as GeoTIFF and ENVI."""
import json
import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal

from conftest import DATA, ROOT, need_shared
from real_scenes import GT, jasper, label_squares, samson, write_envi, write_geotiff
from scenes import rect, write_polygons


@pytest.fixture
def env(engine_env, tmp_path):
    return {**engine_env, "SPECAWARE_DATA_DIR": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}


def cli(env, *args):
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_samson_geotiff_finetune_and_classify(tmp_path, env):
    need_shared(DATA / "samson")
    scene = samson()
    raster = write_geotiff(tmp_path / "samson.tif", scene)
    squares = label_squares(scene.labels, per_class=4, size=4, seed=0)
    shapes = [(scene.class_names[c - 1], rect(x, y, x + 4, y + 4)) for c, x, y in squares]
    polygons = write_polygons(tmp_path / "samson.gpkg", shapes, gt=GT, epsg=32610)
    r = cli(env, "finetune", "--raster", raster, "--polygons", polygons, "--class-field", "class", "--out", "samson",
            "--epochs", 8, "--window", 32, "--batch-size", 8, "--lr", 3e-3, "--frozen-pool", 64, "--device", "cpu",
            "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["labels"]["polygons"]["water"] == {"train": 3, "val": 1}
    assert res["validation"]["pixels"] == 3 * 16
    r = cli(env, "classify", "--raster", raster, "--model", "samson", "--out", tmp_path / "map", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    pred = gdal.Open(str(tmp_path / "map" / "classes.tif")).ReadAsArray()
    oa = (pred == scene.labels).mean()
    assert oa > 0.8, f"rock / tree / water from 12 squares should reach 80 % overall accuracy, got {oa:.3f}"


def test_jasper_envi_unsupervised_clusters(tmp_path, env):
    need_shared(DATA / "jasper_ridge")
    scene = jasper()
    raster = write_envi(tmp_path / "jasper", scene, interleave="BIP")
    r = cli(env, "info", raster, "--sensor", "avc", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["bands"] == 198 and info["sensor"] == "avc" and info["level"] == "L2"
    r = cli(env, "classify", "--raster", raster, "--clusters", 4, "--sensor", "avc", "--out", tmp_path / "k",
            "--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["kind"] == "unsupervised" and sum(res["pixel_counts"].values()) == 100 * 100
    classes = gdal.Open(str(tmp_path / "k" / "classes.tif")).ReadAsArray()
    # Water (the darkest pixels in the NIR) should form its own cluster.
    nir = scene.cube[int(np.abs(scene.wavelength - 860).argmin())]
    water = nir < np.percentile(nir, 10)
    share = np.bincount(classes[water]).max() / water.sum()
    assert share > 0.8, f"the darkest NIR pixels (water) should mostly share one cluster, got {share:.2f}"
