"""A raster's spectral metadata as GDAL exposes it: wavelengths and FWHM in nm from the ENVI domain, from
per-band items (as ENVI and EnMAP-Box write them into GeoTIFF) or NetCDF dimension values; bad bands, the
ignore value, the reflectance scale factor and the header's sensor type."""
from __future__ import annotations

import re


INTEGER_TYPES = (1, 2, 3, 4, 5, 12, 13)  # GDAL's Byte, UInt16, Int16, UInt32, Int32, UInt64, Int64


def parse_list(text: str | None) -> list[float] | None:
    """Numbers of an ENVI list (`{1, 2, 3}`), or None when there are none or one is not a number."""
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
    wl = parse_list(envi.get("wavelength"))
    fwhm = parse_list(envi.get("fwhm"))
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
    if wl and (units or "").strip().lower() == "index":  # ENVI's band numbers: as if there were no wavelength table
        wl = fwhm = meta_count = None
    meta = {"wavelength_nm": _to_nm(wl, units) if wl else None,
            "fwhm_nm": _to_nm(fwhm, units) if fwhm and wl else None, "wavelength_count": meta_count}
    if meta["fwhm_nm"] and wl and max(fwhm) < 1 < max(wl):  # FWHM in µm next to wavelengths in nm
        meta["fwhm_nm"] = [f * 1000 for f in fwhm]
    bbl = parse_list(envi.get("bbl"))
    meta["bad_bands"] = [i for i, v in enumerate(bbl) if v == 0] if bbl and len(bbl) == ds.RasterCount else []
    meta["bbl_count"] = len(bbl) if bbl else None
    ignore = parse_list(envi.get("data_ignore_value"))
    band_nd = ds.GetRasterBand(1).GetNoDataValue() if ds.RasterCount else None
    meta["nodata"] = ignore[0] if ignore else band_nd
    factor = parse_list(envi.get("reflectance_scale_factor"))
    meta["scale"] = 1.0 / factor[0] if factor and factor[0] not in (0, 1) else None
    meta["scale_note"] = None
    if meta["scale"] is None and ds.RasterCount and ds.GetRasterBand(1).DataType in INTEGER_TYPES:
        bands = [ds.GetRasterBand(b) for b in range(1, ds.RasterCount + 1)]  # GDAL's own (GeoTIFF, NetCDF, ENVI gains)
        scales = {b.GetScale() or 1.0 for b in bands}
        offsets = {b.GetOffset() or 0.0 for b in bands}
        if len(scales) == 1 and offsets == {0.0}:
            meta["scale"] = scales.pop() if scales != {1.0} else None
        elif len(scales) > 1 or offsets != {0.0}:
            meta["scale_note"] = (f"per-band gains ({len(scales)} different) or offsets in the metadata are not "
                                  "applied; the values are read as stored")
    meta["sensor_type"] = envi.get("sensor_type")
    return meta
