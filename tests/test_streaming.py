"""The streaming driver on real GDAL files: whole-line strips in each ENVI interleave, column groups for wide
rasters, the no-data rules on raw values, errors and cancel from the reader thread."""
import threading

import numpy as np
import pytest
from osgeo import gdal

from engine.core.errors import Cancelled, EngineError
from engine.io import stream
from engine.io.pairing import PairSource
from engine.io.raster import RasterSource
from engine.io.sensors import profile_for_raster
from engine.io.stream import column_groups, stream_predictions
from engine.io.strips import Strip, invalid_pixels
from engine.io.tiling import TileGrid
from standin import standin_model

WL = list(np.linspace(420, 2400, 12))


def make_envi(path, data: np.ndarray, interleave: str = "BIL"):
    """A real ENVI file [bands, h, w] with wavelengths in its header, written by GDAL's ENVI driver."""
    bands, h, w = data.shape
    dtype = {np.dtype("int16"): gdal.GDT_Int16, np.dtype("float32"): gdal.GDT_Float32}[data.dtype]
    ds = gdal.GetDriverByName("ENVI").Create(str(path), w, h, bands, dtype, [f"INTERLEAVE={interleave}"])
    ds.SetGeoTransform((500000, 5, 0, 4100000, 0, -5))
    for b in range(bands):
        ds.GetRasterBand(b + 1).WriteArray(data[b])
    ds.SetMetadataItem("wavelength", "{" + ", ".join(f"{v:.2f}" for v in WL[:bands]) + "}", "ENVI")
    ds.SetMetadataItem("wavelength_units", "Nanometers", "ENVI")
    ds = None
    return path


def reflectance_int16(bands=12, h=70, w=90, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((bands, h, w)) * 4000 + 300).astype(np.int16)


def streamed(src, tile=32, overlap=8, batch_size=3, **kw):
    rows = []
    stats = stream_predictions(src, standin_model(), 3, lambda y, s, v: rows.append((y, s, v)), tile, overlap,
                               batch_size=batch_size, **kw)
    assert [y for y, _, _ in rows] == sorted(y for y, _, _ in rows)
    return np.concatenate([s for _, s, _ in rows], axis=1), np.concatenate([v for _, _, v in rows]), stats


def test_invalid_pixels_match_the_rules_band_by_band():
    """Minimum/maximum shortcuts give the same mask as comparing every band, including a no-data value that
    lies strictly inside a pixel's range and one at either end."""
    raw = reflectance_int16(bands=6, h=5, w=7)
    raw[3, 0, 0] = -9999  # below every other band: the minimum
    raw[:, 0, 1] = np.arange(1, 7) * 300  # no no-data value present, though 0 < 32000 and -9999 < 300
    raw[4, 0, 2], raw[:, 0, 2] = 0, np.r_[100, -50, 300, 20, 0, 900]  # 0 inside the range, present once
    raw[:, 1, 1] = 17  # flat spectrum
    raw[5, 2, 2] = 32000  # the maximum equals a declared no-data value
    nodata = {-9999.0, 0.0, 32000.0, 1e9}  # 1e9 cannot occur in int16
    expect = np.zeros((5, 7), bool)
    for v in (-9999, 0, 32000):
        expect |= (raw == v).any(axis=0)
    expect |= (raw == raw[:1]).all(axis=0)
    got = invalid_pixels([raw], nodata)
    np.testing.assert_array_equal(got, expect)
    np.testing.assert_array_equal(invalid_pixels([raw[:2], raw[2:5], raw[5:]], nodata), expect)  # band runs
    assert got[0, 0] and got[0, 2] and got[1, 1] and got[2, 2] and not got[0, 1]

    f = raw.astype(np.float32) / 1e4
    f[1, 3, 3], f[4, 3, 4], f[0, 4, 0] = np.nan, np.inf, -np.inf
    f[2, 4, 4] = 0.25  # a float no-data value inside the range
    got = invalid_pixels([f], {0.25})
    assert got[3, 3] and got[3, 4] and got[4, 0] and got[4, 4] and got[1, 1]
    assert invalid_pixels([np.zeros((1, 2, 2), np.int16)], set()).all()  # one band: 0 is no data


def test_strip_fill_scales_into_any_view_and_zeroes_nodata():
    raw = reflectance_int16(bands=4, h=6, w=10)
    raw[:, 2, 3] = -9999
    strip = Strip([raw[:1], raw[1:]], {-9999.0}, 1e-4)
    out = np.full((2, 4, 8, 8), 7.0, np.float32)
    strip.fill(out[1, :, :6, :5], 2, 5)
    np.testing.assert_array_equal(out[1, :, :6, :5][:, 2, 1], 0)
    want = raw[:, :, 2:7].astype(np.float32) * np.float32(1e-4)
    want[:, 2, 1] = 0
    np.testing.assert_array_equal(out[1, :, :6, :5], want)
    assert (out[1, :, 6:] == 7).all() and (out[0] == 7).all(), "nothing outside the view is written"


@pytest.mark.parametrize("interleave", ["BIL", "BSQ", "BIP"])
def test_whole_line_strips_give_the_per_window_result(tmp_path, interleave):
    """Streaming an ENVI file read as whole lines gives each pixel exactly what a window read gives."""
    data = reflectance_int16()
    data[:, 10:14, 20:25] = -9999
    path = make_envi(tmp_path / f"s_{interleave}.img", data, interleave)
    src = RasterSource(path, profile_for_raster(path))
    assert src.lines is not None and src.lines.interleave == interleave.lower(), "read straight from the file"
    scores, valid, stats = streamed(src)
    values, want_valid = src.read(0, 0, 90, 70)
    want = standin_model()(values[None])[0]
    np.testing.assert_array_equal(valid, want_valid)
    np.testing.assert_allclose(scores[:, want_valid], want[:, want_valid], atol=1e-6)
    assert stats.tiles == len(TileGrid(90, 70, 32, 8)) and stats.valid_pixels > 0


def test_wide_rasters_are_read_in_groups_of_tiles(tmp_path, monkeypatch):
    data = reflectance_int16(w=150)
    path = make_envi(tmp_path / "wide.img", data)
    src = RasterSource(path, profile_for_raster(path))
    whole, _, _ = streamed(src)
    grid = TileGrid(150, 70, 32, 8)
    monkeypatch.setattr(stream, "STRIP_BYTES", 2 * 32 * 32 * 4 * 12)  # two tiles of 12 float32 bands
    groups = column_groups(grid, 4 * 12)
    assert [len(g) for g in groups] == [2, 2, 2] and sum(groups, []) == grid.columns
    grouped, _, _ = streamed(src)
    np.testing.assert_allclose(grouped, whole, atol=1e-6)


def test_pair_source_strips_stack_both_dates(tmp_path):
    a, b = reflectance_int16(seed=1), reflectance_int16(seed=2)
    b[:, 5, 5] = -9999
    pa, pb = make_envi(tmp_path / "a.img", a), make_envi(tmp_path / "b.img", b)
    pair = PairSource(RasterSource(pa, profile_for_raster(pa)), RasterSource(pb, profile_for_raster(pb)))
    strip = pair.read_strip(0, 3, 90, 40)
    out = np.empty((strip.bands, 40, 90), np.float32)
    strip.fill(out, 0, 90)
    values, valid = pair.read(0, 3, 90, 40)
    np.testing.assert_array_equal(out, values)
    np.testing.assert_array_equal(strip.valid, valid)
    assert not valid[2, 5]
    again = pair.read_strip(0, 30, 90, 40, reuse=strip)
    assert again.parts[0].buffer is strip.parts[0].buffer, "the next strip reads into the same buffer"


def test_reader_errors_reach_the_caller_and_the_thread_ends(tmp_path):
    data = reflectance_int16(h=200)
    path = make_envi(tmp_path / "cut.img", data)
    src = RasterSource(path, profile_for_raster(path))
    with open(path, "r+b") as f:  # truncated after opening: the reads far down fail
        f.truncate(data.nbytes // 3)
    before = threading.active_count()
    with pytest.raises(EngineError, match="cut.img"):
        streamed(src)
    assert threading.active_count() == before


def test_cancel_stops_the_reader(tmp_path):
    path = make_envi(tmp_path / "c.img", reflectance_int16(h=300))
    src = RasterSource(path, profile_for_raster(path))
    before, seen = threading.active_count(), []
    with pytest.raises(Cancelled):
        streamed(src, batch_size=1, progress=lambda f, m: seen.append(f), cancel=lambda: len(seen) >= 2)
    assert threading.active_count() == before and len(seen) == 2
