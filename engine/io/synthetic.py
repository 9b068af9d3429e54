"""A synthetic AVIRIS-NG-like scene with a known class map, built from measured and modelled spectra, and a second
date of it with known changed blocks.

The spectra come from the `earthlib` spectral library (MIT; 7,261 spectra at 400–2190 nm): soils, urban
materials and PROSAIL canopies. Each is resampled to the AVIRIS-NG 425-band profile with a Gaussian spectral
response of each band's FWHM; bands beyond the library's range are written but flagged bad (`bbl` = 0).
Objects (fields, buildings, roads) get one library spectrum each, pixels vary in brightness and mix at
boundaries (the scene is drawn at 2× and averaged), and noise grows with the signal.
"""
from __future__ import annotations

import csv
import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr, osr

from ..core.errors import EngineError
from .sensors import builtin_profiles

# Demo class → (LEVEL_2, LEVEL_3 values in earthlib's metadata); None matches any.
CLASSES = {
    "vegetation": ("vegetation", None),
    "dry vegetation": ("npv", None),
    "bare soil": ("bare", "soil"),
    "roof": ("built", ("comp_shingle", "wood_shingle", "tile", "metal", "paint", "tar_roof", "roof")),
    "road": ("built", ("road", "parking_lot", "asphalt")),
}
LIB_RANGE_NM = (400.0, 2190.0)


def earthlib_dir() -> Path:
    spec = importlib.util.find_spec("earthlib")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("the spectral library package 'earthlib' is not installed; run `python3 build.py setup`")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_library() -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(wavelength nm [180], reflectance [N, 180], metadata rows) of earthlib's spectra, read without earthlib."""
    d = earthlib_dir()
    header = (d / "spectra.sli.hdr").read_text()
    fields = {}
    for key in ("samples", "lines"):
        fields[key] = int(next(line.split("=")[1] for line in header.splitlines() if line.strip().startswith(key)))
    wl_text = header.split("wavelength =")[1].split("{")[1].split("}")[0]
    wl = np.array([float(v) for v in wl_text.split(",")]) * 1000.0  # micrometers → nm
    spectra = np.fromfile(d / "spectra.sli", dtype="<f4").reshape(fields["lines"], fields["samples"])
    with open(d / "spectra.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return wl, spectra, rows


def resample(lib_wl: np.ndarray, spectra: np.ndarray, centers: np.ndarray, fwhm: np.ndarray) -> np.ndarray:
    """Gaussian spectral response of each band (σ = FWHM/2.355) on a 1 nm grid; [N, bands]."""
    fine = np.arange(lib_wl[0], lib_wl[-1] + 1.0, 1.0)
    fine_spectra = np.stack([np.interp(fine, lib_wl, s) for s in spectra])
    inside = (centers >= lib_wl[0]) & (centers <= lib_wl[-1])
    sigma = np.maximum(fwhm, 1.0) / 2.3548
    w = np.exp(-0.5 * ((fine[None, :] - centers[:, None]) / sigma[:, None]) ** 2)
    w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    out = fine_spectra @ w.T
    # Outside the library: hold the nearest covered band's value (these bands are flagged bad).
    first, last = np.flatnonzero(inside)[[0, -1]]
    out[:, :first] = out[:, [first]]
    out[:, last + 1:] = out[:, [last]]
    return out.astype(np.float32)


def class_spectra(rows, spectra, rng, per_class: int = 4) -> dict[str, np.ndarray]:
    """A few library spectra per class: the materials of one region (one soil series, a few roof types)."""
    out = {}
    for name, (l2, l3) in CLASSES.items():
        l3s = (l3,) if isinstance(l3, str) else l3
        idx = [i for i, r in enumerate(rows) if r["LEVEL_2"] == l2 and (l3s is None or r["LEVEL_3"] in l3s)]
        good = [i for i in idx if np.isfinite(spectra[i]).all() and 0.005 < spectra[i].mean() < 0.9]
        if len(good) < 3:
            raise EngineError(f"the spectral library has too few spectra for class {name!r}")
        out[name] = spectra[rng.choice(good, size=min(per_class, len(good)), replace=False)]
    return out


@dataclass
class Scene:
    raster: Path
    polygons: Path
    truth: Path
    class_names: list[str]  # truth ids are 1…K in this order (sorted, as the engine's class scheme orders them)


def layout(size: int, rng) -> list[tuple[str, int, int, int, int]]:
    """Objects (class, x0, y0, x1, y1) in px, drawn in order: fields, then a road grid, then building blocks."""
    objs = []
    step = size // 4
    crops = list(rng.permutation(["vegetation", "dry vegetation", "bare soil"] * 6))
    for gy in range(0, size, step):  # a patchwork of fields over the whole scene
        for gx in range(0, size, step):
            objs.append((str(crops.pop()), gx, gy, gx + step, gy + step))
    road_w = max(3, size // 32)
    roads = [int(size * f) for f in (0.25, 0.62)]
    for r in roads:
        objs.append(("road", 0, r, size, r + road_w))
        objs.append(("road", r, 0, r + road_w, size))
    # Buildings in the two blocks nearest the crossing roads.
    for bx, by in ((roads[0] + road_w + 2, roads[0] + road_w + 2), (roads[1] + road_w + 2, 2)):
        for j in range(3):
            for i in range(3):
                w, h = int(rng.integers(6, 10)), int(rng.integers(6, 10))
                x0, y0 = bx + i * 10, by + j * 10
                if x0 + w < size and y0 + h < size:
                    objs.append(("roof", x0, y0, x0 + w, y0 + h))
    return objs


def make_scene(out_dir: Path, size: int = 128, gsd: float = 3.0, seed: int = 0) -> Scene:
    """Write the scene as AVIRIS-NG-named ENVI, the training polygons as GPKG and the known class map."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    prof = builtin_profiles()["aviris_ng"]
    centers, fwhm = np.asarray(prof.wavelength_nm), np.asarray(prof.fwhm_nm)
    lib_wl, spectra, rows = load_library()
    lib = {k: resample(lib_wl, v, centers, fwhm) for k, v in class_spectra(rows, spectra, rng).items()}
    names = sorted(CLASSES)
    cid = {n: i + 1 for i, n in enumerate(names)}

    S = 2 * size  # drawn at 2×, then averaged: boundary pixels mix their neighbours
    fine_label = np.zeros((S, S), np.uint8)
    fine_cube = np.zeros((S, S, len(centers)), np.float32)
    objects = layout(size, rng)
    for cls, x0, y0, x1, y1 in objects:
        a, b = lib[cls][rng.integers(len(lib[cls]), size=2)]
        mix = rng.uniform(0.6, 1.0)
        base = mix * a + (1 - mix) * b
        sl = np.s_[2 * y0:2 * y1, 2 * x0:2 * x1]
        h, w = fine_label[sl].shape
        bright = rng.normal(1.0, 0.06, (h, w, 1)).astype(np.float32)
        fine_cube[sl] = base[None, None, :] * bright
        fine_label[sl] = cid[cls]
    cube = fine_cube.reshape(size, 2, size, 2, -1).mean(axis=(1, 3))
    cube += rng.normal(0, 1, cube.shape).astype(np.float32) * (0.002 + 0.01 * cube)
    cube = np.clip(cube, 0, None)
    votes = np.stack([(fine_label == c).reshape(size, 2, size, 2).sum(axis=(1, 3)) for c in range(1, len(names) + 1)])
    truth = (votes.argmax(axis=0) + 1).astype(np.uint8)

    gt = (500000.0, gsd, 0.0, 3810000.0, 0.0, -gsd)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32611)
    raster = out_dir / "ang20231102t183000_rfl_demo"
    ds = gdal.GetDriverByName("ENVI").Create(str(raster), size, size, len(centers), gdal.GDT_Float32,
                                             ["INTERLEAVE=BIL"])
    ds.SetGeoTransform(gt)
    ds.SetProjection(srs.ExportToWkt())
    outside = (centers < LIB_RANGE_NM[0]) | (centers > LIB_RANGE_NM[1])
    bbl = np.ones(len(centers), int)
    bbl[prof.bad_bands] = 0
    bbl[outside] = 0
    fmt = lambda v: "{" + ", ".join(v) + "}"  # noqa: E731
    ds.SetMetadata({"wavelength": fmt(f"{c:.3f}" for c in centers), "fwhm": fmt(f"{f:.3f}" for f in fwhm),
                    "bbl": fmt(str(b) for b in bbl), "wavelength_units": "Nanometers",
                    "data_ignore_value": "-9999", "sensor_type": "AVIRIS-NG (synthetic demo)"}, "ENVI")
    ds.WriteRaster(0, 0, size, size, np.ascontiguousarray(cube.transpose(2, 0, 1)).tobytes(),
                   buf_type=gdal.GDT_Float32)
    ds = None

    truth_path = out_dir / "truth.tif"
    tds = gdal.GetDriverByName("GTiff").Create(str(truth_path), size, size, 1, gdal.GDT_Byte)
    tds.SetGeoTransform(gt)
    tds.SetProjection(srs.ExportToWkt())
    tds.GetRasterBand(1).WriteArray(truth)
    tds.GetRasterBand(1).SetNoDataValue(0)
    tds.GetRasterBand(1).SetRasterCategoryNames(["no data", *names])
    tds = None

    polygons = out_dir / "training.gpkg"
    write_training_polygons(polygons, objects, gt, srs, rng)
    return Scene(raster, polygons, truth_path, names)


def write_training_polygons(path: Path, objects, gt, srs, rng, per_class: int = 5) -> None:
    """Small rectangles inside a few objects of each class: the part of the map an analyst would digitise."""
    if path.exists():
        path.unlink()
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    lyr = ds.CreateLayer("training", srs, ogr.wkbPolygon)
    lyr.CreateField(ogr.FieldDefn("class", ogr.OFTString))
    by_class: dict[str, list] = {}
    for obj in objects:
        by_class.setdefault(obj[0], []).append(obj)
    for cls, objs in sorted(by_class.items()):
        for i in rng.permutation(len(objs))[:per_class]:
            _, x0, y0, x1, y1 = objs[i]
            small = min(x1 - x0, y1 - y0) < 12
            m = 1 if small else 3  # stay off the mixed boundary pixels
            w, h = (x1 - x0 - 2 * m, y1 - y0 - 2 * m) if small else ((x1 - x0) // 3, (y1 - y0) // 3)
            px0 = x0 + m + int(rng.integers(0, max(1, x1 - x0 - 2 * m - w + 1)))
            py0 = y0 + m + int(rng.integers(0, max(1, y1 - y0 - 2 * m - h + 1)))
            ring = ogr.Geometry(ogr.wkbLinearRing)
            for px, py in [(px0, py0), (px0 + w, py0), (px0 + w, py0 + h), (px0, py0 + h), (px0, py0)]:
                ring.AddPoint_2D(gt[0] + px * gt[1], gt[3] + py * gt[5])
            poly = ogr.Geometry(ogr.wkbPolygon)
            poly.AddGeometry(ring)
            f = ogr.Feature(lyr.GetLayerDefn())
            f.SetField("class", cls)
            f.SetGeometry(poly)
            lyr.CreateFeature(f)
    ds = None


@dataclass
class SecondDate:
    raster: Path
    change_truth: Path  # 1 where the ground changed class between the dates, else 0
    blocks: list[tuple[str, str, int, int, int]]  # (from class, to class, x0, y0, side) in px


def make_second_date(scene: Scene, out_dir: Path, seed: int = 1, blocks: int = 4) -> SecondDate:
    """The scene flown again later: other light (+4 %), new noise, and `blocks` square patches whose ground changed
    class (a field cleared, a new roof…), with the known change map. Same grid, sensor and header as the first
    date (its files are copied, then their pixels rewritten)."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    raster = out_dir / "ang20240615t183000_rfl_demo"
    for src, dst in ((scene.raster, raster), (Path(f"{scene.raster}.hdr"), Path(f"{raster}.hdr"))):
        shutil.copyfile(src, dst)
    cube = gdal.Open(str(scene.raster)).ReadAsArray().astype(np.float32)
    truth = gdal.Open(str(scene.truth)).ReadAsArray()
    prof = builtin_profiles()["aviris_ng"]
    lib_wl, spectra, rows = load_library()
    lib = {k: resample(lib_wl, v, np.asarray(prof.wavelength_nm), np.asarray(prof.fwhm_nm))
           for k, v in class_spectra(rows, spectra, rng).items()}
    side = max(4, cube.shape[1] // 10)
    spots = [(x, y) for y in range(0, cube.shape[1] - side + 1, side) for x in range(0, cube.shape[2] - side + 1, side)
             if len(np.unique(truth[y:y + side, x:x + side])) == 1]  # each block inside one object
    changed = np.zeros(truth.shape, np.uint8)
    done = []
    for i in rng.permutation(len(spots))[:blocks]:
        x, y = spots[i]
        was = scene.class_names[truth[y, x] - 1]
        now = str(rng.choice([c for c in scene.class_names if c not in (was, "road")]))
        bright = rng.normal(1.0, 0.06, (1, side, side)).astype(np.float32)
        cube[:, y:y + side, x:x + side] = lib[now][rng.integers(len(lib[now]))][:, None, None] * bright
        changed[y:y + side, x:x + side] = 1
        done.append((was, now, x, y, side))
    cube = cube * 1.04 + rng.normal(0, 1, cube.shape).astype(np.float32) * (0.002 + 0.01 * cube)
    ds = gdal.Open(str(raster), gdal.GA_Update)
    ds.WriteRaster(0, 0, ds.RasterXSize, ds.RasterYSize, np.clip(cube, 0, None).tobytes(), buf_type=gdal.GDT_Float32)
    ds = None
    change_truth = out_dir / "change_truth.tif"
    cds = gdal.GetDriverByName("GTiff").CreateCopy(str(change_truth), gdal.Open(str(scene.truth)))
    band = cds.GetRasterBand(1)
    band.DeleteNoDataValue()  # 0 is "no change" here, a valid value
    band.WriteArray(changed)
    band.SetRasterCategoryNames(["no change", "change"])
    cds = None
    return SecondDate(raster, change_truth, done)
