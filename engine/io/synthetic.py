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
from dataclasses import dataclass, field
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
    world: World | None = field(default=None, repr=False)  # what was drawn: a second date can be drawn from it
    sensor: str = "aviris_ng"
    labels: np.ndarray | None = field(default=None, repr=False)  # the known class map as written to `truth`


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


def object_spectra(objects, lib_spectra: dict[str, np.ndarray], rng) -> list[np.ndarray]:
    """One library-grid spectrum per object: a mix of two of its class's materials."""
    out = []
    for cls, *_ in objects:
        a, b = lib_spectra[cls][rng.integers(len(lib_spectra[cls]), size=2)]
        mix = rng.uniform(0.6, 1.0)
        out.append(mix * a + (1 - mix) * b)
    return out


def render(objects, spectra: list[np.ndarray], names: list[str], size: int, brightness: np.ndarray,
           noise_rng) -> tuple[np.ndarray, np.ndarray]:
    """([size, size, bands] reflectance, [size, size] class ids 1…K): objects drawn at 2× in order, averaged
    (boundary pixels mix their neighbours), with per-pixel brightness and noise that grows with the signal."""
    S = 2 * size
    fine_label = np.zeros((S, S), np.uint8)
    fine_cube = np.zeros((S, S, spectra[0].shape[0]), np.float32)
    for (cls, x0, y0, x1, y1), base in zip(objects, spectra):
        sl = np.s_[2 * y0:2 * y1, 2 * x0:2 * x1]
        fine_cube[sl] = base[None, None, :] * brightness[sl][..., None]
        fine_label[sl] = names.index(cls) + 1
    cube = fine_cube.reshape(size, 2, size, 2, -1).mean(axis=(1, 3))
    cube += noise_rng.normal(0, 1, cube.shape).astype(np.float32) * (0.002 + 0.01 * cube)
    votes = np.stack([(fine_label == c).reshape(size, 2, size, 2).sum(axis=(1, 3)) for c in range(1, len(names) + 1)])
    return np.clip(cube, 0, None), (votes.argmax(axis=0) + 1).astype(np.uint8)


SENSOR_FILES = {"aviris_ng": "ang20231102t183000_rfl_demo", "aviris_classic": "f231102t01p00r01_refl_demo"}


def write_envi(path: Path, cube: np.ndarray, profile_key: str, gt, srs) -> Path:
    """[size, size, bands] reflectance as a BIL ENVI file with the sensor's band table; bands beyond the library's
    range (and the sensor's water-vapour bands) flagged bad in `bbl`."""
    prof = builtin_profiles()[profile_key]
    centers, fwhm = np.asarray(prof.wavelength_nm), np.asarray(prof.fwhm_nm)
    size = cube.shape[0]
    ds = gdal.GetDriverByName("ENVI").Create(str(path), size, size, len(centers), gdal.GDT_Float32,
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
                    "data_ignore_value": "-9999", "sensor_type": f"{prof.name} (synthetic demo)"}, "ENVI")
    ds.WriteRaster(0, 0, size, size, np.ascontiguousarray(cube.transpose(2, 0, 1)).tobytes(),
                   buf_type=gdal.GDT_Float32)
    return path


def write_classes(path: Path, labels: np.ndarray, names: list[str], gt, srs) -> Path:
    """A single-band class map (0 = no data) with its category names."""
    ds = gdal.GetDriverByName("GTiff").Create(str(path), labels.shape[1], labels.shape[0], 1, gdal.GDT_Byte)
    ds.SetGeoTransform(gt)
    ds.SetProjection(srs.ExportToWkt())
    ds.GetRasterBand(1).WriteArray(labels)
    ds.GetRasterBand(1).SetNoDataValue(0)
    ds.GetRasterBand(1).SetRasterCategoryNames(["no data", *names])
    return path


@dataclass
class World:
    """The scene's ingredients before rendering, so a second date (another sensor, some objects changed) can be
    drawn from the same objects."""

    objects: list
    spectra: list[np.ndarray]  # on the library's wavelength grid
    materials: dict[str, np.ndarray]  # library spectra of each class, for objects drawn later
    names: list[str]
    size: int
    brightness: np.ndarray  # [2·size, 2·size] surface texture, the same on every date
    lib_wl: np.ndarray
    gt: tuple
    srs: osr.SpatialReference


def make_world(size: int, gsd: float, rng) -> World:
    lib_wl, spectra, rows = load_library()
    lib = class_spectra(rows, spectra, rng)
    objects = layout(size, rng)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32611)
    return World(objects, object_spectra(objects, lib, rng), lib, sorted(CLASSES), size,
                 rng.normal(1.0, 0.06, (2 * size, 2 * size)).astype(np.float32), lib_wl,
                 (500000.0, gsd, 0.0, 3810000.0, 0.0, -gsd), srs)


def draw(world: World, profile_key: str, rng, objects=None, spectra=None) -> tuple[np.ndarray, np.ndarray]:
    """The world (or changed objects of it) seen by a sensor: spectra resampled to its bands, then rendered."""
    prof = builtin_profiles()[profile_key]
    banded = resample(world.lib_wl, np.stack(spectra or world.spectra), np.asarray(prof.wavelength_nm),
                      np.asarray(prof.fwhm_nm))
    return render(objects or world.objects, list(banded), world.names, world.size, world.brightness, rng)


def make_scene(out_dir: Path, size: int = 128, gsd: float = 3.0, seed: int = 0,
               sensor: str = "aviris_ng") -> Scene:
    """Write the scene as sensor-named ENVI, the training polygons as GPKG and the known class map."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    world = make_world(size, gsd, rng)
    cube, truth = draw(world, sensor, rng)
    raster = write_envi(out_dir / SENSOR_FILES[sensor], cube, sensor, world.gt, world.srs)
    truth_path = write_classes(out_dir / "truth.tif", truth, world.names, world.gt, world.srs)
    polygons = out_dir / "training.gpkg"
    write_training_polygons(polygons, world.objects, world.gt, world.srs, rng)
    return Scene(raster, polygons, truth_path, world.names, world, sensor, truth)


@dataclass
class ChangePair:
    before: Path
    after: Path
    change: Path  # the known change: 1 = no change, 2 = change (0 = no data, as in every class map here)
    blocks: list[tuple[str, str, int, int, int]]  # (from class, to class, x0, y0, side) in px


def changed_ground(world: World, labels: np.ndarray, n_blocks: int, rng) -> tuple[list, list, list]:
    """The world's objects and spectra with `n_blocks` squares turned into another class (new buildings, cleared
    fields), each over ground of another class; and the blocks as (from class, to class, x0, y0, side)."""
    objects, spectra, blocks = list(world.objects), list(world.spectra), []
    side = max(6, world.size // 8)
    for _ in range(n_blocks):
        x0, y0 = (int(v) for v in rng.integers(2, world.size - side - 2, 2))
        was = world.names[np.bincount(labels[y0:y0 + side, x0:x0 + side].ravel()).argmax() - 1]
        now = str(rng.choice([c for c in world.names if c not in ("road", was)]))
        objects.append((now, x0, y0, x0 + side, y0 + side))
        spectra.append(object_spectra([(now,)], world.materials, rng)[0])
        blocks.append((was, now, x0, y0, side))
    return objects, spectra, blocks


def second_look(world: World, labels: np.ndarray, sensor: str, n_blocks: int, rng) -> tuple[np.ndarray, np.ndarray,
                                                                                             list]:
    """(cube, known change 1/2, blocks): the world flown again by `sensor` with some ground changed, under other
    illumination (a smooth per-band gain and an offset) and with new noise."""
    objects, spectra, blocks = changed_ground(world, labels, n_blocks, rng)
    after, _ = draw(world, sensor, rng, objects, spectra)
    gain = 1 + 0.08 * np.sin(np.linspace(0, 3 * np.pi, after.shape[-1]))[None, None, :] + rng.uniform(-0.05, 0.05)
    after = np.clip(after * gain.astype(np.float32) + np.float32(rng.uniform(0.0, 0.01)), 0, None)
    change = np.ones((world.size, world.size), np.uint8)
    for _, _, x0, y0, side in blocks:
        change[y0:y0 + side, x0:x0 + side] = 2
    return after, change, blocks


def make_change_pair(out_dir: Path, size: int = 96, gsd: float = 3.0, seed: int = 0, sensors=("aviris_ng",
                                                                                                "aviris_ng"),
                     n_blocks: int = 4) -> ChangePair:
    """Two dates of a new synthetic scene, seen by the same or two sensors, with `n_blocks` changed squares
    (`second_look`). Writes both rasters and the known change."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    world = make_world(size, gsd, rng)
    before, labels = draw(world, sensors[0], rng)
    after, change, blocks = second_look(world, labels, sensors[1], n_blocks, rng)
    a = write_envi(out_dir / ("before_" + SENSOR_FILES[sensors[0]]), before, sensors[0], world.gt, world.srs)
    b = write_envi(out_dir / ("after_" + SENSOR_FILES[sensors[1]]), after, sensors[1], world.gt, world.srs)
    truth = write_classes(out_dir / "change_truth.tif", change, ["no change", "change"], world.gt, world.srs)
    return ChangePair(a, b, truth, blocks)


def make_second_date(scene: Scene, out_dir: Path, seed: int = 1, n_blocks: int = 4) -> ChangePair:
    """The demo scene flown again a year later by its sensor (`second_look`), on the same grid: the pair and
    the known change."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    world = scene.world
    after, change, blocks = second_look(world, scene.labels, scene.sensor, n_blocks, rng)
    name = SENSOR_FILES[scene.sensor].replace("231102", "240615")  # the file name says the date and the sensor
    b = write_envi(out_dir / name, after, scene.sensor, world.gt, world.srs)
    truth = write_classes(out_dir / "change_truth.tif", change, ["no change", "change"], world.gt, world.srs)
    return ChangePair(scene.raster, b, truth, blocks)


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
