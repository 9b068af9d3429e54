"""Change detection on real GDAL files: pairing, change maps, polygons, from–to, and bad input."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr

from conftest import DATA, ROOT, need_shared
from engine.core.errors import EngineError
from engine.service.jobs import call
from scenes import MATERIALS, NORTH_UP, labelled_raster, rect, stripe_polygons, write_polygons
from test_engine_io import ROTATED_GT, WL20, make_tif


FAST = dict(epochs=4, window=32, batch_size=4, windows_per_epoch=32, frozen_pool=16, lr=3e-3)


def trained_meta(result):
    return json.loads((Path(result["bundle"]) / "model.json").read_text())


def detect_change(before, after, out, **params):
    return call("change", before=before, after=after, out=out, **params)


def finetune(raster, polygons, class_field, out, **params):
    return call("finetune", raster=raster, polygons=polygons, class_field=class_field, out=out, **params)


def classify_cells(raster, model, out, **params):
    return call("classify-cells", raster=raster, model=model, out=out, **params)


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECAWARE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SPECAWARE_CHECKPOINT", raising=False)


def changed_copy(path, src, block=(8, 8, 24, 24), material="sand", gt=NORTH_UP, nodata=None, fill=None,
                 wavelengths=WL20, bands=None):
    """The scene of `src` with a block turned into another material (rows/cols y0, x0, y1, x1)."""
    cube = gdal.Open(str(src)).ReadAsArray().astype(np.float32)
    y0, x0, y1, x1 = block
    cube[:, y0:y1, x0:x1] = MATERIALS[material][:, None, None] * (1 + 0.02 * np.random.default_rng(1).standard_normal(
        (1, y1 - y0, x1 - x0)))
    if fill is not None:
        cube[:, fill[0]:fill[1], :] = nodata
    if bands is not None:
        cube = cube[bands]
    return make_tif(path, cube.astype(np.float32), gt=gt, wavelengths=wavelengths, nodata=nodata)


def test_change_block_is_found_with_polygons_and_summary(tmp_path):
    a, _ = labelled_raster(tmp_path / "a.tif")
    b = changed_copy(tmp_path / "b.tif", a)  # rows/cols 8–24: water and grass become sand
    res = detect_change(str(a), str(b), str(tmp_path / "out"), min_area=20)
    change = gdal.Open(str(tmp_path / "out" / "change.tif")).ReadAsArray()
    truth = np.zeros_like(change)
    truth[8:24, 8:24] = 1
    inter, union = ((change == 1) & (truth == 1)).sum(), ((change == 1) | (truth == 1)).sum()
    assert inter / union > 0.6, f"IoU of the changed block {inter / union:.2f}"
    assert res["shared_bands"] == 20 and res["threshold_method"] == "significance: chi-square test at p < 0.001"
    assert res["method"] == "specaware" and "−log10 p" in res["magnitude"]
    ds = ogr.Open(str(tmp_path / "out" / "change.gpkg"))
    lyr = ds.GetLayer(0)
    areas = [f.GetField("area_m2") for f in lyr]
    assert areas and min(areas) >= 20 and max(areas) == pytest.approx(16 * 16 * 4, rel=0.35)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["changed_area_ha"] == pytest.approx(res["changed_pixels"] * 4 / 1e4)
    assert gdal.Open(str(tmp_path / "out" / "magnitude.tif")).GetGeoTransform() == NORTH_UP


def test_no_overlap_is_an_error_naming_both_extents(tmp_path):
    a, _ = labelled_raster(tmp_path / "a.tif")
    far = (600000.0, 2.0, 0.0, 4100000.0, 0.0, -2.0)
    b, _ = labelled_raster(tmp_path / "b.tif", gt=far)
    with pytest.raises(EngineError, match=r"do not overlap: the first covers 500000\.0.*the second 600000\.0"):
        detect_change(str(a), str(b), str(tmp_path / "out"))
    assert not (tmp_path / "out" / "change.tif").exists()


def test_different_band_counts_resolution_and_partial_overlap(tmp_path):
    a, _ = labelled_raster(tmp_path / "a.tif")
    # The second date: 12 of the bands, 4 m pixels, shifted so that only part of the first is covered.
    bands = list(range(0, 20, 2)) + [17, 19]
    b_full = changed_copy(tmp_path / "b_full.tif", a, bands=bands, wavelengths=[WL20[i] for i in bands])
    b = tmp_path / "b.tif"
    gdal.Warp(str(b), str(b_full), xRes=4, yRes=4, outputBounds=[500020, 4099916, 500096, 4100000])
    res = detect_change(str(a), str(b), str(tmp_path / "out"))
    assert res["overlap_px"] == [38, 42] and "warped" in res["pairing"]
    assert res["shared_bands"] == 12
    change = gdal.Open(str(tmp_path / "out" / "change.tif"))
    assert (change.RasterXSize, change.RasterYSize) == (38, 42)
    assert change.GetGeoTransform()[0] == 500020.0


def test_one_date_all_nodata_in_the_overlap_is_an_error(tmp_path):
    a, _ = labelled_raster(tmp_path / "a.tif")
    b = changed_copy(tmp_path / "b.tif", a, nodata=-9999.0, fill=(0, 48))
    with pytest.raises(EngineError, match="no pixel valid on both dates"):
        detect_change(str(a), str(b), str(tmp_path / "out"))


def test_different_nodata_values_and_rotated_grids(tmp_path):
    a, _ = labelled_raster(tmp_path / "a.tif", gt=ROTATED_GT)
    cube = gdal.Open(str(a)).ReadAsArray()
    cube[:, :, :4] = -1.0
    a2 = make_tif(tmp_path / "a2.tif", cube, gt=ROTATED_GT, wavelengths=WL20, nodata=-1.0)
    b = changed_copy(tmp_path / "b.tif", a, gt=ROTATED_GT, nodata=0.0, fill=(40, 48))
    res = detect_change(str(a2), str(b), str(tmp_path / "out"))
    assert res["pairing"].startswith("same grid")
    change = gdal.Open(str(tmp_path / "out" / "change.tif"))
    arr = change.ReadAsArray()
    assert (arr[:, :4] == 255).all() and (arr[40:, :] == 255).all() and (arr[:40, 4:] != 255).all()
    assert change.GetGeoTransform() == pytest.approx(ROTATED_GT)


def test_empty_change_layer_is_written_with_a_note(tmp_path):
    a, _ = labelled_raster(tmp_path / "a.tif")
    res = detect_change(str(a), str(a), str(tmp_path / "out"), threshold=1.0)
    assert res["polygons"]["count"] == 0 and "empty layer" in res["warnings"][0]
    ds = ogr.Open(str(tmp_path / "out" / "change.gpkg"))
    assert ds.GetLayer(0).GetFeatureCount() == 0


def test_from_to_with_a_classification_bundle(tmp_path):
    a, _ = labelled_raster(tmp_path / "a.tif")
    b = changed_copy(tmp_path / "b.tif", a)
    polygons = write_polygons(tmp_path / "p.gpkg", stripe_polygons())
    finetune(str(a), str(polygons), "class", "lc", **FAST)
    res = detect_change(str(a), str(b), str(tmp_path / "out"), model="lc")
    assert (tmp_path / "out" / "fromto.tif").is_file()
    t = res["transitions_ha"]
    assert t.get("water → sand", 0) > 0.02 and t.get("grass → sand", 0) > 0.02
    assert t["sand → sand"] > t.get("sand → water", 0)
    ds = ogr.Open(str(tmp_path / "out" / "change.gpkg"))  # keep the dataset alive while its layer is used
    assert {f.GetField("to_class") for f in ds.GetLayer(0)} >= {"sand"}


def test_change_cli_on_the_real_landsat_pair(tmp_path, engine_env):
    d = need_shared(DATA / "change_landsat_taizhou")
    args = ["change", "--before", d / "Taizhou_2000TM", "--after", d / "Taizhou_2003TM", "--out", tmp_path / "out",
            "--min-area", 5000, "--device", "cpu"]
    r = subprocess.run([sys.executable, "-m", "engine", *map(str, args)],
                       cwd=ROOT, env={**engine_env, "SPECAWARE_DATA_DIR": str(tmp_path / "data")},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "changed" in r.stdout and "ha in" in r.stdout
    ds = ogr.Open(str(tmp_path / "out" / "change.gpkg"))
    lyr = ds.GetLayer(0)
    assert lyr.GetFeatureCount() > 0 and lyr.GetSpatialRef().GetAuthorityCode(None) == "32651"
    assert min(f.GetField("area_m2") for f in lyr) >= 5000


def test_classify_cells_on_a_grid_and_on_zones(tmp_path):
    a, truth = labelled_raster(tmp_path / "a.tif")
    polygons = write_polygons(tmp_path / "p.gpkg", stripe_polygons())
    finetune(str(a), str(polygons), "class", "lc", **FAST)
    res = classify_cells(str(a), "lc", str(tmp_path / "grid.gpkg"), cell_size=16)
    assert res["cells"] == 9 and res["cells_per_class"] == {"grass": 3, "sand": 3, "water": 3}
    ds = ogr.Open(str(tmp_path / "grid.gpkg"))
    feats = list(ds.GetLayer(0))
    first = feats[0]
    assert first.GetField("class") == "water" and first.GetField("valid_pixels") == 256
    assert first.GetField("p_water") == pytest.approx(first.GetField("confidence"))
    assert first.GetGeometryRef().GetArea() == pytest.approx(256 * 4)
    zones = write_polygons(tmp_path / "z.geojson", [("field", [(17, 2), (31, 2), (31, 40), (17, 40)])],
                           to_epsg=4326, driver="GeoJSON")
    res = classify_cells(str(a), "lc", str(tmp_path / "zones.gpkg"), zones=str(zones))
    ds = ogr.Open(str(tmp_path / "zones.gpkg"))
    (zone,) = list(ds.GetLayer(0))
    assert zone.GetField("class") == "grass" and zone.GetField("valid_pixels") > 400
    with pytest.raises(EngineError, match="GeoPackage"):
        classify_cells(str(a), "lc", str(tmp_path / "cells.shp"), cell_size=8)


def test_cell_model_from_labelled_cells_then_pooled_classify_cells(tmp_path, engine_env):
    """finetune --task cells trains the pooled-token head on one label per polygon; classify-cells then
    classifies each grid cell or parcel as a whole."""
    a, _ = labelled_raster(tmp_path / "a.tif")
    cells = [(name, rect(x0 + 2, y, x1 - 2, y + 8)) for name, x0, x1 in (("water", 0, 16), ("grass", 16, 32),
                                                                         ("sand", 32, 48)) for y in range(2, 44, 10)]
    labelled = write_polygons(tmp_path / "cells.gpkg", cells)
    r = subprocess.run([sys.executable, "-m", "engine", "finetune", "--task", "cells", "--raster", str(a),
                        "--polygons", str(labelled), "--class-field", "class", "--out", "parcels", "--epochs", "30",
                        "--device", "cpu", "--json"], cwd=ROOT, capture_output=True, text=True,
                       env={**engine_env, "SPECAWARE_DATA_DIR": str(tmp_path / "data")})
    assert r.returncode == 0, r.stderr[-2000:]
    trained = json.loads(r.stdout[r.stdout.index("{"):])
    assert trained["validation"]["oa"] >= 0.8 and trained["validation"]["cells"] >= 3
    from engine.model.bundles import load_bundle
    meta = load_bundle("parcels").meta
    assert meta["task"] == "cells" and meta["head"] == "pooled" and meta["tile"] == 32
    res = classify_cells(str(a), "parcels", str(tmp_path / "grid.gpkg"), cell_size=16)
    assert res["method"].startswith("pooled-token cell model")
    assert res["cells_per_class"] == {"grass": 3, "sand": 3, "water": 3}
    zones = write_polygons(tmp_path / "z.gpkg", [("p", rect(34, 2, 46, 46)), ("q", rect(1, 1, 15, 20))])
    classify_cells(str(a), "parcels", str(tmp_path / "zones.gpkg"), zones=str(zones))
    ds = ogr.Open(str(tmp_path / "zones.gpkg"))
    assert [f.GetField("class") for f in ds.GetLayer(0)] == ["sand", "water"]


def test_supervised_change_model_from_polygons(tmp_path):
    a, _ = labelled_raster(tmp_path / "a.tif")
    b = changed_copy(tmp_path / "b.tif", a)  # rows/cols 8–24 change
    rect_ = lambda x0, y0, x1, y1: [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]  # noqa: E731
    shapes = [("change", rect_(10, 10, 14, 22)), ("change", rect_(18, 10, 22, 22)),
              ("change", rect_(10, 17, 22, 22)), ("no change", rect_(30, 2, 46, 8)),
              ("no change", rect_(2, 30, 20, 46)), ("no change", rect_(30, 30, 46, 46))]
    polygons = write_polygons(tmp_path / "c.gpkg", shapes)
    r = finetune(str(a), str(polygons), "class", "chg", task="change", after=str(b),
                 **FAST)
    assert r["labels"]["classes"] == ["change", "no change"]
    res = detect_change(str(a), str(b), str(tmp_path / "out"), model="chg")
    assert res["magnitude"].startswith("probability of change") and res["threshold"] == 0.5
    assert trained_meta(r)["head"] == "logistic" and trained_meta(r)["change_method"] == "specaware"
    change = gdal.Open(str(tmp_path / "out" / "change.tif")).ReadAsArray()
    truth = np.zeros_like(change)
    truth[8:24, 8:24] = 1
    inter, union = ((change == 1) & (truth == 1)).sum(), ((change == 1) | (truth == 1)).sum()
    assert inter / union > 0.6, f"IoU of the changed block {inter / union:.2f}"
    with pytest.raises(EngineError, match="one of them 'change'"):
        bad = write_polygons(tmp_path / "bad.gpkg", [("new", rect_(10, 10, 14, 22)), ("old", rect_(30, 2, 46, 8))])
        finetune(str(a), str(bad), "class", "bad", task="change", after=str(b), epochs=1)
