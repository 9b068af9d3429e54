"""`suggest`: where to label next, in process, from the CLI, in the real worker and from the dock; and the labelled
points going back into fine-tuning."""
import json
import subprocess
import sys

import numpy as np
import pytest
from osgeo import ogr

from conftest import ROOT
from engine.core.errors import EngineError
from engine.service.jobs import call
from scenes import MATERIALS, NORTH_UP, stripe_polygons, write_polygons
from test_engine_io import WL20, make_tif
from test_worker import WorkerProcess

SIZE = 48
BLEND = (12, 20)  # columns where water fades into grass: the pixels a model should hesitate on


def blended_raster(path):
    """Water | grass | sand stripes as in `scenes.labelled_raster`, but water fades into grass over BLEND."""
    rng = np.random.default_rng(0)
    share = np.clip((np.arange(SIZE) - BLEND[0]) / (BLEND[1] - BLEND[0]), 0, 1)  # grass share per column
    cube = (MATERIALS["water"][:, None] * (1 - share) + MATERIALS["grass"][:, None] * share)[:, None, :]
    cube = np.repeat(cube, SIZE, axis=1).astype(np.float32)
    cube[:, :, 32:] = MATERIALS["sand"][:, None, None]
    cube *= rng.normal(1, 0.03, (1, SIZE, SIZE)).astype(np.float32)
    return make_tif(path, cube, gt=NORTH_UP, wavelengths=WL20)


@pytest.fixture
def trained(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECAWARE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("SPECAWARE_CHECKPOINT", raising=False)
    raster = blended_raster(tmp_path / "scene.tif")
    polygons = write_polygons(tmp_path / "train.gpkg", stripe_polygons())
    call("finetune", raster=str(raster), polygons=str(polygons), class_field="class", out="m")
    return raster, polygons


def read_points(path):
    ds = ogr.Open(str(path))
    lyr = ds.GetLayer(0)
    out = []
    for f in lyr:
        g = f.GetGeometryRef()
        x, y = g.GetX(), g.GetY()
        out.append({**f.items(), "px": (x - NORTH_UP[0]) / NORTH_UP[1], "py": (y - NORTH_UP[3]) / NORTH_UP[5]})
    return out


def test_points_are_uncertain_spread_and_away_from_labels(trained, tmp_path):
    raster, polygons = trained
    r = call("suggest", raster=str(raster), model="m", count=9, out=str(tmp_path / "next.gpkg"))
    assert r["points"] == 9 and r["kept_away_from"] == [str(polygons)] and r["class_field"] == "class"
    pts = read_points(tmp_path / "next.gpkg")
    assert [p["rank"] for p in pts] == list(range(1, 10)) and all(p["class"] is None for p in pts)
    assert all(0 <= p["margin"] <= 1 and p["predicted"] != p["runner_up"] for p in pts)
    in_blend = sum(BLEND[0] - 1 <= p["px"] <= BLEND[1] + 1 for p in pts)
    assert in_blend >= 4, f"the blended columns are where the model hesitates; {in_blend} of 9 points fell there"
    assert len({p["predicted"] for p in pts}) == 3, "points go to every predicted class in turn"
    xy = np.array([(p["px"], p["py"]) for p in pts])
    gaps = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))[np.triu_indices(9, 1)]
    assert gaps.min() >= 2.0, "points are spread, not clustered on one pixel"
    labelled = np.zeros((SIZE, SIZE), bool)
    for _, ring in stripe_polygons():
        (x0, y0), (x1, y1) = ring[0], ring[2]
        labelled[y0:y1, x0:x1] = True
    for p in pts:
        x, y = int(p["px"]), int(p["py"])
        assert not labelled[max(0, y - 2):y + 3, max(0, x - 2):x + 3].any(), "never beside a labelled pixel"


def test_labelled_points_go_back_into_fine_tuning(trained, tmp_path):
    raster, polygons = trained
    call("suggest", raster=str(raster), model="m", count=6, out=str(tmp_path / "next.gpkg"))
    ds = ogr.Open(str(tmp_path / "next.gpkg"), 1)
    lyr = ds.GetLayer(0)
    for i, f in enumerate(lyr):  # the analyst labels four points and leaves two empty
        if i < 4:
            px = (f.GetGeometryRef().GetX() - NORTH_UP[0]) / NORTH_UP[1]
            f.SetField("class", "water" if px < 16 else "grass" if px < 32 else "sand")
            lyr.SetFeature(f)
    ds = None
    before = call("finetune", raster=str(raster), polygons=str(polygons), class_field="class", out="m0",
                  val_fraction=0)
    after = call("finetune", raster=str(raster), polygons=str(polygons), class_field="class", out="m1",
                 val_fraction=0, samples=str(tmp_path / "next.gpkg"))
    gained = sum(after["labels"]["train_pixels"].values()) - sum(before["labels"]["train_pixels"].values())
    assert gained == 4
    assert any("2 feature(s)" in w and "not labelled yet" in w for w in after["warnings"])


def test_more_points_than_pixels_places_what_it_can_and_says_so(trained, tmp_path):
    raster, _ = trained
    r = call("suggest", raster=str(raster), model="m", count=10000, out=str(tmp_path / "all.gpkg"))
    assert 0 < r["points"] < 10000 and any("of 10000 points could be placed" in w for w in r["warnings"])


def test_errors_name_the_output_and_the_model(trained, tmp_path):
    raster, _ = trained
    with pytest.raises(EngineError, match=r"\.gpkg"):
        call("suggest", raster=str(raster), model="m", count=3, out=str(tmp_path / "points.shp"))
    with pytest.raises(EngineError, match="no model 'nope'"):
        call("suggest", raster=str(raster), model="nope", count=3, out=str(tmp_path / "p.gpkg"))
    assert not (tmp_path / "p.gpkg").exists()


def test_suggest_from_the_cli_and_the_worker(trained, tmp_path, engine_env):
    raster, _ = trained
    env = {**engine_env, "SPECAWARE_DATA_DIR": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    res = subprocess.run([sys.executable, "-m", "engine", "suggest", "--raster", str(raster), "--model", "m",
                          "--count", "5", "--out", str(tmp_path / "cli.gpkg"), "--device", "cpu"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "wrote 5 points to label" in res.stdout and len(read_points(tmp_path / "cli.gpkg")) == 5
    worker = WorkerProcess(env)
    try:
        worker.send({"id": "s", "job": "suggest", "params": {"raster": str(raster), "model": "m", "count": 4,
                                                            "out": str(tmp_path / "worker.gpkg")}})
        events = worker.until_done("s")
    finally:
        worker.close()
    assert events[-1]["event"] == "result", events[-1]
    assert events[-1]["result"]["points"] == 4 and any(e["event"] == "progress" for e in events)
    assert json.loads(json.dumps(events[-1]["result"]))["out"] == str(tmp_path / "worker.gpkg")


def test_dock_suggests_points_that_the_next_fine_tune_uses(qgis_app, slot_errors, make_dock, tmp_path):
    from specaware_qgis import settings
    from conftest import wait_for
    from test_plugin import choose, finished, messages
    settings.put("output_dir", tmp_path / "out")  # the dock's output folder starts there
    dock = make_dock()
    wait_for(lambda: not dock.queue.tasks, what="the engine check")
    raster = blended_raster(tmp_path / "scene.tif")
    polygons = write_polygons(tmp_path / "train.gpkg", stripe_polygons())
    choose(dock, raster, polygons, "dock-suggest")
    train = dock.train_section
    assert finished(dock, train.finetune(), "fine-tune").error is None
    train.suggest_spin.setValue(7)
    task = finished(dock, train.suggest(), "suggest")
    assert task.error is None, task.error
    layer = train.samples_box.currentLayer()
    assert layer is not None and layer.featureCount() == 7 and "points to label" in messages(dock)
    assert task.result["out"].startswith(str(tmp_path / "out"))
    index = layer.fields().indexOf("class")
    layer.startEditing()
    for f in list(layer.getFeatures())[:3]:
        layer.changeAttributeValue(f.id(), index, f["predicted"])  # the analyst agrees with the model here
    assert layer.commitChanges()
    train.name_edit.setText("dock-suggest-2")
    task = finished(dock, train.finetune(), "fine-tune with the labelled suggestions")
    assert task.error is None, task.error
    assert any("4 feature(s)" in w and "not labelled yet" in w for w in task.warnings)
