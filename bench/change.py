"""`python3 build.py bench change`: SpecAware change (unsupervised, and supervised from N labelled pixels per class)
against change-vector analysis (CVA) + Otsu.

Pair: ../shared/data/change_landsat_taizhou (Landsat-7 ETM+ 2000 / 2003, 6 bands, sensor `others`, wavelengths
from the header). Reference: the pixels marked 255 in Taizhou_change.bmp (change) and Taizhou_unchanged.bmp (no
change). Scores: OA, κ and F1 of the change class on reference pixels not used for training. Unsupervised arms
threshold with Otsu; supervised SpecAware (N = 20 and 100 pixels per class, 3 seeds) at p > 0.5.
`--pair BEFORE AFTER CHANGE_MASK UNCHANGED_MASK` checks another pair with the same command.
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
from osgeo import gdal  # noqa: E402

from engine.core.files import atomic_write_text  # noqa: E402
from engine.learn.metrics import score  # noqa: E402
from engine.service.jobs import call  # noqa: E402
from engine.tasks.change.job import BINS  # noqa: E402
from engine.tasks.change.measures import otsu  # noqa: E402

TAIZHOU = (ROOT / ".." / "shared" / "data" / "change_landsat_taizhou").resolve()


def reference(change_mask: Path, unchanged_mask: Path) -> np.ndarray:
    """1 = no change, 2 = change, 0 = not a reference pixel."""
    ch = gdal.Open(str(change_mask)).ReadAsArray()
    un = gdal.Open(str(unchanged_mask)).ReadAsArray()
    ch, un = (a if a.ndim == 2 else a[0] for a in (ch, un))
    ref = np.zeros(ch.shape, np.uint8)
    ref[un == 255] = 1
    ref[ch == 255] = 2
    return ref


def cva(before: Path, after: Path, standardise: bool) -> np.ndarray:
    """Change-vector magnitude (optionally of per-date, per-band z-scores, which removes radiometric offsets
    between the dates), scaled by its 99th percentile, thresholded with Otsu: a 1 / 2 map."""
    a = gdal.Open(str(before)).ReadAsArray().astype(np.float64)
    b = gdal.Open(str(after)).ReadAsArray().astype(np.float64)
    if standardise:
        a, b = ((x - x.mean(axis=(1, 2), keepdims=True)) / x.std(axis=(1, 2), keepdims=True) for x in (a, b))
    mag = np.sqrt(((b - a) ** 2).sum(axis=0))
    mag = np.clip(mag / np.percentile(mag, 99), 0, 1)
    hist = np.bincount(np.minimum((mag * BINS).astype(int), BINS - 1).ravel(), minlength=BINS)
    return np.where(mag > otsu(hist), 2, 1)


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
    vds = None
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", nargs=4, metavar=("BEFORE", "AFTER", "CHANGE_MASK", "UNCHANGED_MASK"))
    p.add_argument("--preset", default="tiny")
    p.add_argument("--n", type=int, nargs="+", default=[20, 100], help="labelled pixels per class")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "bench_out" / "change.json"))
    args = p.parse_args()
    files = [Path(x) for x in args.pair] if args.pair else \
        [TAIZHOU / n for n in ("Taizhou_2000TM", "Taizhou_2003TM", "Taizhou_change.bmp", "Taizhou_unchanged.bmp")]
    if not files[0].exists():
        print(f"needs {files[0]} (the project's shared fixtures), which is not on this machine")
        return 2
    ref = reference(files[2], files[3])
    print(f"{files[0].name} → {files[1].name}: {(ref == 2).sum()} change and {(ref == 1).sum()} no-change "
          "reference pixels")
    rows = {}
    for label, std in (("CVA + Otsu (raw values)", False), ("CVA + Otsu (per-date z-scores)", True)):
        t = time.perf_counter()
        rows[label] = {**scores(ref, cva(files[0], files[1], std)), "seconds": round(time.perf_counter() - t, 2)}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        res = call("change", before=str(files[0]), after=str(files[1]), out=tmp, preset=args.preset,
                   backbone="random")
        change = gdal.Open(str(Path(tmp) / "change.tif")).ReadAsArray()
        pred = np.where(change == 1, 2, np.where(change == 0, 1, 0))
        rows[f"SpecAware unsupervised ({args.preset}, random init)"] = {
            **scores(ref, pred), "seconds": round(time.perf_counter() - t, 2), "threshold": res["threshold"],
            "shared_bands": res["shared_bands"]}
        for n in args.n:
            runs = []
            for seed in range(args.seeds):
                t = time.perf_counter()
                train = sample_pixels(ref, n, seed)
                points = write_points(Path(tmp) / f"points-{n}-{seed}.gpkg", train, files[0])
                call("finetune", raster=str(files[0]), polygons=str(points), class_field="class",
                     out=str(Path(tmp) / f"model-{n}-{seed}"), task="change", after=str(files[1]),
                     preset=args.preset, backbone="random", val_fraction=0, epochs=20, window=32, batch_size=8,
                     windows_per_epoch=64, frozen_pool=128, lr=3e-3, seed=seed, overwrite=True)
                out = Path(tmp) / f"out-{n}-{seed}"
                call("change", before=str(files[0]), after=str(files[1]), out=str(out),
                     model=str(Path(tmp) / f"model-{n}-{seed}"))
                change = gdal.Open(str(out / "change.tif")).ReadAsArray()
                pred = np.where(change == 1, 2, np.where(change == 0, 1, 0))
                runs.append({**scores(np.where(train > 0, 0, ref), pred), "seconds": time.perf_counter() - t})
            rows[f"SpecAware supervised, N={n} per class ({args.preset}, random init)"] = {
                k: float(np.mean([r[k] for r in runs])) for k in runs[0]} | {
                f"{k}_std": float(np.std([r[k] for r in runs])) for k in ("oa", "kappa", "f1_change")}
    print("\n| arm | OA | κ | F1 (change) | seconds per run |\n|---|---|---|---|---|")
    for arm, r in rows.items():
        std = (lambda k, scale=1: f" ± {scale * r[k + '_std']:.{1 if scale == 100 else 3}f}" if k + "_std" in r
               else "")
        print(f"| {arm} | {100 * r['oa']:.1f}{std('oa', 100)} | {r['kappa']:.3f}{std('kappa')} | "
              f"{r['f1_change']:.3f}{std('f1_change')} | {r['seconds']:.1f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps({"pair": [str(f) for f in files], "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
