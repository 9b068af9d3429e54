"""Fine-tune and classify on real GDAL/OGR files: labels from polygons, the split, training, bundles, reports,
the CLI, and every bad input the issue lists."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from osgeo import gdal, ogr

from conftest import ROOT
from engine.model.bundles import load_bundle
from engine.learn.cluster import kmeans
from engine.core.errors import Cancelled, EngineError
from engine.learn.metrics import accuracy, confusion_matrix
from engine.model.config import preset
from engine.model.segmenter import Segmenter, SpectralInput
from engine.io.datasets import open_raster
from engine.learn.samples import WindowSampler, load_labels
from engine.service.jobs import call
from scenes import NORTH_UP, labelled_raster, read_array, rect, stripe_polygons, write_polygons
from test_engine_io import ROTATED_GT, WL20

FAST = dict(epochs=3, window=32, batch_size=4, windows_per_epoch=32, frozen_pool=16, lr=3e-3, head="light")


def finetune(raster, polygons, class_field, out, progress=None, cancel=None, **params):
    return call("finetune", progress, cancel, raster=raster, polygons=polygons, class_field=class_field, out=out,
                **{**FAST, **params})


def classify(raster, out, **params):
    return call("classify", raster=raster, out=out, **params)


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    """Bundles and settings go to this test's folder, never the user's."""
    monkeypatch.setenv("SPECAWARE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("SPECAWARE_CHECKPOINT", raising=False)


@pytest.fixture
def scene(tmp_path):
    raster, truth = labelled_raster(tmp_path / "scene.tif")
    polygons = write_polygons(tmp_path / "train.gpkg", stripe_polygons())
    return raster, polygons, truth


# --- labels from polygons ------------------------------------------------------------------------------------

def test_labels_land_on_the_right_pixels_on_a_rotated_grid(tmp_path):
    raster, _ = labelled_raster(tmp_path / "rot.tif", gt=ROTATED_GT)
    shapes = [("a", rect(2, 3, 6, 8)), ("b", rect(10, 10, 14, 12)), ("b", [(20.5, 20.5)])]
    poly = write_polygons(tmp_path / "p.gpkg", shapes, gt=ROTATED_GT)
    labels = load_labels(open_raster(raster), poly, "class", val_fraction=0)
    lab = labels.train
    assert (lab[3:8, 2:6] == 1).all() and lab[3:8, 2:6].size == (lab == 1).sum()
    assert (lab[10:12, 10:14] == 2).all()
    assert lab[20, 20] == 2, "a point labels the pixel under it"
    assert (lab == 2).sum() == 8 + 1


def test_polygons_in_another_crs_are_reprojected(tmp_path):
    raster, _ = labelled_raster(tmp_path / "r.tif")
    shapes = [("a", rect(4, 4, 12, 12)), ("b", rect(20, 20, 30, 26))]
    same = load_labels(open_raster(raster), write_polygons(tmp_path / "same.gpkg", shapes), "class", val_fraction=0)
    other = load_labels(open_raster(raster), write_polygons(tmp_path / "wgs84.geojson", shapes, to_epsg=4326,
                                                            driver="GeoJSON"), "class", val_fraction=0)
    assert (same.train > 0).sum() == 64 + 60
    assert (same.train != other.train).sum() <= 4, "lon/lat polygons must land on the same pixels"


def test_self_intersecting_polygon_is_repaired(tmp_path):
    raster, _ = labelled_raster(tmp_path / "r.tif")
    bowtie = [(2, 2), (12, 12), (12, 2), (2, 12)]
    poly = write_polygons(tmp_path / "p.gpkg", [("a", bowtie), ("b", rect(30, 30, 40, 40))])
    labels = load_labels(open_raster(raster), poly, "class", val_fraction=0)
    assert any("MakeValid" in n for n in labels.notes)
    assert (labels.train == 1).sum() > 20


def test_missing_or_null_class_field_names_it(tmp_path):
    raster, _ = labelled_raster(tmp_path / "r.tif")
    poly = write_polygons(tmp_path / "p.gpkg", stripe_polygons())
    with pytest.raises(EngineError, match=r"no field 'landcover'.*class, note"):
        load_labels(open_raster(raster), poly, "landcover")
    nulls = write_polygons(tmp_path / "n.gpkg", [("a", rect(1, 1, 9, 9)), (None, rect(20, 20, 30, 30))])
    with pytest.raises(EngineError, match=r"feature \d+ has no value in the class field 'class'"):
        load_labels(open_raster(raster), nulls, "class")


def test_single_class_too_few_pixels_and_outside_are_errors(tmp_path):
    raster, _ = labelled_raster(tmp_path / "r.tif")
    ds = open_raster(raster)
    one = write_polygons(tmp_path / "one.gpkg", [("a", rect(1, 1, 9, 9)), ("a", rect(20, 20, 30, 30))])
    with pytest.raises(EngineError, match="single class"):
        load_labels(ds, one, "class")
    few = write_polygons(tmp_path / "few.gpkg", [("a", rect(1, 1, 3, 3)), ("b", rect(20, 20, 22, 22))])
    with pytest.raises(EngineError, match=r"only 8 labelled pixel"):
        load_labels(ds, few, "class")
    away = write_polygons(tmp_path / "away.gpkg", [("a", rect(500, 500, 510, 510)), ("b", rect(600, 600, 610, 610))])
    with pytest.raises(EngineError, match="none of the 2 features"):
        load_labels(ds, away, "class")


def test_integer_class_field(tmp_path):
    raster, _ = labelled_raster(tmp_path / "r.tif")
    shapes = [(7, rect(1, 1, 9, 9)), (3, rect(20, 20, 30, 30))]
    poly = write_polygons(tmp_path / "p.shp", shapes, field="code", field_type=ogr.OFTInteger,
                          driver="ESRI Shapefile")
    labels = load_labels(open_raster(raster), poly, "code", val_fraction=0)
    assert labels.scheme.names == ["3", "7"], "integer classes sort numerically"
    assert labels.train[25, 25] == 1 and labels.train[5, 5] == 2


def test_split_is_by_polygon_seeded_and_stratified(tmp_path):
    raster, _ = labelled_raster(tmp_path / "r.tif")
    shapes = stripe_polygons(per_class=4)[:-4] + [("sand", rect(36, 2, 44, 10))]  # sand: one polygon only
    poly = write_polygons(tmp_path / "p.gpkg", shapes)
    ds = open_raster(raster)
    a = load_labels(ds, poly, "class", val_fraction=0.5, seed=3)
    b = load_labels(ds, poly, "class", val_fraction=0.5, seed=3)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    assert not ((a.train > 0) & (a.val > 0)).any()
    for name, x0, x1 in [("grass", 16, 32), ("water", 0, 16)]:
        assert a.polygons[name] == {"train": 2, "val": 2}
        for y in (2, 13, 24, 35):  # each polygon (6 rows tall) is wholly on one side
            block_train, block_val = a.train[y:y + 6, x0 + 3:x1 - 3], a.val[y:y + 6, x0 + 3:x1 - 3]
            assert (block_train > 0).all() != (block_val > 0).all()
    assert a.unvalidated == ["sand"] and any("single polygon" in n for n in a.notes)


def test_separate_validation_layer_replaces_the_split(tmp_path):
    raster, _ = labelled_raster(tmp_path / "r.tif")
    train = write_polygons(tmp_path / "t.gpkg", stripe_polygons(per_class=1))
    val = write_polygons(tmp_path / "v.gpkg", [("grass", rect(18, 40, 30, 46)), ("water", rect(2, 40, 12, 46))])
    labels = load_labels(open_raster(raster), train, "class", val_polygons=val)
    assert labels.polygons["grass"] == {"train": 1, "val": 1}
    assert (labels.val > 0).sum() == 12 * 6 + 10 * 6
    assert labels.unvalidated == ["sand"]


def test_window_sampler_is_class_balanced_and_inside():
    labels = np.zeros((100, 100), np.uint16)
    labels[:90, :] = 1
    labels[95, 95] = 2  # one pixel of a rare class
    s = WindowSampler(labels, 32, seed=0)
    origins = s.sample(400)
    assert all(0 <= x <= 68 and 0 <= y <= 68 for x, y in origins)
    rare = sum(1 for x, y in origins if x <= 95 < x + 32 and y <= 95 < y + 32)
    assert rare > 150, "about half the windows should hold the rare class"


# --- model parts, metrics, k-means ------------------------------------------------------------------------------

@pytest.mark.parametrize("head", ["light", "upernet"])
def test_heads_give_pixel_logits_and_frozen_mode_trains_only_heads(head):
    cfg = preset("tiny", depth=4, embed_dim=48, num_heads=2)
    model = Segmenter(cfg, head, 5)
    spec = SpectralInput(tuple(WL20), (10.0,) * 20, 2.0, "others", "L2")
    x = torch.rand(2, 20, 32, 32)
    model.set_trainable("frozen")
    out = model(x, spec)
    assert out.shape == (2, 5, 32, 32)
    out.mean().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.head.parameters() if p.requires_grad)
    model.set_trainable("last-1")
    trainable = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("blocks.3.", "norm.")) for n in trainable)
    with pytest.raises(EngineError, match="last-N"):
        model.set_trainable("some")


def test_metrics_match_a_hand_computed_example():
    truth = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 0])
    pred = np.array([1, 1, 1, 2, 2, 2, 1, 3, 3, 2])
    cm = confusion_matrix(truth, pred, 3)
    assert cm.tolist() == [[3, 1, 0], [1, 2, 0], [0, 0, 2]]
    a = accuracy(cm, ["a", "b", "c"])
    assert a["oa"] == pytest.approx(7 / 9)
    assert a["aa"] == pytest.approx((3 / 4 + 2 / 3 + 1) / 3)
    pe = (4 * 4 + 3 * 3 + 2 * 2) / 81
    assert a["kappa"] == pytest.approx((7 / 9 - pe) / (1 - pe))
    assert a["per_class"]["a"]["iou"] == pytest.approx(3 / 5)
    assert a["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert a["miou"] == pytest.approx((3 / 5 + 2 / 4 + 1) / 3)


def test_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + torch.randn(50, 2, generator=g) for c in centers])
    found = kmeans(x, 3, seed=1)
    dist = torch.cdist(centers, found).min(dim=1).values
    assert (dist < 1.0).all()


# --- end to end ------------------------------------------------------------------------------------------------

def test_finetune_then_classify_in_process(scene, tmp_path):
    raster, polygons, truth = scene
    r = finetune(str(raster), str(polygons), "class", "stripes", epochs=6)
    bundle = load_bundle("stripes")
    meta = bundle.meta
    assert meta["backbone"].startswith("random initialisation — no pretrained weights configured")
    assert meta["classes"]["names"] == ["grass", "sand", "water"]
    assert meta["profile"]["wavelength_nm"][0] == pytest.approx(420)
    assert len(meta["history"]) == r["epochs_run"] and meta["validation"]["pixels"] > 0
    assert set(bundle.state_dict()) == set(bundle.build().state_dict())
    html = (bundle.path / "report.html").read_text()
    assert "Confusion matrix" in html and "<svg" in html and "random initialisation" in html
    out = classify(str(raster), str(tmp_path / "map"), model="stripes")
    classes = read_array(out["outputs"][0])
    assert (classes == truth).mean() > 0.9, "three clean stripes must be learnt"
    ds = gdal.Open(out["outputs"][0])
    band = ds.GetRasterBand(1)
    assert band.GetNoDataValue() == 0  # also makes GDAL 3.6 load the .aux.xml, which holds the category names
    assert band.GetRasterCategoryNames()[1:4] == ["grass", "sand", "water"]
    assert band.GetColorTable().GetColorEntry(1)[:3] == (78, 121, 167)
    assert ds.GetGeoTransform() == NORTH_UP
    rep = json.loads((tmp_path / "map" / "report.json").read_text())
    assert rep["areas_ha"]["grass"] == pytest.approx(rep["pixel_counts"]["grass"] * 4 / 1e4)
    conf = read_array(out["outputs"][1])
    assert np.nanmin(conf) >= 0 and np.nanmax(conf) <= 1


def test_cross_sensor_warns_and_disjoint_wavelengths_fail(scene, tmp_path):
    raster, polygons, _ = scene
    finetune(str(raster), str(polygons), "class", "m", epochs=1)
    other, _ = labelled_raster(tmp_path / "other.tif", wavelengths=list(np.linspace(450, 2300, 20) + 3))
    out = classify(str(other), str(tmp_path / "o"), model="m")
    assert any("cross-sensor" in w for w in out["warnings"])
    assert any("cross-sensor" in w for w in json.loads((tmp_path / "o" / "report.json").read_text())["warnings"])
    wide, _ = labelled_raster(tmp_path / "wide.tif")  # the same bands, four times as wide
    ds = gdal.Open(str(wide), gdal.GA_Update)
    for b in range(1, ds.RasterCount + 1):
        ds.GetRasterBand(b).SetMetadataItem("fwhm", "40")
    ds = None
    out = classify(str(wide), str(tmp_path / "w"), model="m")
    assert any("cross-sensor use (band widths (FWHM) differ)" in w for w in out["warnings"]), out["warnings"]
    out = classify(str(raster), str(tmp_path / "same"), model="m")
    assert not any("cross-sensor" in w for w in out["warnings"]), out["warnings"]
    from test_engine_io import make_tif, spectra
    swir = make_tif(tmp_path / "swir.tif", spectra(5, 16, 16), gt=NORTH_UP,
                    wavelengths=list(np.linspace(2450, 2540, 5)))
    with pytest.raises(EngineError, match="no overlap"):
        classify(str(swir), str(tmp_path / "s"), model="m")
    assert not (tmp_path / "s" / "classes.tif").exists()


def test_corrupted_bundle_is_an_error(scene, tmp_path):
    raster, polygons, _ = scene
    r = finetune(str(raster), str(polygons), "class", "m", epochs=1)
    bundle = r["bundle"]
    weights = os.path.join(bundle, "weights.pt")
    data = open(weights, "rb").read()
    open(weights, "wb").write(data[: len(data) // 2])
    with pytest.raises(EngineError, match="damaged"):
        classify(str(raster), str(tmp_path / "c"), model="m")
    open(os.path.join(bundle, "model.json"), "w").write("{not json")
    with pytest.raises(EngineError, match="model.json is damaged"):
        load_bundle("m")


def test_cancelled_finetune_leaves_no_bundle_and_resume_continues(scene):
    raster, polygons, _ = scene
    epochs_seen = []

    def progress(f, msg):
        if msg.startswith("epoch"):
            epochs_seen.append(msg)

    with pytest.raises(Cancelled):
        finetune(str(raster), str(polygons), "class", "c", progress=progress, cancel=lambda: len(epochs_seen) >= 2,
                 epochs=4)
    from engine.model.bundles import models_dir
    leftovers = list(models_dir().iterdir()) if models_dir().exists() else []
    assert leftovers == [], "a cancelled run must leave no bundle and no temp folder"
    r = finetune(str(raster), str(polygons), "class", "c", epochs=4, resume=True)
    hist = load_bundle("c").meta["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4] and r["epochs_run"] == 4
    with pytest.raises(EngineError, match="already exists"):
        finetune(str(raster), str(polygons), "class", "c", epochs=4)


def test_unsupervised_clusters(scene, tmp_path):
    raster, _, truth = scene
    out = classify(str(raster), str(tmp_path / "k"), clusters=3)
    assert out["kind"] == "unsupervised"
    classes = read_array(out["outputs"][0])
    assert set(np.unique(classes)) <= {1, 2, 3} and len(np.unique(classes)) >= 2
    names = gdal.Info(out["outputs"][0], format="json")["bands"][0]["categories"]
    assert names[1:4] == ["cluster 1", "cluster 2", "cluster 3"]
    # Clusters follow the materials: most pixels of a stripe share one cluster.
    purity = np.mean([np.bincount(classes[truth == c]).max() / (truth == c).sum() for c in (1, 2, 3)])
    assert purity > 0.8


def test_cli_finetune_classify_and_models(scene, tmp_path, engine_env):
    raster, polygons, _ = scene
    env = {**engine_env, "SPECAWARE_DATA_DIR": os.environ["SPECAWARE_DATA_DIR"],
           "XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"]}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)

    r = cli("finetune", "--raster", raster, "--polygons", polygons, "--class-field", "class", "--out", "cli",
            "--epochs", 2, "--window", 32, "--batch-size", 4, "--frozen-pool", 32, "--head", "light",
            "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "model cli saved in" in r.stdout and "OA" in r.stdout and "epoch 2/2" in r.stderr
    r = cli("classify", "--raster", raster, "--model", "cli", "--out", tmp_path / "out", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert {os.path.basename(p) for p in res["outputs"]} == {"classes.tif", "confidence.tif"}
    assert (tmp_path / "out" / "report.json").exists()
    r = cli("models", "list")
    assert "cli" in r.stdout and "3 classes" in r.stdout
    assert cli("models", "rename", "cli", "renamed").returncode == 0
    assert "renamed" in cli("models", "show", "renamed").stdout
    assert cli("models", "delete", "renamed").returncode == 0
    r = cli("classify", "--raster", raster, "--model", "renamed", "--out", tmp_path / "x")
    assert r.returncode == 2 and "no model 'renamed'" in r.stderr
    r = cli("finetune", "--raster", raster, "--polygons", polygons, "--class-field", "klass", "--out", "bad")
    assert r.returncode == 2 and "no field 'klass'" in r.stderr and "class, note" in r.stderr
