"""Honest accuracy: the Olofsson area estimator against its published worked example, bootstrap intervals over
polygons, the warnings, and the few-label linear head (its solver, its resampling, a bundle that classifies)."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.learn.linear import fit_logistic
from engine.learn.metrics import (accuracy_warnings, bootstrap_intervals, boundary_shares,
                                  honest_accuracy, near_boundary, score, stratified_areas)
from engine.model.config import preset
from engine.model.linear import LinearSegmenter, resampling_matrix
from engine.model.segmenter import SpectralInput
from engine.service.jobs import call
from scenes import labelled_raster, read_array, stripe_polygons, write_polygons

# Olofsson et al. 2014 (Remote Sens. Environ. 148, 42-57), section 5: rows = map class, columns = reference.
OLOFSSON_SAMPLE = [[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]]
OLOFSSON_MAPPED = [200000, 150000, 3200000, 6450000]  # 30 m pixels
NAMES = ["deforestation", "forest gain", "stable forest", "stable non-forest"]


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECAWARE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("SPECAWARE_CHECKPOINT", raising=False)


def test_stratified_areas_match_the_papers_worked_example_and_a_hand_computation():
    cm = np.array(OLOFSSON_SAMPLE).T  # our confusion matrices have rows = reference
    est = stratified_areas(cm, OLOFSSON_MAPPED, NAMES, pixel_area_m2=900.0)
    # Published: deforestation 21,158 ± 6,158 ha; forest gain 11,686 ± 3,756 ha; stable forest 285,770 ± 15,510 ha;
    # stable non-forest 581,386 ± 16,282 ha; overall accuracy 0.95 ± 0.02.
    for name, area, margin in zip(NAMES, (21158, 11686, 285770, 581386), (6158, 3756, 15510, 16282)):
        c = est["classes"][name]
        assert c["adjusted"] == pytest.approx(area, abs=1.0) and c["margin"] == pytest.approx(margin, abs=1.0)
        assert c["ci95"] == pytest.approx([area - margin, area + margin], abs=2.0)
    # By hand for deforestation: W = (0.02, 0.015, 0.32, 0.645), p̂_·1 = 0.02·66/75 + 0.32·1/165 + 0.645·2/325.
    w = np.array(OLOFSSON_MAPPED) / 1e7
    p1 = w[0] * 66 / 75 + w[2] * 1 / 165 + w[3] * 2 / 325
    se = np.sqrt(w[0] ** 2 * (66 / 75) * (9 / 75) / 74 + w[2] ** 2 * (1 / 165) * (164 / 165) / 164 +
                 w[3] ** 2 * (2 / 325) * (323 / 325) / 324)
    assert est["classes"]["deforestation"]["adjusted"] == pytest.approx(p1 * 1e7 * 0.09, rel=1e-6)
    assert est["classes"]["deforestation"]["margin"] == pytest.approx(1.959964 * se * 1e7 * 0.09, rel=1e-5)
    users = [c["users_accuracy"]["estimate"] for c in est["classes"].values()]
    producers = [c["producers_accuracy"]["estimate"] for c in est["classes"].values()]
    assert users == pytest.approx([0.88, 0.73, 0.93, 0.96], abs=0.005)
    assert producers == pytest.approx([0.75, 0.85, 0.93, 0.96], abs=0.005)
    assert est["overall_accuracy"]["estimate"] == pytest.approx(0.95, abs=0.005)
    lo, hi = est["overall_accuracy"]["ci95"]
    assert hi - lo == pytest.approx(2 * 0.0185, abs=0.001)
    assert est["unit"] == "ha" and est["warnings"] == []


def test_unsampled_map_class_is_named():
    cm = np.array([[10, 0, 0], [1, 9, 0], [0, 0, 0]])  # no validation pixel mapped as class c
    est = stratified_areas(cm, [500, 400, 100], ["a", "b", "c"], None)
    assert est["unit"] == "pixels" and any("'c'" in w or "c have" in w for w in est["warnings"])


def polygon_sample(rng, polygons_per_class: int, pixels: int, accuracy_per_polygon):
    """Validation pixels in polygons: each polygon's pixels are all right or all wrong (as homogeneous areas are)."""
    truth, pred, units = [], [], []
    uid = 0
    for c in (1, 2):
        for _ in range(polygons_per_class):
            uid += 1
            right = rng.random() < accuracy_per_polygon
            truth += [c] * pixels
            pred += [c if right else 3 - c] * pixels
            units += [uid] * pixels
    return np.array(truth), np.array(pred), np.array(units)


def test_bootstrap_over_polygons_is_wider_than_over_pixels_and_contains_the_estimate():
    truth, pred, units = polygon_sample(np.random.default_rng(1), 12, 40, 0.8)
    by_polygon = bootstrap_intervals(truth, pred, units, ["a", "b"], seed=0)
    by_pixel = bootstrap_intervals(truth, pred, None, ["a", "b"], seed=0)
    oa = score(truth, pred, ["a", "b"])["oa"]
    assert by_polygon["oa"][0] <= oa <= by_polygon["oa"][1]
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(by_polygon["oa"]) > 3 * width(by_pixel["oa"]), "pixels of one polygon are not independent samples"
    assert by_polygon["unit_kind"] == "polygons" and by_polygon["units"] == 24
    assert bootstrap_intervals(truth, pred, units, ["a", "b"], seed=0) == by_polygon  # seeded


def test_single_polygon_class_falls_back_to_pixels_and_says_so():
    truth, pred, units = polygon_sample(np.random.default_rng(0), 1, 30, 1.0)
    ci = bootstrap_intervals(truth, pred, units, ["a", "b"])
    assert ci["unit_kind"] == "pixels" and ci["single_polygon_class"]
    acc = score(truth, pred, ["a", "b"])
    assert any("single validation polygon" in w for w in accuracy_warnings(acc, ci))


def test_warnings_for_few_pixels_few_polygons_and_interior_only_validation():
    truth, pred, units = polygon_sample(np.random.default_rng(2), 3, 8, 0.9)
    class_map = np.ones((40, 40), np.uint16)
    class_map[:, 20:] = 2
    interior = np.zeros((40, 40), bool)
    interior[5:10, 5:10] = True
    near = near_boundary(class_map)
    assert near[:, 18:22].all() and not near[:, :18].any() and not near[:, 22:].any()
    shares = boundary_shares(class_map, interior)
    assert shares == (0.0, pytest.approx(0.1))
    acc = honest_accuracy(truth, pred, ["a", "b"], units, shares)
    text = " ".join(acc["warnings"])
    assert "few validation pixels" in text and "6 validation polygons only" in text and "far from class" in text
    across = np.zeros((40, 40), bool)
    across[:, 15:25] = True
    assert not any("far from" in w for w in honest_accuracy(truth, pred, ["a", "b"], units,
                                                            boundary_shares(class_map, across))["warnings"])


def test_logistic_fit_reaches_the_optimum():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 5, generator=g)
    y = (x[:, 0] + 0.5 * torch.randn(60, generator=g) > 0).long() + (x[:, 1] > 1).long()
    w, b, _ = fit_logistic(x, y, 3)
    w, b = w.double().requires_grad_(), b.double().requires_grad_()
    counts = torch.bincount(y, minlength=3).double()
    loss = F.cross_entropy(x.double() @ w.T + b, y, weight=len(y) / (3 * counts)) + 0.5 / len(y) * (w * w).sum()
    loss.backward()
    assert w.grad.abs().max() < 1e-4 and b.grad.abs().max() < 1e-4, "the gradient vanishes at the L2 optimum"


def test_resampling_matrix_interpolates_in_wavelength():
    assert torch.equal(resampling_matrix([400.0, 500.0, 600.0], [400.2, 500.0, 600.1]), torch.eye(3))
    m = resampling_matrix([600.0, 400.0, 500.0], [450.0, 575.0, 700.0])  # unsorted source, target past its end
    spectrum = torch.tensor([6.0, 4.0, 5.0])  # value = wavelength / 100
    assert (spectrum @ m).tolist() == pytest.approx([4.5, 5.75, 6.0])


@pytest.mark.parametrize("bands", [20, 31])
def test_linear_head_forward_folds_into_the_features_logits(bands):
    torch.manual_seed(0)
    train_nm = list(np.linspace(420, 2400, 20))
    model = LinearSegmenter(preset("tiny"), 4, wavelength=train_nm).eval()
    with torch.no_grad():  # a fitted head: weights, feature means and scales far from 0 and 1
        model.classifier.weight.normal_()
        model.classifier.bias.normal_()
        model.mean.uniform_(-2, 2)
        model.scale.uniform_(0.1, 3)
    nm = train_nm if bands == 20 else list(np.linspace(400, 2450, bands))  # another sensor: resampled spectrum
    spec = SpectralInput(tuple(nm), tuple([10.0] * bands), 1.0, "avng", "L2")
    x = torch.rand(2, bands, 9, 7) * 0.6
    x[0, :, 0, 0] = 0.0  # a dark pixel: the brightness-normalised features are at their largest
    with torch.no_grad():
        folded = model(x, spec)
        built = model.classify(model.features(x, spec).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert folded.shape == built.shape == (2, 4, 9, 7)
    torch.testing.assert_close(folded, built, rtol=1e-4, atol=1e-3 * built.abs().max().item())
    assert torch.equal(folded.argmax(1), built.argmax(1))


def test_linear_head_is_the_default_beats_the_majority_class_and_classifies_another_band_set(tmp_path):
    raster, truth = labelled_raster(tmp_path / "scene.tif")
    polygons = write_polygons(tmp_path / "train.gpkg", stripe_polygons())
    r = call("finetune", raster=str(raster), polygons=str(polygons), class_field="class", out="lin")
    meta = json.loads((tmp_path / "data" / "models" / "lin" / "model.json").read_text())
    assert meta["head"] == "linear" and meta["fit"]["refitted_with_validation_pixels"] > 0
    assert r["validation"]["intervals"]["level"] == 0.95
    report = json.loads((tmp_path / "data" / "models" / "lin" / "report.json").read_text())
    assert "held out at random" in report["facts"]["validation"] and "L-BFGS" in report["facts"]["training"]
    html = (tmp_path / "data" / "models" / "lin" / "report.html").read_text()
    assert "95 % confidence intervals" in html and "single validation polygon" in html
    out = call("classify", raster=str(raster), out=str(tmp_path / "map"), model="lin")
    pred = read_array(out["outputs"][0])
    kappa = score(truth, pred, ["1", "2", "3"])["kappa"]
    majority = np.full_like(truth, np.bincount(truth.ravel()).argmax())
    assert kappa > 0.9 > score(truth, majority, ["1", "2", "3"])["kappa"]
    other, other_truth = labelled_raster(tmp_path / "other.tif", wavelengths=list(np.linspace(430, 2390, 20)))
    out = call("classify", raster=str(other), out=str(tmp_path / "other"), model="lin")
    assert any("cross-sensor" in w for w in out["warnings"])
    assert (read_array(out["outputs"][0]) == other_truth).mean() > 0.9


def test_classify_with_a_validation_layer_reports_intervals_and_adjusted_areas(tmp_path):
    raster, truth = labelled_raster(tmp_path / "scene.tif")
    polygons = write_polygons(tmp_path / "train.gpkg", stripe_polygons())
    call("finetune", raster=str(raster), polygons=str(polygons), class_field="class", out="m", val_fraction=0)
    names = {1: "grass", 2: "sand", 3: "water"}
    val = write_polygons(tmp_path / "val.gpkg", [(names[int(truth[y, x])], [(x + 0.5, y + 0.5)])
                                                 for y in range(1, 48, 5) for x in range(2, 48, 5)])
    out = call("classify", raster=str(raster), out=str(tmp_path / "map"), model="m", validation=str(val))
    rep = json.loads((tmp_path / "map" / "report.json").read_text())
    assert rep["validation"]["pixels"] == 100 and rep["validation"]["intervals"]["unit_kind"] == "polygons"
    areas = rep["adjusted_areas"]
    assert set(areas["classes"]) == {"grass", "sand", "water"} and areas["unit"] == "ha"
    total = sum(c["adjusted"] for c in areas["classes"].values())
    assert total == pytest.approx(sum(c["mapped"] for c in areas["classes"].values()))
    html = (tmp_path / "map" / "report.html").read_text()
    assert "Error-adjusted class areas" in html and "95 % confidence intervals" in html
    assert out["validation"]["oa"] > 0.9
