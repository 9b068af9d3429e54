"""Sensor profiles: which bands a raster has (wavelength, FWHM), which to drop, its sensor, level and GSD.

A profile comes from the raster's own metadata (ENVI domain, per-band items as ENVI and EnMAP-Box write them
into GeoTIFF, NetCDF dimension values), from a built-in (AVIRIS-Classic, AVIRIS-NG, AVIRIS-3), or from a
custom JSON file saved under the user config dir.
"""
from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..core.errors import EngineError, SpecAwareWarning, shorten
from ..core.paths import config_dir
from ..core.vocabulary import LEVEL_MAX, LEVELS, RESOURCES, SENSORS, WAVELENGTH_MAX_NM, WAVELENGTH_MIN_NM
from .datasets import open_raster

BUILTIN_DIR = RESOURCES / "sensors"
SENSOR_FROM_NAME = [  # (pattern anywhere in the file name, sensor key)
    (re.compile(r"ang\d{8}t\d{6}", re.I), "avng"),
    (re.compile(r"^ang", re.I), "avng"),
    (re.compile(r"f\d{6}t\d{2}p\d{2}r\d{2}", re.I), "avc"),
    (re.compile(r"AV3\d{8}t\d{6}|^AV3", re.I), "av3"),
]
LEVEL_FROM_NAME = [(re.compile(r"rdn|radiance", re.I), "L1"), (re.compile(r"rfl|corr|refl", re.I), "L2")]
NODATA_DEFAULT = -9999.0


@dataclass
class SensorProfile:
    """Everything the engine needs to turn a raster's bands into model input."""

    name: str
    sensor: str
    level: str | None
    wavelength_nm: list[float]
    fwhm_nm: list[float]
    bad_bands: list[int] = field(default_factory=list)
    bad_windows_nm: list[list[float]] = field(default_factory=list)
    gsd: float | None = None
    scale: float = 1.0
    nodata: float | None = None
    source: str = "custom"

    @property
    def n_bands(self) -> int:
        return len(self.wavelength_nm)

    def dropped(self) -> dict[int, str]:
        """0-based band → reason it is not fed to the model."""
        out = {}
        bad = set(self.bad_bands)
        for i, wl in enumerate(self.wavelength_nm):
            if not (WAVELENGTH_MIN_NM <= wl <= WAVELENGTH_MAX_NM):
                out[i] = f"wavelength {wl:.1f} nm outside {WAVELENGTH_MIN_NM:g}–{WAVELENGTH_MAX_NM:g} nm"
            elif i in bad:
                out[i] = "bad band (water vapour / flagged in metadata)"
            elif any(a <= wl <= b for a, b in self.bad_windows_nm):
                out[i] = f"in a water-vapour window of {self.name}"
        return out

    def good_bands(self) -> list[int]:
        dropped = self.dropped()
        return [i for i in range(self.n_bands) if i not in dropped]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SensorProfile":
        p = cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        p.validate()
        return p

    def validate(self, where: str | None = None) -> None:
        """A consistent band table: one FWHM per band, finite wavelengths, positive FWHM, no band listed twice."""
        if self.sensor not in SENSORS:
            warnings.warn(f"profile {self.name!r}: sensor {self.sensor!r} is not one of {', '.join(SENSORS)}; "
                          "the model will use 'others'", SpecAwareWarning, stacklevel=2)
        if self.level is not None and self.level not in LEVELS:
            raise EngineError(f"profile {self.name!r}: level {self.level!r} must be one of {', '.join(LEVELS)}")
        if len(self.fwhm_nm) != len(self.wavelength_nm):
            raise EngineError(f"profile {self.name!r}: {len(self.wavelength_nm)} wavelengths but "
                              f"{len(self.fwhm_nm)} FWHM values; give one FWHM per band")
        what = where or f"sensor profile {self.name!r}"
        fix = "fix the band table (the header's wavelength and fwhm lists) or choose a sensor profile"
        wl, fw = np.asarray(self.wavelength_nm, float), np.asarray(self.fwhm_nm, float)
        bad = np.flatnonzero(~np.isfinite(wl))
        if bad.size:
            raise EngineError(f"{what}: band(s) {_bands(bad)} have no valid wavelength; {fix}")
        bad = np.flatnonzero(~np.isfinite(fw) | (fw <= 0))
        if bad.size:
            raise EngineError(f"{what}: band(s) {_bands(bad)} have FWHM {', '.join(f'{v:g}' for v in fw[bad[:5]])} nm; "
                              f"every band needs a positive FWHM: {fix}")
        order = np.argsort(wl, kind="stable")
        twice = np.flatnonzero(np.diff(wl[order]) == 0)
        if twice.size:
            i, j = sorted(order[twice[0]:twice[0] + 2])
            raise EngineError(f"{what}: bands {i + 1} and {j + 1} both have the wavelength {wl[i]:g} nm "
                              f"({twice.size} band(s) listed twice); {fix}")


def _bands(indices: np.ndarray, limit: int = 8) -> str:
    """1-based band numbers for a message, the first few only."""
    shown = ", ".join(str(i + 1) for i in indices[:limit])
    return shown + (f" … ({len(indices)} in all)" if len(indices) > limit else "")


@lru_cache(maxsize=1)
def _builtin_docs() -> tuple[tuple[str, dict], ...]:
    return tuple((p.stem, json.loads(p.read_text())) for p in sorted(BUILTIN_DIR.glob("*.json")))


def builtin_profiles() -> dict[str, SensorProfile]:
    """Fresh profile objects for the built-ins (the files are read once per process)."""
    return {key: SensorProfile.from_dict(doc) for key, doc in _builtin_docs()}


def custom_dir() -> Path:
    return config_dir() / "sensors"


def custom_profiles() -> dict[str, SensorProfile]:
    d = custom_dir()
    return {p.stem: SensorProfile.from_dict(json.loads(p.read_text())) for p in sorted(d.glob("*.json"))} \
        if d.is_dir() else {}


def all_profiles() -> dict[str, SensorProfile]:
    """Built-ins and the user's custom profiles, by key."""
    return {**builtin_profiles(), **custom_profiles()}


def save_custom_profile(key: str, profile: SensorProfile) -> Path:
    """Save a custom profile atomically under the user config dir."""
    profile.validate()
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
        raise EngineError(f"profile name {key!r} may use letters, digits, '_', '-' and '.' only")
    d = custom_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{key}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(profile.to_dict(), indent=1))
    tmp.replace(path)
    return path


def load_profile(name_or_path: str) -> SensorProfile:
    """A profile by key (built-in or custom) or from a JSON file."""
    profiles = all_profiles()
    if name_or_path in profiles:
        return profiles[name_or_path]
    path = Path(name_or_path)
    if path.is_file():
        try:
            return SensorProfile.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError) as e:
            raise EngineError(f"{shorten(path)} is not a valid sensor profile JSON ({e})") from e
    raise EngineError(f"no sensor profile {name_or_path!r}: use one of {', '.join(profiles)} or a JSON file")


def _parse_list(text: str | None) -> list[float] | None:
    if not text:
        return None
    vals = [v for v in re.split(r"[{},\s]+", text) if v]
    try:
        return [float(v) for v in vals]
    except ValueError:
        return None


def _to_nm(values: list[float], units: str | None) -> list[float]:
    u = (units or "").strip().lower()
    if u in ("micrometers", "micrometer", "micrometres", "micrometre", "microns", "micron", "um", "µm", "μm"):
        factor = 1000.0
    elif u in ("nanometers", "nanometer", "nanometres", "nanometre", "nm"):
        factor = 1.0
    elif u in ("millimeters", "mm"):
        factor = 1e6
    else:  # unknown or missing units: decide by magnitude (no sensor of interest has bands above 100 µm)
        factor = 1000.0 if max(values) < 100 else 1.0
    return [v * factor for v in values]


def _band_items(ds, key: str) -> list[str] | None:
    """A per-band metadata item (any case, default or ENVI domain) from every band, or None."""
    out = []
    for b in range(1, ds.RasterCount + 1):
        band = ds.GetRasterBand(b)
        md = {**{k.lower(): v for k, v in (band.GetMetadata("ENVI") or {}).items()},
              **{k.lower(): v for k, v in (band.GetMetadata() or {}).items()}}
        val = md.get(key)
        if val is None and key == "wavelength":
            val = next((v for k, v in md.items() if k.startswith("netcdf_dim_wavelength")), None)
        if val is None:
            return None
        out.append(val)
    return out


def read_spectral_metadata(ds) -> dict:
    """Wavelengths and FWHM in nm (or None), bad-band list, ignore value and scale factor from GDAL metadata."""
    envi = {k.lower(): v for k, v in (ds.GetMetadata("ENVI") or {}).items()}
    units = envi.get("wavelength_units")
    wl = _parse_list(envi.get("wavelength"))
    fwhm = _parse_list(envi.get("fwhm"))
    if wl is None:
        items = _band_items(ds, "wavelength")
        if items is not None:
            wl = [float(re.findall(r"[-+0-9.eE]+", v)[0]) for v in items]
            unit_items = _band_items(ds, "wavelength_units")
            units = unit_items[0] if unit_items else (ds.GetMetadataItem("wavelength#units") or units)  # NetCDF
            fw_items = _band_items(ds, "fwhm")
            fwhm = [float(v) for v in fw_items] if fw_items else fwhm
    meta_count = len(wl) if wl is not None else None
    if wl is not None and len(wl) != ds.RasterCount:
        wl = None
    if fwhm is not None and (wl is None or len(fwhm) != len(wl)):
        fwhm = None
    meta = {"wavelength_nm": _to_nm(wl, units) if wl else None,
            "fwhm_nm": _to_nm(fwhm, units) if fwhm and wl else None, "wavelength_count": meta_count}
    if meta["fwhm_nm"] and wl and max(fwhm) < 1 < max(wl):  # FWHM in µm next to wavelengths in nm
        meta["fwhm_nm"] = [f * 1000 for f in fwhm]
    bbl = _parse_list(envi.get("bbl"))
    meta["bad_bands"] = [i for i, v in enumerate(bbl) if v == 0] if bbl and len(bbl) == ds.RasterCount else []
    ignore = _parse_list(envi.get("data_ignore_value"))
    band_nd = ds.GetRasterBand(1).GetNoDataValue() if ds.RasterCount else None
    meta["nodata"] = ignore[0] if ignore else band_nd
    factor = _parse_list(envi.get("reflectance_scale_factor"))
    meta["scale"] = 1.0 / factor[0] if factor and factor[0] not in (0, 1) else None
    meta["sensor_type"] = envi.get("sensor_type")
    return meta


def sensor_from_name(path: str | Path) -> str | None:
    name = Path(path).name
    return next((s for rx, s in SENSOR_FROM_NAME if rx.search(name)), None)


def level_from_name(path: str | Path) -> str | None:
    name = Path(path).stem
    return next((lv for rx, lv in LEVEL_FROM_NAME if rx.search(name)), None)


def match_builtin(n_bands: int, wavelength_nm: list[float] | None) -> tuple[str, SensorProfile] | None:
    """The built-in profile with this band count and (when given) wavelengths within 5 nm."""
    for key, prof in builtin_profiles().items():
        if prof.n_bands != n_bands:
            continue
        if wavelength_nm is None or np.max(np.abs(np.subtract(prof.wavelength_nm, wavelength_nm))) < 5.0:
            return key, prof
    return None


def gsd_from_geotransform(gt) -> float | None:
    """√(a² + b²) of the geotransform: the pixel size along a row, rotation included (AVIRIS-NG grids)."""
    if gt is None or tuple(gt) == (0.0, 1.0, 0.0, 0.0, 0.0, 1.0):
        return None
    return math.hypot(gt[1], gt[2])


def robust_max(ds, bands: list[int], nodata) -> float | None:
    """99th percentile of the raw values in one small central window (None when it holds no valid value)."""
    w, h = min(ds.RasterXSize, 64), min(ds.RasterYSize, 64)
    x0, y0 = (ds.RasterXSize - w) // 2, (ds.RasterYSize - h) // 2
    sample = [b + 1 for b in bands[:: max(1, len(bands) // 16)]]
    a = ds.ReadAsArray(x0, y0, w, h, band_list=sample).astype(np.float64)
    ok = np.isfinite(a) & (a != (nodata if nodata is not None else NODATA_DEFAULT)) & (a > -1000)
    return float(np.percentile(a[ok], 99)) if ok.any() else None


def _decide_level_and_scale(prof: SensorProfile, p99: float | None, integer: bool, scale_given: bool) -> None:
    """L2 when the scaled values look like reflectance (≤ 2.5), else L1; integer AVIRIS reflectance is ×10000."""
    looks_reflectance = p99 is None or p99 * prof.scale <= LEVEL_MAX["L2"]
    ints_x10000 = integer and not scale_given and prof.scale == 1.0 and p99 is not None and \
        p99 * 1e-4 <= LEVEL_MAX["L2"]
    if prof.level is None:
        if looks_reflectance:
            prof.level = "L2"
        elif ints_x10000 and prof.sensor in ("avc", "avng", "av3"):
            prof.level, prof.scale = "L2", 1e-4
        else:
            prof.level = "L1"
    elif prof.level == "L2" and not looks_reflectance and ints_x10000:
        prof.scale = 1e-4


def profile_for_raster(path: str | Path, ds=None, profile: str | SensorProfile | None = None,
                       sensor: str | None = None, level: str | None = None) -> SensorProfile:
    """The profile to use for a raster: its own metadata, else the chosen one; checks they agree."""
    ds = ds or open_raster(path)
    n = ds.RasterCount
    meta = read_spectral_metadata(ds)
    chosen = load_profile(profile) if isinstance(profile, str) else profile
    name_sensor = sensor or sensor_from_name(path)
    if chosen is not None:
        if chosen.n_bands != n:
            raise EngineError(f"{shorten(path)} has {n} bands but sensor profile {chosen.name!r} has {chosen.n_bands}; "
                              "choose a profile with the same number of bands")
        prof = SensorProfile.from_dict(chosen.to_dict())
    elif meta["wavelength_nm"] is not None:
        match = match_builtin(n, meta["wavelength_nm"])
        key = name_sensor or (match[1].sensor if match else None)
        base = next((p for p in builtin_profiles().values() if p.sensor == key), None)
        fwhm = meta["fwhm_nm"]
        if fwhm is None:
            if match:
                fwhm = match[1].fwhm_nm
            else:
                wl = np.asarray(meta["wavelength_nm"])
                fwhm = list(np.gradient(wl)) if n > 1 else [10.0]
                warnings.warn(f"{Path(path).name}: no FWHM in the metadata; using the band spacing instead",
                              SpecAwareWarning, stacklevel=2)
        prof = SensorProfile(name=base.name if base else (meta.get("sensor_type") or "other sensor"),
                             sensor=key or "others", level=None, wavelength_nm=meta["wavelength_nm"],
                             fwhm_nm=list(map(float, fwhm)), bad_bands=meta["bad_bands"],
                             bad_windows_nm=base.bad_windows_nm if base else [], gsd=base.gsd if base else None,
                             source="raster metadata")
    else:
        fits = [f"{k} ({p.name})" for k, p in all_profiles().items() if p.n_bands == n]
        hint = (f"profiles with {n} bands: {', '.join(fits)}" if fits else
                f"no known profile has {n} bands; save a custom profile (wavelength and FWHM per band)")
        if meta["wavelength_count"]:
            raise EngineError(f"{shorten(path)}: its metadata lists {meta['wavelength_count']} wavelengths for {n} "
                              f"bands; fix the header (one wavelength per band) or choose a sensor profile: {hint}")
        raise EngineError(f"{shorten(path)} has no wavelength metadata ({n} bands); choose a sensor profile: {hint}")
    if sensor:
        prof.sensor = sensor
    if meta["nodata"] is not None:
        prof.nodata = meta["nodata"]
    if meta["scale"]:
        prof.scale = meta["scale"]
    gsd = gsd_from_geotransform(ds.GetGeoTransform(can_return_null=True))
    prof.gsd = gsd or prof.gsd
    prof.level = level or (chosen.level if chosen else None) or level_from_name(path)
    integer = ds.GetRasterBand(1).DataType in (1, 2, 3, 4, 5, 12, 13)
    if prof.level is None or (prof.level == "L2" and integer):  # only then do the values decide anything
        p99 = robust_max(ds, prof.good_bands() or list(range(n)), prof.nodata)
        _decide_level_and_scale(prof, p99, integer, bool(meta["scale"]))
    prof.validate(shorten(path))
    return prof


def warn_dropped(profile: SensorProfile, path) -> None:
    """Tell the user, once, which bands are outside the model's wavelength range."""
    out = [i for i, r in profile.dropped().items() if r.startswith("wavelength")]
    if out:
        warnings.warn(f"{Path(path).name}: {len(out)} band(s) outside {WAVELENGTH_MIN_NM:g}–{WAVELENGTH_MAX_NM:g} nm "
                      f"are not used (0-based {out[:8]}{'…' if len(out) > 8 else ''})", SpecAwareWarning, stacklevel=2)
