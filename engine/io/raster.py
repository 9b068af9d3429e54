"""Raster windows in through GDAL: the sensor profile's good bands, scaled, with a no-data mask."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import EngineError, shorten
from .datasets import open_raster
from .sensors import NODATA_DEFAULT, SensorProfile, profile_for_raster, warn_dropped


class RasterSource:
    """Reads windows of the profile's good bands as float32 [C, h, w] plus a validity mask [h, w]."""

    def __init__(self, path: str | Path, profile: SensorProfile, ds=None):
        self.path = str(path)
        self.ds = ds or open_raster(path)
        self.profile = profile
        self.bands = profile.good_bands()
        if not self.bands:
            raise EngineError(f"{shorten(path)}: no usable bands remain after dropping {len(profile.dropped())} "
                              "(out of range or water vapour); check the sensor profile")
        self.width, self.height = self.ds.RasterXSize, self.ds.RasterYSize
        self.nodata = {NODATA_DEFAULT} | ({profile.nodata} if profile.nodata is not None else set())

    @classmethod
    def open(cls, path: str | Path, profile=None, sensor: str | None = None, level: str | None = None, ds=None):
        """The raster with its detected (or chosen) sensor profile; warns once about bands it cannot use."""
        ds = ds or open_raster(path)
        prof = profile_for_raster(path, ds, profile, sensor, level)
        warn_dropped(prof, path)
        return cls(path, prof, ds)

    @property
    def wavelength(self) -> np.ndarray:
        return np.asarray(self.profile.wavelength_nm, dtype=np.float32)[self.bands]

    @property
    def fwhm(self) -> np.ndarray:
        return np.asarray(self.profile.fwhm_nm, dtype=np.float32)[self.bands]

    def read(self, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        """(values, valid) for the window; invalid pixels are set to 0 in values.

        Masks are computed on the file's own data type (cheaper than on float32); the conversion to float32
        and the scaling then happen once, in place.
        """
        try:
            raw = self.ds.ReadAsArray(x, y, w, h, band_list=[b + 1 for b in self.bands])
        except RuntimeError as e:
            raise EngineError(f"cannot read window x={x} y={y} {w}×{h} of {shorten(self.path)}; the file may be "
                              f"truncated or damaged ({shorten(e, 200)})") from e
        if raw is None:
            raise EngineError(f"cannot read window x={x} y={y} {w}×{h} of {shorten(self.path)}; the file may be "
                              "truncated")
        raw = raw.reshape(len(self.bands), h, w)
        if raw.dtype.kind == "f":
            invalid = ~np.isfinite(raw).all(axis=0)
            nodata = self.nodata
        else:  # only no-data values the integer type can hold can occur
            info = np.iinfo(raw.dtype)
            invalid = np.zeros((h, w), bool)
            nodata = {v for v in self.nodata if float(v).is_integer() and info.min <= v <= info.max}
        for v in nodata:
            invalid |= (raw == raw.dtype.type(v)).any(axis=0)
        # A constant spectrum (fill values such as -0.005 or 0 in every band) is no data either; four bands
        # spread over the spectrum are enough to tell, as no real spectrum is flat to the last bit.
        C = raw.shape[0]
        if C > 1:
            probe = sorted({0, C // 3, 2 * C // 3, C - 1})
            invalid |= np.logical_and.reduce([raw[i] == raw[probe[0]] for i in probe[1:]])
        else:
            invalid |= raw[0] == 0
        values = raw.astype(np.float32, copy=False)
        if self.profile.scale != 1.0:
            values *= np.float32(self.profile.scale)
        if invalid.any():
            values[:, invalid] = 0
        return values, ~invalid
