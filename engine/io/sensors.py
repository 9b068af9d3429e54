"""Sensor profiles: which bands a raster has (wavelength, FWHM), which to drop, its sensor, level and GSD.

A profile comes from the raster's own metadata (ENVI domain, per-band items as ENVI and EnMAP-Box write them
into GeoTIFF, NetCDF dimension values), from a built-in (AVIRIS-Classic, AVIRIS-NG, AVIRIS-3), or from a
custom JSON file saved under the user config dir.
"""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..core.errors import EngineError, SpecAwareWarning, shorten
from ..core.paths import config_dir
from ..core.vocabulary import LEVEL_MAX, LEVELS, RESOURCES, SENSORS, WAVELENGTH_MAX_NM, WAVELENGTH_MIN_NM
from .band_metadata import INTEGER_TYPES, read_spectral_metadata
from .datasets import ground_pixel, open_raster

BUILTIN_DIR = RESOURCES / "sensors"
SENSOR_FROM_NAME = [  # (pattern anywhere in the file name, sensor key)
    (re.compile(r"ang\d{8}t\d{6}", re.I), "avng"),
    (re.compile(r"^ang", re.I), "avng"),
    (re.compile(r"f\d{6}t\d{2}p\d{2}r\d{2}", re.I), "avc"),
    (re.compile(r"AV3\d{8}t\d{6}|^AV3", re.I), "av3"),
]
LEVEL_FROM_NAME = [(re.compile(r"rdn|radiance", re.I), "L1"), (re.compile(r"rfl|corr|refl", re.I), "L2")]
SENSOR_FROM_HEADER = [  # (pattern in an ENVI header's `sensor type`, sensor key); the first that matches wins
    (re.compile(r"aviris[-_ ]?ng|\bang\b", re.I), "avng"),
    (re.compile(r"aviris[-_ ]?3|\bav3\b", re.I), "av3"),
    (re.compile(r"aviris", re.I), "avc"),
]
NO_SENSOR_NAMES = {"", "unknown", "none", "n/a", "other", "others"}
SUBSET_TOLERANCE = 0.6  # a subset's band lies within this share of the built-in's band spacing of its band
SUBSET_MIN_SHARE = 0.5  # a subset keeps at least half of the built-in's bands
SUBSET_MATCHED = 0.98  # and at least this share of its own bands match (band-edge calibration may drift)
SUBSET_SHARED = 0.05  # bands whose nearest built-in band is taken already (overlapping spectrometers)
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
    sensor_reason: str = ""  # how the sensor was decided, in words (for `info` and reports)

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
                out[i] = "bad band (water vapour, flagged in the metadata, or no data)"
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


def subset_of_builtin(wavelength_nm: list[float]) -> tuple[SensorProfile, np.ndarray, float] | None:
    """(built-in, its nearest band for each of ours, largest difference nm) when our band table is a subset of a
    built-in sensor's: research scenes drop the water-vapour and noisy bands (AVIRIS-Classic 224 → 200), often
    from another year's calibration. The table must keep half the built-in's bands or more, with the same band
    spacing (±5 %), and nearly every band within 0.6 spacings of a band of its own."""
    wl = np.asarray(wavelength_nm, dtype=np.float64)
    best = None
    for prof in builtin_profiles().values():
        ref = np.asarray(prof.wavelength_nm, dtype=np.float64)
        if not SUBSET_MIN_SHARE * len(ref) <= len(wl) <= len(ref):
            continue
        spacing = float(np.median(np.abs(np.diff(np.sort(ref)))))
        steps = np.diff(np.sort(wl))
        own_spacing = float(np.median(steps[steps < 1.5 * spacing])) if (steps < 1.5 * spacing).any() else 0.0
        nearest = np.abs(wl[:, None] - ref[None, :]).argmin(axis=1)
        gap = np.abs(wl - ref[nearest])
        ok = gap <= SUBSET_TOLERANCE * spacing
        shared = len(nearest) - len(np.unique(nearest))
        if (abs(own_spacing / spacing - 1) <= 0.05 and ok.mean() >= SUBSET_MATCHED and
                shared <= SUBSET_SHARED * len(wl) and (best is None or gap[ok].mean() < best[3])):
            best = (prof, nearest, float(gap[ok].max()), float(gap[ok].mean()))
    return best[:3] if best else None


def sensor_from_header(sensor_type: str | None) -> tuple[str | None, bool]:
    """(sensor key, named?) from an ENVI header's `sensor type`: named is True when it names any sensor, so a
    header that says "Hyperion" keeps its data from being taken for an AVIRIS subset."""
    text = (sensor_type or "").strip()
    key = next((k for rx, k in SENSOR_FROM_HEADER if rx.search(text)), None)
    return key, key is not None or text.lower() not in NO_SENSOR_NAMES


def robust_max(ds, bands: list[int], nodata) -> float | None:
    """99th percentile of the raw values in one small central window (None when it holds no valid value)."""
    w, h = min(ds.RasterXSize, 64), min(ds.RasterYSize, 64)
    x0, y0 = (ds.RasterXSize - w) // 2, (ds.RasterYSize - h) // 2
    sample = [b + 1 for b in bands[:: max(1, len(bands) // 16)]]
    a = ds.ReadAsArray(x0, y0, w, h, band_list=sample).astype(np.float64)
    ok = valid_values(a, nodata)
    return float(np.percentile(a[ok], 99)) if ok.any() else None


def valid_values(a: np.ndarray, nodata) -> np.ndarray:
    """Where raw values are data: finite, not the no-data value (or -9999) and not a large negative fill."""
    return np.isfinite(a) & (a != (nodata if nodata is not None else NODATA_DEFAULT)) & (a > -1000)


def empty_bands(ds, bands: list[int], nodata) -> list[int]:
    """Bands (0-based) with no valid value in the central 64×64 window nor in four windows spread over the raster
    while other bands have some: a band that is no-data everywhere would make every pixel no-data."""
    def invalid(x0: int, y0: int, w: int, h: int, chosen: list[int]) -> np.ndarray:
        a = ds.ReadAsArray(x0, y0, w, h, band_list=[b + 1 for b in chosen]).astype(np.float64)
        return ~valid_values(a.reshape(len(chosen), -1), nodata)
    W, H = ds.RasterXSize, ds.RasterYSize
    w, h = min(W, 64), min(H, 64)
    windows = [((W - w) // 2, (H - h) // 2)] + [(int(fx * (W - w)), int(fy * (H - h)))
                                                for fx, fy in ((0.2, 0.2), (0.8, 0.2), (0.2, 0.8), (0.8, 0.8))]
    candidates = list(bands)
    for x0, y0 in windows:
        bad = invalid(x0, y0, w, h, candidates)
        if bad.all():  # no band has data here: a no-data corner says nothing about the bands
            continue
        candidates = [b for b, empty in zip(candidates, bad.all(axis=1)) if empty]
        if not candidates:
            break
    return candidates if len(candidates) < len(bands) else []


def _decide_level_and_scale(prof: SensorProfile, p99: float | None, integer: bool, scale_given: bool,
                            where: str) -> None:
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
            if ints_x10000:
                warnings.warn(f"{where}: integer values up to {p99:.0f} are read as L1 radiance; if they are "
                              "reflectance × 10000, give the level L2 (then they are scaled by 1e-4)",
                              SpecAwareWarning, stacklevel=3)
    elif prof.level == "L2" and not looks_reflectance and ints_x10000:
        prof.scale = 1e-4


def profile_for_raster(path: str | Path, ds=None, profile: str | SensorProfile | None = None,
                       sensor: str | None = None, level: str | None = None) -> SensorProfile:
    """The profile to use for a raster: its own metadata, else the chosen one; checks they agree."""
    ds = ds or open_raster(path)
    n = ds.RasterCount
    meta = read_spectral_metadata(ds)
    chosen = load_profile(profile) if isinstance(profile, str) else profile
    if chosen is not None:
        if chosen.n_bands != n:
            raise EngineError(f"{shorten(path)} has {n} bands but sensor profile {chosen.name!r} has {chosen.n_bands}; "
                              "choose a profile with the same number of bands")
        prof = SensorProfile.from_dict(chosen.to_dict())
    elif meta["wavelength_nm"] is not None:
        prof = _profile_from_metadata(path, n, meta, sensor or sensor_from_name(path))
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
        prof.sensor_reason = f"chosen: sensor {sensor!r} was given"
    elif chosen is not None:
        prof.sensor_reason = f"from the chosen sensor profile {chosen.name!r}"
    if meta["nodata"] is not None:
        prof.nodata = meta["nodata"]
    if meta["scale"]:
        prof.scale = meta["scale"]
    elif meta["scale_note"]:
        warnings.warn(f"{Path(path).name}: {meta['scale_note']}", SpecAwareWarning, stacklevel=2)
    gsd = ground_pixel(ds)[0]
    prof.gsd = gsd or prof.gsd
    empty = empty_bands(ds, prof.good_bands(), prof.nodata) if prof.good_bands() else []
    if empty:
        prof.bad_bands = sorted(set(prof.bad_bands) | set(empty))
        warnings.warn(f"{Path(path).name}: band(s) {', '.join(str(b + 1) for b in empty[:12])}"
                      f"{'…' if len(empty) > 12 else ''} hold no valid value (all no-data) and are not used",
                      SpecAwareWarning, stacklevel=2)
    prof.level = level or (chosen.level if chosen else None) or level_from_name(path)
    integer = ds.GetRasterBand(1).DataType in INTEGER_TYPES
    if prof.level is None or (prof.level == "L2" and integer):  # only then do the values decide anything
        p99 = robust_max(ds, prof.good_bands() or list(range(n)), prof.nodata)
        _decide_level_and_scale(prof, p99, integer, bool(meta["scale"]), Path(path).name)
    prof.validate(shorten(path))
    return prof


def _profile_from_metadata(path, n: int, meta: dict, named: str | None) -> SensorProfile:
    """A profile from the raster's own band table; the sensor from the option or file name, else the header's
    sensor type, else a built-in whose band table this is (whole or a subset), else 'others'."""
    wl = meta["wavelength_nm"]
    header_key, header_named = sensor_from_header(meta.get("sensor_type"))
    match = match_builtin(n, wl)
    subset = None if match or header_named else subset_of_builtin(wl)
    base_prof = match[1] if match else (subset[0] if subset else None)
    if named:
        key = named
        reason = f"the file name {Path(path).name!r} follows {key}'s pattern"  # a given sensor says so later
    elif header_named:
        key = header_key or "others"
        reason = f"the header's sensor type {meta['sensor_type']!r}" + ("" if header_key else
                                                                         " (not a built-in sensor)")
    elif match:
        key, reason = match[1].sensor, f"its {n}-band table is the built-in {match[1].name} table (within 5 nm)"
    elif subset:
        key = subset[0].sensor
        reason = (f"its {n} bands are a subset of the built-in {subset[0].name} table's {subset[0].n_bands} "
                  f"(each within {subset[2]:.1f} nm of one of them)")
    else:
        key, reason = None, f"no built-in sensor has this {n}-band table, whole or as a subset, and the header " \
                            "names none"
    base = next((p for p in builtin_profiles().values() if p.sensor == key), None)
    fwhm = meta["fwhm_nm"]
    if fwhm is None:
        if base_prof is not None:
            idx = subset[1] if subset else np.arange(n)
            fwhm = list(np.asarray(base_prof.fwhm_nm)[idx])
        else:
            fwhm = spacing_fwhm(wl) if n > 1 else [10.0]
            warnings.warn(f"{Path(path).name}: no FWHM in the metadata; using the band spacing instead",
                          SpecAwareWarning, stacklevel=3)
    if meta.get("bbl_count") and meta["bbl_count"] != n:
        warnings.warn(f"{Path(path).name}: its bad-band list (bbl) has {meta['bbl_count']} entries for {n} bands and "
                      "is ignored; fix the header to flag bad bands", SpecAwareWarning, stacklevel=3)
    return SensorProfile(name=base.name if base else (meta.get("sensor_type") or "other sensor"),
                         sensor=key or "others", level=None, wavelength_nm=wl, fwhm_nm=list(map(float, fwhm)),
                         bad_bands=meta["bad_bands"], bad_windows_nm=base.bad_windows_nm if base else [],
                         gsd=base.gsd if base else None, source="raster metadata", sensor_reason=reason)


def spacing_fwhm(wavelength_nm) -> list[float]:
    """Each band's FWHM estimated as its spacing to its neighbours in wavelength order (overlapping spectrometers
    list their bands out of order), at least half the median spacing."""
    wl = np.asarray(wavelength_nm, float)
    order = np.argsort(wl)
    local = np.empty_like(wl)
    local[order] = np.gradient(wl[order])
    return [float(v) for v in np.maximum(local, 0.5 * float(np.median(np.diff(wl[order]))))]


def warn_dropped(profile: SensorProfile, path) -> None:
    """Tell the user, once, which bands are outside the model's wavelength range."""
    out = [i for i, r in profile.dropped().items() if r.startswith("wavelength")]
    if out:
        warnings.warn(f"{Path(path).name}: {len(out)} band(s) outside {WAVELENGTH_MIN_NM:g}–{WAVELENGTH_MAX_NM:g} nm "
                      f"are not used (0-based {out[:8]}{'…' if len(out) > 8 else ''})", SpecAwareWarning, stacklevel=2)
