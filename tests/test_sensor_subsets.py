"""Research subsets of a known sensor keep their sensor: band tables that are a subset of a built-in's (another
year's calibration included), the header's sensor name, and `info` saying how the sensor was decided."""
import csv

import numpy as np
import pytest
from osgeo import gdal

from conftest import DATA, need_shared
from engine.io.sensors import builtin_profiles, profile_for_raster, subset_of_builtin
from engine.service.jobs import run_job
from scenes import NORTH_UP
from test_engine_io import spectra

TABLES = DATA / "band_metadata" / "derived"


def table(name: str) -> np.ndarray:
    rows = [r for r in csv.reader(line for line in open(need_shared(TABLES / name)) if not line.startswith("#"))]
    return np.array([float(r[1]) for r in rows[1:]])


def envi(path, wavelengths, sensor_type=None, fwhm=None):
    """An ENVI raster with a header band table (and sensor type)."""
    n = len(wavelengths)
    ds = gdal.GetDriverByName("ENVI").Create(str(path), 6, 5, n, gdal.GDT_Float32)
    ds.SetGeoTransform(NORTH_UP)
    md = {"wavelength": "{" + ", ".join(f"{w:.3f}" for w in wavelengths) + "}", "wavelength_units": "Nanometers"}
    if fwhm is not None:
        md["fwhm"] = "{" + ", ".join(f"{w:.3f}" for w in fwhm) + "}"
    if sensor_type:
        md["sensor_type"] = sensor_type
    ds.SetMetadata(md, "ENVI")
    ds.WriteRaster(0, 0, 6, 5, spectra(n, 5, 6).tobytes())
    ds = None
    return path


@pytest.mark.parametrize("name,bands", [("indian_pines_200_corrected.csv", 200),
                                        ("salinas_204_APPROX_from_aviris1995.csv", 204), ("ksc_176.csv", 176)])
def test_aviris_classic_research_subsets_are_aviris_classic(tmp_path, name, bands):
    wl = table(name)
    assert len(wl) == bands
    r, _ = run_job("info", {"raster": str(envi(tmp_path / "scene.img", wl))})
    assert r["sensor"] == "avc" and r["sensor_name"] == "AVIRIS-Classic"
    assert f"its {bands} bands are a subset of the built-in AVIRIS-Classic table's 224" in r["sensor_decided_by"]


def test_a_subset_without_fwhm_takes_the_built_ins_fwhm_of_its_bands(tmp_path):
    avc = builtin_profiles()["aviris_classic"]
    keep = [i for i in range(224) if i not in avc.bad_bands][:190]
    prof = profile_for_raster(envi(tmp_path / "s.img", np.asarray(avc.wavelength_nm)[keep]))
    assert prof.sensor == "avc" and prof.fwhm_nm == pytest.approx(list(np.asarray(avc.fwhm_nm)[keep]), abs=1e-3)
    assert prof.bad_windows_nm == avc.bad_windows_nm


def test_other_sensors_stay_others(tmp_path):
    landsat = [482.5, 565.0, 660.0, 825.0, 1650.0, 2220.0]
    hymap = list(np.linspace(450, 2480, 126))  # 16 nm spacing: no built-in's
    enmap = list(np.concatenate([np.linspace(418, 993, 91), np.linspace(1002, 2445, 133)]))
    for i, wl in enumerate((landsat, hymap, enmap)):
        r, _ = run_job("info", {"raster": str(envi(tmp_path / f"o{i}.img", wl))})
        assert r["sensor"] == "others" and "no built-in sensor has this" in r["sensor_decided_by"]
    assert subset_of_builtin(hymap) is None and subset_of_builtin(landsat) is None


def test_the_headers_sensor_name_decides_first(tmp_path):
    avc = builtin_profiles()["aviris_classic"]
    subset = np.asarray(avc.wavelength_nm)[20:200]
    r, _ = run_job("info", {"raster": str(envi(tmp_path / "h.img", subset, sensor_type="Hyperion"))})
    assert r["sensor"] == "others"
    assert r["sensor_decided_by"] == "the header's sensor type 'Hyperion' (not a built-in sensor)"
    ng = table("avirisng_432_2015_v1e.csv")  # 432 bands: not the built-in 425 table, but the header names it
    r, _ = run_job("info", {"raster": str(envi(tmp_path / "ng.img", ng, sensor_type="AVIRIS-NG"))})
    assert r["sensor"] == "avng" and "header's sensor type 'AVIRIS-NG'" in r["sensor_decided_by"]
    r, _ = run_job("info", {"raster": str(envi(tmp_path / "u.img", subset, sensor_type="Unknown"))})
    assert r["sensor"] == "avc", "ENVI's default 'Unknown' names no sensor"
    r, _ = run_job("info", {"raster": str(envi(tmp_path / "g.img", subset)), "sensor": "others"})
    assert r["sensor"] == "others" and r["sensor_decided_by"] == "chosen: sensor 'others' was given"
