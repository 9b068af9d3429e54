"""Change maps an analyst can trust: no change where there is none (the same raster twice; another illumination
and new noise), the known changed blocks of a synthetic pair found by every method, across two sensors too, and
each date read with its own file's band table."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from osgeo import gdal

from engine.io.synthetic import make_change_pair
from engine.learn.mad import chi2_magnitude, fit_irmad, no_change_pixels
from engine.service.jobs import call


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECAWARE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SPECAWARE_CHECKPOINT", raising=False)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pairs")
    return {"same_sensor": make_change_pair(d / "ng", size=96, seed=0),
            "two_sensors": make_change_pair(d / "x", size=96, seed=1, sensors=("aviris_classic", "aviris_ng")),
            "no_change": make_change_pair(d / "quiet", size=96, seed=2, n_blocks=0)}


def change_of(out: Path) -> np.ndarray:
    return gdal.Open(str(out / "change.tif")).ReadAsArray()


def f1(pred: np.ndarray, truth_path: Path) -> float:
    truth = gdal.Open(str(truth_path)).ReadAsArray() == 2
    tp = (pred & truth).sum()
    return 2 * tp / (pred.sum() + truth.sum())


def test_the_same_raster_twice_is_no_significant_change(pairs, tmp_path):
    before = str(pairs["same_sensor"].before)
    for method in ("specaware", "irmad", "cva"):
        r = call("change", before=before, after=before, out=str(tmp_path / method), method=method)
        assert r["changed_pixels"] == 0 and r["conclusion"] == "no significant change", (method, r["conclusion"])
        summary = json.loads((tmp_path / method / "summary.json").read_text())
        assert summary["conclusion"] == "no significant change"


def test_another_illumination_and_new_noise_is_not_change(pairs, tmp_path):
    """A per-band gain and offset and fresh noise (heteroscedastic, as real sensors have) change no pixel."""
    p = pairs["no_change"]
    r = call("change", before=str(p.before), after=str(p.after), out=str(tmp_path / "out"))
    assert r["changed_pixels"] / r["valid_pixels"] <= 0.005, r["conclusion"]
    assert r["threshold_method"] == "significance: chi-square test at p < 0.001"


@pytest.mark.parametrize("method,least", [("specaware", 0.9), ("irmad", 0.9)])
def test_known_blocks_are_found_on_one_sensor(pairs, tmp_path, method, least):
    p = pairs["same_sensor"]
    r = call("change", before=str(p.before), after=str(p.after), out=str(tmp_path / "out"), method=method)
    score = f1(change_of(tmp_path / "out") == 1, p.change)
    assert score >= least, f"{method}: F1 {score:.3f}; {r['magnitude']}"
    assert "−log10 p" in r["magnitude"] and r["polygons"]["count"] >= 1


def test_known_blocks_are_found_across_two_sensors(pairs, tmp_path):
    """AVIRIS-Classic (224 bands) before, AVIRIS-NG (425) after: the default method reads each date's own bands."""
    p = pairs["two_sensors"]
    r = call("change", before=str(p.before), after=str(p.after), out=str(tmp_path / "out"))
    score = f1(change_of(tmp_path / "out") == 1, p.change)
    assert score >= 0.85, f"F1 {score:.3f}; {r['magnitude']}"
    assert r["sensors"]["before"].startswith("AVIRIS-Classic (avc") and r["sensors"]["after"].startswith("AVIRIS-NG")


def test_otsu_splits_only_bimodal_magnitudes(pairs, tmp_path):
    quiet = pairs["no_change"]
    r = call("change", before=str(quiet.before), after=str(quiet.after), out=str(tmp_path / "q"), threshold="otsu")
    assert r["changed_pixels"] == 0 and r["threshold_method"].startswith("otsu: not applied")
    assert any("no second mode" in w for w in r["warnings"])
    p = pairs["same_sensor"]
    r = call("change", before=str(p.before), after=str(p.after), out=str(tmp_path / "b"), threshold="otsu")
    assert r["threshold_method"] == "otsu (the magnitudes have two modes)"
    assert f1(change_of(tmp_path / "b") == 1, p.change) > 0.8


def test_each_date_keeps_its_own_band_table(pairs, tmp_path):
    """The ENVI bad-band list and FWHM of each file reach the change job (a VRT would drop them)."""
    from engine.io.pairing import open_pair
    from engine.io.raster import RasterSource
    p = pairs["two_sensors"]
    a, b, _ = open_pair(str(p.before), str(p.after), tmp_path)
    for paired, path in ((a, p.before), (b, p.after)):
        own = RasterSource.open(path)
        assert paired.bands == own.bands and np.array_equal(paired.fwhm, own.fwhm)
        assert paired.profile.bad_bands == own.profile.bad_bands and paired.profile.bad_bands
    assert len(a.bands) < len(b.bands)


def test_irmad_is_invariant_to_gain_and_offset():
    """The statistic does not see a linear change of either date's bands."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 5)) @ rng.normal(size=(5, 5))
    b = a @ np.diag([1.3, 0.8, 1.1, 0.9, 1.5]) + 7 + rng.normal(0, 0.05, (4000, 5))
    b[:200] += rng.normal(0, 3, (200, 5))  # 5 % changed
    near = no_change_pixels(np.abs(a).mean(1) + 10, np.abs(b).mean(1) + 10)
    stat = fit_irmad(a, b, near)
    mag = chi2_magnitude(torch.from_numpy(stat.z(a, b)), stat.dof).numpy()
    assert (mag[:200] > 3).mean() > 0.95 and (mag[200:] > 3).mean() < 0.005
    stat2 = fit_irmad(a * 2 - 1, b, near)
    mag2 = chi2_magnitude(torch.from_numpy(stat2.z(a * 2 - 1, b)), stat2.dof).numpy()
    assert np.allclose(mag, mag2, atol=1e-6)
