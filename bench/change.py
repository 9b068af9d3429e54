"""`python3 build.py bench change`: SpecAware change detection against the classic methods, unsupervised and
from N labelled pixels per class.

Pairs: ../shared/data/change_landsat_taizhou (Landsat-7 ETM+ 2000 / 2003, 6 bands; reference: the pixels marked in
Taizhou_change.bmp / Taizhou_unchanged.bmp), and two synthetic pairs of the demo's scene generator with known
changed blocks, a new illumination and new noise: AVIRIS-NG on both dates, and AVIRIS-Classic before, AVIRIS-NG
after (every pixel is reference). Arms:
  classic, written here: raw CVA + Otsu; CVA on per-date z-scores + Otsu; IR-MAD as published (Nielsen 2007:
  variances 2(1 − ρ), χ² test at p = 0.001) and IR-MAD + Otsu on its χ² statistic (shared bands);
  the engine: `change --method cva | irmad | specaware` (the default), significance test at p = 0.001;
  supervised: `finetune --task change` from N = 20 and 100 labelled pixels per class, then `change --model`.
OA, κ and F1 of the change class on reference pixels not used for training; supervised arms mean ± std over seeds.
`--pair BEFORE AFTER CHANGE_MASK UNCHANGED_MASK` adds another pair with the same command.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from osgeo import gdal  # noqa: E402

from engine.core.files import atomic_write_text  # noqa: E402
from engine.io.raster import RasterSource  # noqa: E402
from engine.io.synthetic import make_change_pair  # noqa: E402
from engine.learn.mad import chi2_magnitude, otsu  # noqa: E402
from engine.learn.metrics import score  # noqa: E402
from engine.service.jobs import call  # noqa: E402
from engine.tasks.change.measures import shared_bands  # noqa: E402

TAIZHOU = (ROOT / ".." / "shared" / "data" / "change_landsat_taizhou").resolve()
BINS = 1024


def reference(change_mask: Path, unchanged_mask: Path) -> np.ndarray:
    """1 = no change, 2 = change, 0 = not a reference pixel."""
    ch = gdal.Open(str(change_mask)).ReadAsArray()
    un = gdal.Open(str(unchanged_mask)).ReadAsArray()
    ch, un = (a if a.ndim == 2 else a[0] for a in (ch, un))
    ref = np.zeros(ch.shape, np.uint8)
    ref[un == 255] = 1
    ref[ch == 255] = 2
    return ref


def shared_values(before: Path, after: Path) -> tuple[np.ndarray, np.ndarray]:
    """Both dates' values [pixels, shared bands] (same grid), as the classic methods need the same bands."""
    a, b = RasterSource.open(before), RasterSource.open(after)
    ia, ib = shared_bands(a.wavelength, b.wavelength, a.fwhm)
    va, vb = a.read(0, 0, a.width, a.height)[0], b.read(0, 0, b.width, b.height)[0]
    return (va[ia].reshape(len(ia), -1).T.astype(np.float64), vb[ib].reshape(len(ib), -1).T.astype(np.float64))


def otsu_split(values: np.ndarray) -> np.ndarray:
    """Otsu on values scaled by their 99th percentile: a 1 / 2 map."""
    v = np.clip(values / max(np.percentile(values, 99), 1e-12), 0, 1)
    return np.where(v > otsu(np.bincount(np.minimum((v * BINS).astype(int), BINS - 1), minlength=BINS)), 2, 1)


def cva(a: np.ndarray, b: np.ndarray, standardise: bool) -> np.ndarray:
    if standardise:
        a, b = ((x - x.mean(axis=0)) / x.std(axis=0) for x in (a, b))
    return otsu_split(np.sqrt(((b - a) ** 2).sum(axis=1)))


def irmad_nielsen(a: np.ndarray, b: np.ndarray, iterations: int = 50) -> tuple[np.ndarray, int]:
    """The published IR-MAD: weighted CCA, MAD variances 2(1 − ρ), weights = P(no change); (χ² statistic, dof)."""
    n, p = a.shape
    w = np.ones(n)
    rho_before = None
    for _ in range(iterations):
        ab = np.hstack([a, b])
        mean = (w[:, None] * ab).sum(0) / w.sum()
        cov = (w[:, None] * (ab - mean)).T @ (ab - mean) / w.sum()
        ridge = 1e-9 * np.trace(cov) / len(cov) * np.eye(p)  # shared bands may repeat one band of the other date
        lx, ly = np.linalg.cholesky(cov[:p, :p] + ridge), np.linalg.cholesky(cov[p:, p:] + ridge)
        u, rho, vt = np.linalg.svd(np.linalg.solve(lx, cov[:p, p:]) @ np.linalg.inv(ly).T)
        mad = (a - mean[:p]) @ np.linalg.solve(lx.T, u) - (b - mean[p:]) @ np.linalg.solve(ly.T, vt.T)
        z = (mad ** 2 / np.maximum(2 * (1 - rho), 1e-12)).sum(axis=1)
        w = 10 ** -chi2_magnitude(torch.from_numpy(z), len(rho)).numpy()
        if rho_before is not None and np.abs(rho - rho_before).max() < 1e-5:
            break
        rho_before = rho
    return z, len(rho)


def scores(ref: np.ndarray, pred: np.ndarray) -> dict:
    s = score(ref, pred, ["no change", "change"])
    return {"oa": s["oa"], "kappa": s["kappa"], "f1_change": s["per_class"]["change"]["f1"]}


def sample_pixels(ref: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n reference pixels per class (1 = no change, 2 = change), seeded; the rest stays for testing."""
    rng = np.random.default_rng(seed)
    out = np.zeros_like(ref)
    for c in (1, 2):
        idx = rng.choice(np.flatnonzero(ref.ravel() == c), n, replace=False)
        out.ravel()[idx] = c
    return out


def write_points(path: Path, train: np.ndarray, raster: Path) -> Path:
    """The sampled pixels as labelled points (pixel centres) in the raster's CRS."""
    from osgeo import ogr, osr
    ds = gdal.Open(str(raster))
    gt = ds.GetGeoTransform()
    vds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    lyr = vds.CreateLayer("samples", osr.SpatialReference(wkt=ds.GetProjection()), ogr.wkbPoint)
    lyr.CreateField(ogr.FieldDefn("class", ogr.OFTString))
    for y, x in zip(*np.nonzero(train)):
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetField("class", "change" if train[y, x] == 2 else "no change")
        p = ogr.Geometry(ogr.wkbPoint)
        p.AddPoint_2D(*gdal.ApplyGeoTransform(gt, x + 0.5, y + 0.5))
        f.SetGeometry(p)
        lyr.CreateFeature(f)
    del lyr, vds
    return path


def change_map(out: Path) -> np.ndarray:
    c = gdal.Open(str(out / "change.tif")).ReadAsArray()
    return np.where(c == 1, 2, np.where(c == 0, 1, 0))


def run_pair(name: str, before: Path, after: Path, ref: np.ndarray, args, tmp: Path) -> dict:
    shape = ref.shape
    a, b = shared_values(before, after)
    rows = {}
    for label, fn in (("raw CVA + Otsu", lambda: cva(a, b, False)), ("CVA z-scores + Otsu", lambda: cva(a, b, True))):
        t = time.perf_counter()
        rows[label] = {**scores(ref, fn().reshape(shape)), "seconds": round(time.perf_counter() - t, 2)}
    t = time.perf_counter()
    z, dof = irmad_nielsen(a, b)
    mag = chi2_magnitude(torch.from_numpy(z), dof).numpy()
    rows["IR-MAD (Nielsen, χ² p < 0.001)"] = {**scores(ref, np.where(mag > 3, 2, 1).reshape(shape)),
                                              "seconds": round(time.perf_counter() - t, 2)}
    rows["IR-MAD (Nielsen) + Otsu"] = {**scores(ref, otsu_split(np.log1p(z)).reshape(shape)), "seconds": 0.0}
    for method in ("cva", "irmad", "specaware"):
        t = time.perf_counter()
        out = tmp / f"{name}-{method}"
        r = call("change", before=str(before), after=str(after), out=str(out), method=method, preset=args.preset)
        label = f"engine --method {method}" + (" (default)" if method == "specaware" else "")
        rows[label] = {**scores(ref, change_map(out)), "seconds": round(time.perf_counter() - t, 2),
                       "dof": r["magnitude"].split("(")[-1].split(" degrees")[0]}
    for n in args.n:
        runs = []
        for seed in range(args.seeds):
            t = time.perf_counter()
            train = sample_pixels(ref, n, seed)
            points = write_points(tmp / f"{name}-points-{n}-{seed}.gpkg", train, before)
            model = tmp / f"{name}-model-{n}-{seed}"
            call("finetune", raster=str(before), polygons=str(points), class_field="class", out=str(model),
                 task="change", after=str(after), preset=args.preset, val_fraction=0, seed=seed, overwrite=True)
            out = tmp / f"{name}-out-{n}-{seed}"
            call("change", before=str(before), after=str(after), out=str(out), model=str(model))
            runs.append({**scores(np.where(train > 0, 0, ref), change_map(out)),
                         "seconds": time.perf_counter() - t})
        rows[f"supervised, N={n} per class"] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]} | {
            f"{k}_std": float(np.std([r[k] for r in runs])) for k in ("oa", "kappa", "f1_change")}
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", nargs=4, metavar=("BEFORE", "AFTER", "CHANGE_MASK", "UNCHANGED_MASK"))
    p.add_argument("--preset", default="tiny")
    p.add_argument("--n", type=int, nargs="+", default=[20, 100], help="labelled pixels per class")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "bench_out" / "change.json"))
    args = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pairs = []
        if (TAIZHOU / "Taizhou_2000TM").exists():
            pairs.append(("taizhou", TAIZHOU / "Taizhou_2000TM", TAIZHOU / "Taizhou_2003TM",
                          reference(TAIZHOU / "Taizhou_change.bmp", TAIZHOU / "Taizhou_unchanged.bmp")))
        else:
            print(f"skipping Taizhou: needs {TAIZHOU} (the project's shared fixtures), which is not on this machine")
        if args.pair:
            pairs.append(("pair", Path(args.pair[0]), Path(args.pair[1]), reference(Path(args.pair[2]),
                                                                                     Path(args.pair[3]))))
        for name, sensors, seed in (("synthetic-ng", ("aviris_ng", "aviris_ng"), 0),
                                    ("synthetic-avc-ng", ("aviris_classic", "aviris_ng"), 1)):
            syn = make_change_pair(tmp / name, size=96, seed=seed, sensors=sensors)
            pairs.append((name, syn.before, syn.after, gdal.Open(str(syn.change)).ReadAsArray()))
        for name, before, after, ref in pairs:
            print(f"\n{name}: {(ref == 2).sum()} change and {(ref == 1).sum()} no-change reference pixels",
                  flush=True)
            results[name] = run_pair(name, before, after, ref, args, tmp)
            print("| arm | OA | κ | F1 (change) | s |\n|---|---|---|---|---|")
            for arm, r in results[name].items():
                std = (lambda k: f" ± {r[k + '_std']:.3f}" if k + "_std" in r else "")
                print(f"| {arm} | {100 * r['oa']:.1f} | {r['kappa']:.3f}{std('kappa')} | "
                      f"{r['f1_change']:.3f}{std('f1_change')} | {r['seconds']:.1f} |", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.out), json.dumps(results, indent=1))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
