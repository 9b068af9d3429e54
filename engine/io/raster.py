"""Raster windows in through GDAL: the sensor profile's good bands, scaled, with a no-data mask."""
from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path

import numpy as np
from osgeo import gdal, gdal_array

from ..core.errors import EngineError, shorten
from .datasets import open_raster
from .sensors import NODATA_DEFAULT, SensorProfile, profile_for_raster, warn_dropped
from .strips import INTERLEAVES, LineReader, Strip


def line_reader(ds) -> LineReader | None:
    """A `LineReader` for an uncompressed ENVI dataset, after checking its first and last lines against GDAL's
    own reading of them; None for anything else (GDAL then reads every window)."""
    if ds.GetDriver().ShortName != "ENVI" or ds.RasterCount == 0:
        return None
    meta = ds.GetMetadata("ENVI") or {}
    interleave = str(meta.get("interleave", "")).strip().lower()
    if interleave not in INTERLEAVES or str(meta.get("file_compression", "0")).strip() not in ("0", ""):
        return None
    try:
        dtype = np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(ds.GetRasterBand(1).DataType))
        dtype = dtype.newbyteorder(">" if str(meta.get("byte_order", "0")).strip() == "1" else "<")
        offset = int(str(meta.get("header_offset", "0")).strip() or 0)
    except (TypeError, ValueError):
        return None
    W, H, C = ds.RasterXSize, ds.RasterYSize, ds.RasterCount
    reader = LineReader(ds.GetFileList()[0], W, H, C, dtype, interleave, offset)
    try:
        same = all(np.array_equal(reader.strip(y, 1, [b], set(), 1.0).parts[0].ravel(),
                                  ds.GetRasterBand(b + 1).ReadAsArray(0, y, W, 1).ravel())
                   for y in {0, H - 1} for b in {0, C // 2, C - 1})
    except (EngineError, RuntimeError):
        same = False
    if not same:
        reader.close()
        return None
    return reader


def detected_profile(path: str | Path, profile=None, sensor: str | None = None, level: str | None = None,
                     ds=None) -> SensorProfile:
    """The raster's detected (or chosen) sensor profile; warns once about bands it cannot use."""
    prof = profile_for_raster(path, ds or open_raster(path), profile, sensor, level)
    warn_dropped(prof, path)
    return prof


class RasterSource:
    """Reads windows of the profile's good bands as float32 [C, h, w] plus a validity mask [h, w]."""

    def __init__(self, path: str | Path, profile: SensorProfile, ds=None):
        self.path = str(path)
        self.ds = ds or open_raster(path)
        self.profile = profile
        self.bands = profile.good_bands()
        if not self.bands:
            reasons = sorted(set(profile.dropped().values()))
            raise EngineError(f"{shorten(path)}: no usable bands remain after dropping all {profile.n_bands} "
                              f"({'; '.join(reasons[:3])}); check the header's bad-band list and wavelengths, or "
                              "choose a sensor profile")
        self.width, self.height = self.ds.RasterXSize, self.ds.RasterYSize
        self.nodata = {NODATA_DEFAULT} | ({profile.nodata} if profile.nodata is not None else set())
        self.lines = line_reader(self.ds)  # checked while the file is as it was opened

    @classmethod
    def open(cls, path: str | Path, profile=None, sensor: str | None = None, level: str | None = None, ds=None):
        """The raster with its detected (or chosen) sensor profile; warns once about bands it cannot use."""
        ds = ds or open_raster(path)
        return cls(path, detected_profile(path, profile, sensor, level, ds), ds)

    @property
    def wavelength(self) -> np.ndarray:
        return np.asarray(self.profile.wavelength_nm, dtype=np.float32)[self.bands]

    @property
    def fwhm(self) -> np.ndarray:
        return np.asarray(self.profile.fwhm_nm, dtype=np.float32)[self.bands]

    def read_strip(self, x: int, y: int, w: int, h: int, reuse: Strip | None = None,
                   pool: Executor | None = None) -> Strip:
        """The window as a `Strip` (raw values and validity); `reuse`'s buffer is read into when it fits, and
        `pool`'s workers find the no-data mask when given.

        Whole lines of an uncompressed ENVI file come straight from the file (`LineReader`); other windows
        and formats through GDAL, which lets its worker threads decode the blocks of compressed files.
        """
        if x == 0 and w == self.width and self.lines is not None:
            return self.lines.strip(y, h, self.bands, self.nodata, self.profile.scale, reuse, pool)
        shape = (len(self.bands), h, w)
        out = reuse.buffer if reuse is not None and reuse.buffer.shape == shape else None
        gdal.SetThreadLocalConfigOption("GDAL_NUM_THREADS", "ALL_CPUS")  # this thread only
        try:
            raw = self.ds.ReadAsArray(x, y, w, h, band_list=[b + 1 for b in self.bands], buf_obj=out)
        except RuntimeError as e:
            raise EngineError(f"cannot read window x={x} y={y} {w}×{h} of {shorten(self.path)}; the file may be "
                              f"truncated or damaged ({shorten(e, 200)})") from e
        finally:
            gdal.SetThreadLocalConfigOption("GDAL_NUM_THREADS", None)
        if raw is None:
            raise EngineError(f"cannot read window x={x} y={y} {w}×{h} of {shorten(self.path)}; the file may be "
                              "truncated")
        return Strip([raw.reshape(shape)], self.nodata, self.profile.scale, pool=pool)

    def read(self, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        """(values, valid) for the window: float32 reflectance [C, h, w], no-data pixels set to 0, and [h, w]."""
        return self.read_strip(x, y, w, h).values()
