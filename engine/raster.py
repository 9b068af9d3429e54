"""Raster I/O through GDAL: windows in (good bands, scaled, with a no-data mask), tiled GeoTIFF out, atomically."""
from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import numpy as np
from osgeo import gdal

from .errors import EngineError
from .sensors import NODATA_DEFAULT, SensorProfile

gdal.UseExceptions()
if "GDAL_CACHEMAX" not in os.environ:  # windows are read once; a large block cache only grows RSS with file size
    gdal.SetCacheMax(128 * 2**20)
COMPLEX_TYPES = {gdal.GDT_CInt16, gdal.GDT_CInt32, gdal.GDT_CFloat32, gdal.GDT_CFloat64}


def open_raster(path: str | Path):
    """A GDAL dataset, or an error naming the file and saying why it cannot be used."""
    path = str(path)
    if not path.startswith(("NETCDF:", "HDF5:", "/vsi")) and not Path(path).exists():
        raise EngineError(f"raster {path} does not exist")
    try:
        ds = gdal.Open(path, gdal.GA_ReadOnly)
    except RuntimeError as e:
        raise EngineError(f"GDAL cannot read {path}: {e}") from e
    if ds is None:
        raise EngineError(f"GDAL cannot read {path}")
    if ds.RasterCount == 0:
        subs = ds.GetSubDatasets()
        hint = f"; open one of its subdatasets, e.g. {subs[0][0]}" if subs else ""
        raise EngineError(f"{path} has no raster bands{hint}")
    dtype = ds.GetRasterBand(1).DataType
    if dtype in COMPLEX_TYPES:
        raise EngineError(f"{path} holds complex numbers ({gdal.GetDataTypeName(dtype)}); SpecAware needs real-valued "
                          "radiance or reflectance")
    return ds


class RasterSource:
    """Reads windows of the profile's good bands as float32 [C, h, w] plus a validity mask [h, w]."""

    def __init__(self, path: str | Path, profile: SensorProfile, ds=None):
        self.path = str(path)
        self.ds = ds or open_raster(path)
        self.profile = profile
        self.bands = profile.good_bands()
        if not self.bands:
            raise EngineError(f"{path}: no usable bands remain after dropping {len(profile.dropped())} "
                              "(out of range or water vapour); check the sensor profile")
        self.width, self.height = self.ds.RasterXSize, self.ds.RasterYSize
        self.nodata = {NODATA_DEFAULT} | ({profile.nodata} if profile.nodata is not None else set())

    @classmethod
    def open(cls, path: str | Path, profile=None, sensor: str | None = None, level: str | None = None, ds=None):
        """The raster with its detected (or chosen) sensor profile; warns once about bands it cannot use."""
        from .sensors import profile_for_raster, warn_dropped
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
            raise EngineError(f"cannot read window x={x} y={y} {w}×{h} of {self.path}; the file may be truncated "
                              f"or damaged ({e})") from e
        if raw is None:
            raise EngineError(f"cannot read window x={x} y={y} {w}×{h} of {self.path}; the file may be truncated")
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


def check_writable(directory: str | Path) -> Path:
    """Create the output folder and prove a file can be written there, before any compute starts."""
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d, prefix=".specaware-write-test-"):
            pass
    except OSError as e:
        raise EngineError(f"cannot write to the output folder {d} ({e.strerror}); choose another folder") from e
    return d


class GeoTiffWriter:
    """A tiled, compressed GeoTIFF written window by window into a temp file and renamed on `commit`."""

    def __init__(self, path: str | Path, width: int, height: int, bands: int, dtype: int, geotransform, projection,
                 nodata=None, color_table: dict[int, tuple] | None = None, category_names: list[str] | None = None,
                 band_names: list[str] | None = None):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:8]}.tmp.tif")
        opts = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"]
        if dtype in (gdal.GDT_Float32, gdal.GDT_Float64):
            opts.append("PREDICTOR=3")
        self.ds = gdal.GetDriverByName("GTiff").Create(str(self.tmp), width, height, bands, dtype, opts)
        if geotransform is not None:
            self.ds.SetGeoTransform(geotransform)
        if projection:
            self.ds.SetProjection(projection)
        for b in range(1, bands + 1):
            band = self.ds.GetRasterBand(b)
            if nodata is not None:
                band.SetNoDataValue(float(nodata))
            if band_names:
                band.SetDescription(band_names[b - 1])
        if color_table:
            ct = gdal.ColorTable()
            for value, rgba in color_table.items():
                ct.SetColorEntry(int(value), tuple(int(c) for c in (list(rgba) + [255])[:4]))
            self.ds.GetRasterBand(1).SetRasterColorTable(ct)
            self.ds.GetRasterBand(1).SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
        if category_names:
            self.ds.GetRasterBand(1).SetRasterCategoryNames(category_names)

    def write(self, array: np.ndarray, x: int, y: int) -> None:
        """Write [h, w] (one band) or [bands, h, w] at column x, row y."""
        if array.ndim == 2:
            array = array[None]
        for b in range(array.shape[0]):
            self.ds.GetRasterBand(b + 1).WriteArray(array[b], x, y)

    def commit(self) -> Path:
        self.ds.FlushCache()
        self.ds = None
        os.replace(self.tmp, self.path)
        aux = self.tmp.with_name(self.tmp.name + ".aux.xml")
        if aux.exists():
            os.replace(aux, self.path.with_name(self.path.name + ".aux.xml"))
        return self.path

    def abort(self) -> None:
        self.ds = None
        for p in (self.tmp, self.tmp.with_name(self.tmp.name + ".aux.xml")):
            if p.exists():
                p.unlink()


def georef(ds) -> tuple[tuple, str]:
    """Geotransform (rotation kept) and projection WKT of a dataset, to copy onto outputs."""
    return ds.GetGeoTransform(can_return_null=True), ds.GetProjection()

