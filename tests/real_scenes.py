"""The real scenes of ../shared/data as arrays with wavelengths, and writers that turn them into GDAL files.

Shared by the tests and `bench/real_scenes.py`. Reading the MATLAB files needs scipy (Debian python3-scipy).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()
AVC_1995 = DATA / "band_metadata" / "derived" / "avirisc_224_1995_usgs_splib07.csv"


@dataclass
class RealScene:
    name: str
    cube: np.ndarray  # [C, H, W] float32, reflectance-like
    labels: np.ndarray | None  # [H, W] 1…K, or None
    class_names: list[str]
    wavelength: np.ndarray
    fwhm: np.ndarray
    sensor: str
    note: str = ""


def _loadmat(path: Path) -> dict:
    from scipy.io import loadmat
    return loadmat(str(path))


def band_table(path: Path = AVC_1995) -> tuple[np.ndarray, np.ndarray]:
    rows = [r for r in csv.reader(line for line in open(path) if not line.startswith("#"))][1:]
    return np.array([float(r[1]) for r in rows]), np.array([float(r[2]) for r in rows])


def samson() -> RealScene:
    """SAMSON 95×95×156 (401–889 nm, no list in the file: spacing from the sensor's documented range)."""
    v = _loadmat(DATA / "samson" / "samson_1.mat")["V"]
    a = _loadmat(DATA / "samson" / "end3.mat")["A"]
    cube = v.reshape(156, 95, 95, order="F").astype(np.float32)  # MATLAB column order → [C, row, col]
    labels = (a.reshape(3, 95, 95, order="F").argmax(axis=0) + 1).astype(np.uint8)
    wl = np.linspace(401.0, 889.0, 156)
    return RealScene("samson", cube, labels, ["rock", "tree", "water"], wl, np.full(156, wl[1] - wl[0]), "others",
                     "3 classes = argmax of the abundances")


def abu(name: str) -> RealScene:
    """ABU airport-1 / urban-2 (AVIRIS): target vs background. The kept channels are not recorded, so the
    AVIRIS-Classic wavelengths are taken evenly over the 224 channels (an approximation, stated in reports)."""
    m = _loadmat(DATA / "aviris_abu" / f"{name}.mat")
    cube = m["data"].transpose(2, 0, 1).astype(np.float32) * 1e-4
    wl, fwhm = band_table()
    idx = np.linspace(0, 223, cube.shape[0]).round().astype(int)
    labels = np.where(m["map"] > 0, 2, 1).astype(np.uint8)
    return RealScene(name, cube, labels, ["background", "target"], wl[idx], fwhm[idx], "avc",
                     "AVIRIS-Classic wavelengths taken evenly over 224 channels (kept channels unknown)")


def jasper() -> RealScene:
    """Jasper Ridge 100×100×198, reflectance ≈ Y/10000; `GT` lists the kept 1-based AVIRIS channels."""
    m = _loadmat(DATA / "jasper_ridge" / "jasperRidge2_R198.mat")
    cube = (m["Y"].reshape(198, 100, 100, order="F") / 10000.0).astype(np.float32)
    wl, fwhm = band_table()
    idx = m["GT"].ravel().astype(int) - 1
    return RealScene("jasper_ridge", cube, None, [], wl[idx], fwhm[idx], "avc")


def moffett() -> RealScene:
    """Moffett Field 50×50×159 reflectance (AVIRIS); the kept channels are not recorded, so the AVIRIS-Classic
    wavelengths are taken evenly over the 224 channels, as for ABU."""
    x = _loadmat(DATA / "moffett_field" / "Moffet.mat")["X"]
    cube = x.reshape(159, 50, 50, order="F").astype(np.float32)
    wl, fwhm = band_table()
    idx = np.linspace(0, 223, 159).round().astype(int)
    return RealScene("moffett_field", cube, None, [], wl[idx], fwhm[idx], "avc")


GT = (580000.0, 3.0, 0.0, 4140000.0, 0.0, -3.0)


def _georef(ds) -> None:
    ds.SetGeoTransform(GT)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32610)
    ds.SetProjection(srs.ExportToWkt())


def write_geotiff(path: Path, scene: RealScene) -> Path:
    """Per-band wavelength/FWHM metadata, as ENVI and EnMAP-Box write them into GeoTIFF."""
    C, H, W = scene.cube.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(path), W, H, C, gdal.GDT_Float32, ["INTERLEAVE=BAND"])
    _georef(ds)
    for b in range(C):
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(scene.cube[b])
        band.SetMetadata({"wavelength": f"{scene.wavelength[b]:.3f}", "wavelength_units": "Nanometers",
                          "fwhm": f"{scene.fwhm[b]:.3f}"})
    ds = None
    return path


def write_envi(path: Path, scene: RealScene, interleave: str = "BIL") -> Path:
    """ENVI with wavelength and FWHM in the header."""
    C, H, W = scene.cube.shape
    ds = gdal.GetDriverByName("ENVI").Create(str(path), W, H, C, gdal.GDT_Float32, [f"INTERLEAVE={interleave}"])
    _georef(ds)
    fmt = lambda v: "{" + ", ".join(f"{x:.3f}" for x in v) + "}"  # noqa: E731
    ds.SetMetadata({"wavelength": fmt(scene.wavelength), "fwhm": fmt(scene.fwhm),
                    "wavelength_units": "Nanometers"}, "ENVI")
    ds.WriteRaster(0, 0, W, H, np.ascontiguousarray(scene.cube).tobytes(), buf_type=gdal.GDT_Float32)
    ds = None
    return path


def label_squares(labels: np.ndarray, per_class: int, size: int = 3, seed: int = 0) -> list[tuple[int, int, int]]:
    """`per_class` random size×size squares per class, each wholly inside its class: (class, x0, y0)."""
    rng = np.random.default_rng(seed)
    H, W = labels.shape
    out = []
    for c in range(1, int(labels.max()) + 1):
        ok = np.zeros((H, W), bool)
        for y in range(H - size + 1):
            for x in range(W - size + 1):
                ok[y, x] = (labels[y:y + size, x:x + size] == c).all()
        ys, xs = np.nonzero(ok)
        if len(ys) == 0:
            continue
        taken = np.zeros((H, W), bool)
        for i in rng.permutation(len(ys)):
            y, x = ys[i], xs[i]
            if taken[max(0, y - size):y + 2 * size, max(0, x - size):x + 2 * size].any():
                continue
            taken[y:y + size, x:x + size] = True
            out.append((c, int(x), int(y)))
            if sum(1 for o in out if o[0] == c) == per_class:
                break
    return out
