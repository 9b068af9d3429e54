"""Engine I/O on real files and on small GDAL files made here: profiles, windows, masks, tiling, writing."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal

from conftest import DATA, ROOT, need_shared
from engine.core.errors import Cancelled, EngineError, SpecAwareWarning
from engine.io.datasets import open_raster
from engine.io.raster import RasterSource
from engine.io.stream import stream_predictions
from engine.service.jobs import run_job
from engine.io.sensors import SensorProfile, all_profiles, profile_for_raster, save_custom_profile
from engine.io.tiling import TileGrid, blend_window
from standin import standin_model, write_classes

CHIPS = DATA / "aviris_ng_chips"
ROTATED_GT = (724440.117, 0.2847, 1.0625, 4077192.168, 1.0625, -0.2847)


def make_tif(path, array, gt=ROTATED_GT, wavelengths=None, units="Nanometers", nodata=None, fmt="GTiff",
             options=()):
    """A real GDAL file [bands, h, w]; wavelengths go into per-band metadata as ENVI/EnMAP-Box write them."""
    bands, h, w = array.shape
    dtype = gdal.GDT_CFloat32 if np.iscomplexobj(array) else {np.dtype("float32"): gdal.GDT_Float32,
                                                               np.dtype("int16"): gdal.GDT_Int16}[array.dtype]
    ds = gdal.GetDriverByName(fmt).Create(str(path), w, h, bands, dtype, list(options))
    ds.SetGeoTransform(gt)
    from osgeo import osr
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32612)
    ds.SetProjection(srs.ExportToWkt())
    for b in range(bands):
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(array[b])
        if wavelengths is not None:
            band.SetMetadataItem("wavelength", str(wavelengths[b]))
            band.SetMetadataItem("wavelength_units", units)
            band.SetMetadataItem("fwhm", "10")
        if nodata is not None:
            band.SetNoDataValue(nodata)
    ds = None
    return path


def spectra(bands=20, h=12, w=12, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((bands, h, w)) * 0.5 + 0.05).astype(np.float32)


WL20 = list(np.linspace(420, 2400, 20))


# --- sensor profiles -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,sensor,level,gsd", [
    ("ang20150420t182808_corr_v1e_img_4200-4210_70-80.img", "avng", "L2", 1.1),
    ("ang20140912t192359_corr_v1c_img_2580-2590_540-550.img", "avng", "L2", 3.1),
    ("ang20150422t163638_corr_v1e_img_987_654.img", "avng", "L2", 2.7),
    ("f080702t01p00r08rdn_c_sc01_ort_img_123_456.img", "avc", "L1", 16.4),
])
def test_info_on_real_aviris_headers(name, sensor, level, gsd):
    r, warns = run_job("info", {"raster": str(need_shared(CHIPS / name))})
    assert (r["sensor"], r["level"]) == (sensor, level)
    assert r["gsd_m"] == pytest.approx(gsd, abs=1e-3)
    if sensor == "avng":  # 346 nm first band: dropped with a warning naming it
        assert r["dropped"][0]["band"] == 0 and "outside 350" in r["dropped"][0]["reason"]
        assert any("0-based [0]" in w for w in warns)
        assert r["bands_used"] < r["bands"] and r["wavelength_range_nm"][0] > 350
    else:
        assert r["scale"] == 1.0  # radiance stays in its units


def test_info_av3_radiance_in_micrometres():
    path = need_shared(DATA / "band_metadata" / "isofit_tutorials" /
                       "20250308_AV3Cal_wltest_remote_AV320250308t200738_rdn.img")
    r, _ = run_job("info", {"raster": str(path)})
    assert (r["sensor"], r["level"], r["bands"]) == ("av3", "L1", 284)
    assert r["wavelength_range_nm"][0] == pytest.approx(389.75)  # µm converted
    bad = {d["band"] for d in r["dropped"]}
    assert set(range(129, 141)) <= bad and set(range(190, 213)) <= bad


def test_info_landsat_is_others():
    r, warns = run_job("info", {"raster": str(need_shared(DATA / "change_landsat_taizhou" / "Taizhou_2000TM"))})
    assert r["sensor"] == "others" and r["bands_used"] == 6 and r["gsd_m"] == 30.0
    assert r["wavelength_range_nm"] == [482.5, 2220.0]


def test_info_cli_json(engine_env):
    path = need_shared(CHIPS / "ang20150420t182808_corr_v1e_img_4200-4210_70-80.img")
    res = subprocess.run([sys.executable, "-m", "engine", "info", str(path), "--json"], cwd=ROOT, env=engine_env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["sensor"] == "avng" and doc["gsd_m"] == pytest.approx(1.1, abs=1e-3)


def test_no_wavelengths_lists_fitting_profiles(tmp_path):
    path = make_tif(tmp_path / "bare.tif", spectra(bands=224, h=4, w=4))
    with pytest.raises(EngineError, match="no wavelength metadata.*aviris_classic"):
        profile_for_raster(path)
    prof = profile_for_raster(path, profile="aviris_classic")
    assert prof.sensor == "avc" and prof.n_bands == 224


def test_band_count_mismatch_names_both(tmp_path):
    path = make_tif(tmp_path / "x.tif", spectra(bands=20))
    with pytest.raises(EngineError, match="20 bands.*425"):
        profile_for_raster(path, profile="aviris_ng")


def test_geotiff_band_metadata_in_micrometres(tmp_path):
    path = make_tif(tmp_path / "um.tif", spectra(), wavelengths=[w / 1000 for w in WL20], units="micrometers")
    prof = profile_for_raster(path)
    assert prof.wavelength_nm[0] == pytest.approx(420.0) and prof.sensor == "others" and prof.level == "L2"


def test_band_numbers_are_not_wavelengths(tmp_path):
    path = make_tif(tmp_path / "index.tif", spectra(), wavelengths=list(range(1, 21)), units="Index")
    with pytest.raises(EngineError, match=r"index\.tif has no wavelength metadata \(20 bands\); choose a sensor"):
        profile_for_raster(path)


def test_gdal_band_scale_and_integer_reflectance_of_another_sensor(tmp_path):
    cube = np.round(spectra() * 10000).astype(np.int16)
    scaled = make_tif(tmp_path / "scaled.tif", cube, wavelengths=WL20)
    ds = gdal.Open(str(scaled), gdal.GA_Update)
    for b in range(1, 21):
        ds.GetRasterBand(b).SetScale(1e-4)
    ds = None
    prof = profile_for_raster(scaled)
    assert prof.scale == pytest.approx(1e-4) and prof.level == "L2"
    with pytest.warns(SpecAwareWarning, match=r"plain\.tif: integer values up to \d+ are read as L1 .* give the "
                                              r"level L2"):
        prof = profile_for_raster(make_tif(tmp_path / "plain.tif", cube, wavelengths=WL20))
    assert prof.level == "L1" and prof.scale == 1.0
    assert profile_for_raster(tmp_path / "plain.tif", level="L2").scale == pytest.approx(1e-4)
    gains = make_tif(tmp_path / "gains.tif", cube, wavelengths=WL20)
    ds = gdal.Open(str(gains), gdal.GA_Update)
    for b in range(1, 21):  # per-band gains (VNIR and SWIR detectors): not one scale, so not applied
        ds.GetRasterBand(b).SetScale(1e-4 if b <= 10 else 2e-4)
    ds = None
    with pytest.warns(SpecAwareWarning, match=r"gains\.tif: per-band gains \(2 different\)"):
        assert profile_for_raster(gains, level="L2").scale != pytest.approx(2e-4)


def test_a_bad_band_list_of_the_wrong_length_is_ignored_with_a_warning(tmp_path):
    path = make_tif(tmp_path / "bbl.img", spectra(), fmt="ENVI")
    hdr = path.with_suffix(".hdr")
    hdr.write_text(hdr.read_text() + "wavelength units = Nanometers\nwavelength = {" + ", ".join(map(str, WL20))
                   + "}\nbbl = {" + ", ".join(["1"] * 19) + "}\n")
    with pytest.warns(SpecAwareWarning, match=r"bbl\.img: its bad-band list \(bbl\) has 19 entries for 20 bands"):
        prof = profile_for_raster(path)
    assert prof.bad_bands == []


def test_a_raster_in_degrees_has_its_pixel_measured_in_metres(tmp_path):
    from engine.io.datasets import ground_pixel
    from engine.service.jobs import call
    from scenes import labelled_raster
    utm, _ = labelled_raster(tmp_path / "utm.tif")  # 2 m pixels in UTM
    degrees = tmp_path / "degrees.tif"
    gdal.Warp(str(degrees), str(utm), dstSRS="EPSG:4326")  # as EMIT and some mosaics ship
    row, area = ground_pixel(gdal.Open(str(degrees)))
    assert row == pytest.approx(2.0, rel=0.1) and area == pytest.approx(4.0, rel=0.15)
    assert profile_for_raster(degrees).gsd == pytest.approx(2.0, rel=0.1)
    assert ground_pixel(gdal.Open(str(utm))) == (2.0, 4.0)
    mistagged = gdal.Translate(str(tmp_path / "mistagged.tif"), str(utm), outputSRS="EPSG:4326")  # metres as degrees
    assert ground_pixel(mistagged) == (2.0, 4.0)  # opens as before, the grid as it is
    mistagged = None
    r = call("classify", raster=str(degrees), out=str(tmp_path / "map"), clusters=3, preset="tiny")
    assert r["pixel_area_m2"] == pytest.approx(4.0, rel=0.15)


def test_bands_with_no_data_anywhere_are_dropped_with_a_warning(tmp_path):
    cube = spectra(h=128, w=128)
    cube[[3, 10]] = np.nan  # bands 4 and 11: no value anywhere
    cube[1, 32:96, 32:96] = np.nan  # band 2: no value in the middle only
    cube[:, :20, :20] = np.nan  # a no-data corner (every band) says nothing about any band
    with pytest.warns(SpecAwareWarning, match=r"holes\.tif: band\(s\) 4, 11 hold no valid value"):
        prof = profile_for_raster(make_tif(tmp_path / "holes.tif", cube, wavelengths=WL20))
    assert prof.bad_bands == [3, 10] and len(prof.good_bands()) == 18


def test_custom_profile_saved_and_listed(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    prof = SensorProfile(name="Lab camera", sensor="others", level="L2", wavelength_nm=WL20, fwhm_nm=[10.0] * 20)
    path = save_custom_profile("lab_camera", prof)
    assert path.is_file() and str(tmp_path / "cfg") in str(path)
    profiles = all_profiles()
    assert "lab_camera" in profiles and "aviris_ng" in profiles
    with pytest.raises(EngineError, match="level"):
        SensorProfile.from_dict({**prof.to_dict(), "level": "L3"})


# --- reading ------------------------------------------------------------------------------------------------------

def test_envi_interleaves_read_the_same(tmp_path):
    data = spectra(bands=20, h=9, w=7)
    reads = []
    for il in ("BSQ", "BIL", "BIP"):
        path = make_tif(tmp_path / f"x_{il}.img", data, wavelengths=WL20, fmt="ENVI", options=[f"INTERLEAVE={il}"])
        src = RasterSource(path, profile_for_raster(path))
        reads.append(src.read(2, 3, 4, 5)[0])
    gdal.Translate(str(tmp_path / "x.vrt"), str(tmp_path / "x_BSQ.img"), format="VRT")
    src = RasterSource(tmp_path / "x.vrt", profile_for_raster(tmp_path / "x_BSQ.img"))
    reads.append(src.read(2, 3, 4, 5)[0])
    for r in reads[1:]:
        np.testing.assert_array_equal(r, reads[0])
    np.testing.assert_array_equal(reads[0], data[:, 3:8, 2:6])


def test_nodata_values_are_masked(tmp_path):
    data = spectra()
    data[:, 0, 0] = np.nan
    data[:, 1, 1] = -9999
    data[3, 2, 2] = np.inf
    data[:, 3, 3] = -0.005  # constant fill spectrum
    data[:, 4, 4] = 7.0  # declared no-data value
    path = make_tif(tmp_path / "nd.tif", data, wavelengths=WL20, nodata=7.0)
    src = RasterSource(path, profile_for_raster(path))
    values, valid = src.read(0, 0, 12, 12)
    assert not valid[0, 0] and not valid[1, 1] and not valid[2, 2] and not valid[3, 3] and not valid[4, 4]
    assert valid.sum() == 144 - 5 and np.isfinite(values).all()


def test_complex_and_zero_band_rasters_are_errors(tmp_path):
    path = make_tif(tmp_path / "c.tif", (spectra(bands=2) + 1j).astype(np.complex64))
    with pytest.raises(EngineError, match="complex"):
        open_raster(path)
    vrt = tmp_path / "empty.vrt"
    gdal.GetDriverByName("VRT").Create(str(vrt), 5, 5, 0).FlushCache()
    with pytest.raises(EngineError, match="empty.vrt.*bands"):
        open_raster(vrt)


def test_truncated_file_names_the_file(tmp_path):
    path = make_tif(tmp_path / "t.img", spectra(bands=20, h=30, w=30), wavelengths=WL20, fmt="ENVI")
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 3])
    with pytest.raises(EngineError, match="t.img.*(truncated|too small)"):
        RasterSource(path, profile_for_raster(path)).read(0, 20, 30, 10)


# --- tiling -------------------------------------------------------------------------------------------------------

def test_tile_grid_covers_raster_and_handles_tiny():
    g = TileGrid(100, 37, 32, 8)
    assert g.columns == [0, 24, 48, 68] and g.rows == [0, 5]
    assert TileGrid(1, 1, 16).columns == [0] and TileGrid(7, 13, 16).rows == [0]
    padded = TileGrid(7, 13, 16).pad(np.ones((3, 13, 7), np.float32))
    assert padded.shape == (3, 16, 16)
    assert TileGrid(1, 1, 16).pad(np.full((2, 1, 1), 5.0)).shape == (2, 16, 16)
    w = blend_window(32, 8)
    assert w.min() > 0 and w[16, 16] == 1.0


def test_blending_has_no_seams(tmp_path):
    """A per-pixel model gives the same map whatever the tiling, so any seam would show as a difference."""
    data = spectra(bands=20, h=45, w=53)
    path = make_tif(tmp_path / "s.tif", data, wavelengths=WL20)
    src = RasterSource(path, profile_for_raster(path))
    maps = []
    for tile, overlap in ((64, 0), (16, 4), (16, 8)):
        rows = []
        stream_predictions(src, standin_model(), 3, lambda y, s, v: rows.append(s), tile, overlap, batch_size=3)
        maps.append(np.concatenate(rows, axis=1))
    assert maps[0].shape == (3, 45, 53)
    np.testing.assert_allclose(maps[1], maps[0], atol=1e-6)
    np.testing.assert_allclose(maps[2], maps[0], atol=1e-6)


# --- writing ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("h,w", [(1, 1), (13, 7), (40, 33)])
def test_classify_outputs_keep_georeferencing(tmp_path, h, w):
    gt = (500000.0, 2.0, 0.5, 4100000.0, 0.7, -3.0)  # rotated and non-square
    data = spectra(bands=20, h=h, w=w)
    data[:, 0, 0] = -9999
    path = make_tif(tmp_path / "in.tif", data, gt=gt, wavelengths=WL20)
    src = RasterSource(path, profile_for_raster(path))
    res = write_classes(src, standin_model(), ["a", "b", "c"], [(255, 0, 0), (0, 255, 0), (0, 0, 255)],
                               tmp_path / "out", tile=16, overlap=4)
    cls = gdal.Open(str(tmp_path / "out" / "classes.tif"))
    conf = gdal.Open(str(tmp_path / "out" / "confidence.tif"))
    assert cls.GetGeoTransform() == pytest.approx(gt) and conf.GetGeoTransform() == pytest.approx(gt)
    assert cls.GetProjection() == gdal.Open(str(path)).GetProjection()
    band = cls.GetRasterBand(1)
    assert band.GetNoDataValue() == 0 and band.GetRasterCategoryNames()[1:4] == ["a", "b", "c"]
    assert band.GetRasterColorTable().GetColorEntry(2) == (0, 255, 0, 255)
    arr = band.ReadAsArray()
    assert arr[0, 0] == 0 and (arr.size == 1 or arr[arr > 0].min() >= 1)
    assert np.isnan(conf.ReadAsArray()[0, 0])
    assert res["nodata_pixels"] == 1
    # Category names live in GDAL's .aux.xml beside the GeoTIFF; no temp file is left behind.
    assert sorted(os.listdir(tmp_path / "out")) == ["classes.tif", "classes.tif.aux.xml", "confidence.tif"]


def test_all_nodata_real_chip_gives_all_nodata_and_warning(tmp_path):
    path = need_shared(CHIPS / "ang20140912t192359_corr_v1c_img_400-410_10-20.img")
    src = RasterSource(path, profile_for_raster(path))
    res = write_classes(src, standin_model(), ["a", "b", "c"], [(1, 1, 1)] * 3, tmp_path / "o", tile=16)
    assert (gdal.Open(str(tmp_path / "o" / "classes.tif")).ReadAsArray() == 0).all()
    assert any("no valid pixels" in w for w in res["warnings"])


def test_unwritable_output_fails_before_compute(tmp_path):
    path = make_tif(tmp_path / "in.tif", spectra(), wavelengths=WL20)
    src = RasterSource(path, profile_for_raster(path))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    calls = []
    with pytest.raises(EngineError, match="cannot write to the output folder"):
        write_classes(src, lambda b: calls.append(1), ["a"], [(1, 1, 1)], blocker / "sub", tile=16)
    assert not calls


def test_cancel_leaves_no_output(tmp_path):
    path = make_tif(tmp_path / "in.tif", spectra(h=64, w=64), wavelengths=WL20)
    src = RasterSource(path, profile_for_raster(path))
    seen = []
    with pytest.raises(Cancelled):
        write_classes(src, standin_model(), ["a", "b", "c"], [(1, 1, 1)] * 3, tmp_path / "o", tile=16,
                             batch_size=1, progress=lambda f, m: seen.append(f), cancel=lambda: len(seen) >= 2)
    assert not (tmp_path / "o").exists(), "a cancelled run removes the output folder it made, and all in it"


def test_netcdf_band_first_product_gives_wavelengths_in_nm(tmp_path):
    """A NetCDF cube [wavelength, y, x] with a µm wavelength coordinate, as GDAL exposes it per band."""
    path = str(tmp_path / "cube.nc")
    ds = gdal.GetDriverByName("netCDF").CreateMultiDimensional(path)
    root = ds.GetRootGroup()
    dims = [root.CreateDimension(n, None, None, size) for n, size in (("wavelength", 20), ("y", 9), ("x", 11))]
    f32 = gdal.ExtendedDataType.Create(gdal.GDT_Float32)
    wl = root.CreateMDArray("wavelength", [dims[0]], f32)
    wl.Write(np.asarray(WL20, np.float32) / 1000)
    wl.CreateAttribute("units", [], gdal.ExtendedDataType.CreateString()).WriteString("micrometers")
    root.CreateMDArray("reflectance", dims, f32).Write(spectra(20, 9, 11))
    ds = None
    with pytest.warns(SpecAwareWarning, match="no FWHM"):
        prof = profile_for_raster(path)
    np.testing.assert_allclose(prof.wavelength_nm, WL20, rtol=1e-5)
    assert prof.level == "L2" and prof.sensor == "others"
    values, valid = RasterSource(path, prof).read(2, 3, 5, 4)
    whole = gdal.Open(path).ReadAsArray()  # GDAL's row order (it flips a y axis without coordinates)
    np.testing.assert_allclose(values, whole[:, 3:7, 2:7], rtol=1e-6)
    assert valid.all() and sorted(whole.ravel()) == pytest.approx(sorted(spectra(20, 9, 11).ravel()))
