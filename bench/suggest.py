"""`python3 build.py bench suggest`: do the points `suggest` proposes raise κ more than as many random labels?

On the scenes of `bench real-scenes`, each seed starts from 2 labelled 3×3 px squares per class and the default
fine-tuning. Then two rounds: `suggest` proposes 5 points per class, they are labelled from the reference map
and fine-tuning runs again with them (`--samples`); the random arm labels as many pixels drawn uniformly from
the unlabelled ones. κ on every pixel not labelled in any arm, mean ± std over seeds; writes bench_out/suggest.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import numpy as np  # noqa: E402
from osgeo import gdal, ogr  # noqa: E402

from engine.core.files import atomic_write_text  # noqa: E402
from engine.learn.metrics import score  # noqa: E402
from engine.service.jobs import call  # noqa: E402
from _scenes import SCENES, load_scene, write_points  # noqa: E402
from real_scenes import DATA as SHARED  # noqa: E402
from real_scenes import label_squares  # noqa: E402
from scenes import rect, write_polygons  # noqa: E402

ARMS = ("suggest", "random")


def suggested_pixels(path: Path, gt) -> list[tuple[int, int]]:
    """(x, y) pixel of every point `suggest` wrote (north-up grids: the bench's scenes)."""
    ds = ogr.Open(str(path))
    out = []
    for f in ds.GetLayer(0):
        g = f.GetGeometryRef()
        out.append((int((g.GetX() - gt[0]) / gt[1]), int((g.GetY() - gt[3]) / gt[5])))
    return out


def kappa(scene, bundle: str, out: Path, test: np.ndarray) -> float:
    res = call("classify", raster=str(scene.raster), out=str(out), model=bundle)
    return score(test, gdal.Open(res["outputs"][0]).ReadAsArray(), scene.names)["kappa"]


def run_seed(scene, seed: int, per_round: int, rounds: int, work: Path) -> dict:
    """κ after 0, 1, … rounds for both arms; the test pixels are those no arm labelled."""
    squares = label_squares(scene.labels, per_class=2, size=3, seed=seed)
    polygons = write_polygons(work / "squares.gpkg", [(scene.names[c - 1], rect(x, y, x + 3, y + 3))
                                                      for c, x, y in squares], gt=scene.gt, epsg=scene.epsg)
    labelled = np.zeros(scene.labels.shape, bool)
    for _, x, y in squares:
        labelled[y:y + 3, x:x + 3] = True
    rng = np.random.default_rng(seed)
    points = {arm: [] for arm in ARMS}
    bundles = {arm: [] for arm in ARMS}

    def tune(arm, i):
        samples = write_points(work / f"{arm}-{i}.gpkg", scene, points[arm]) if points[arm] else None
        r = call("finetune", raster=str(scene.raster), polygons=str(polygons), class_field="class",
                 out=str(work / "models" / f"{arm}-{i}"), seed=seed, overwrite=True,
                 **({"samples": str(samples)} if samples else {}))
        bundles[arm].append(r["bundle"])

    tune("suggest", 0)
    bundles["random"].append(bundles["suggest"][0])
    for i in range(1, rounds + 1):
        out = work / f"next-{i}.gpkg"
        call("suggest", raster=str(scene.raster), model=bundles["suggest"][-1], count=per_round, out=str(out))
        points["suggest"] += [(scene.names[scene.labels[y, x] - 1], x, y) for x, y in suggested_pixels(out, scene.gt)]
        free = np.flatnonzero(~labelled.ravel())
        taken = {(x, y) for _, x, y in points["random"]}
        picks = [divmod(int(j), scene.labels.shape[1]) for j in rng.permutation(free)]
        picks = [(x, y) for y, x in picks if (x, y) not in taken][:per_round]
        points["random"] += [(scene.names[scene.labels[y, x] - 1], x, y) for x, y in picks]
        for arm in ARMS:
            tune(arm, i)
    test = scene.labels.copy()
    test[labelled] = 0
    for arm in ARMS:
        for _, x, y in points[arm]:
            test[y, x] = 0
    return {arm: [kappa(scene, b, work / f"map-{arm}-{i}", test) for i, b in enumerate(bundles[arm])] for arm in ARMS}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", nargs="+", default=list(SCENES), choices=SCENES)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--per-class", type=int, default=5, help="points per class and round")
    p.add_argument("--out", default=str(ROOT / "bench_out" / "suggest.json"))
    args = p.parse_args()
    os.environ.setdefault("SPECAWARE_DATA_DIR", tempfile.mkdtemp(prefix="specaware-bench-"))
    if not SHARED.exists() and set(args.scenes) - {"demo"}:
        print(f"needs {SHARED} (the project's shared fixtures), which is not on this machine")
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.scenes:
            scene = load_scene(name, tmp)
            per_round = args.per_class * len(scene.names)
            t0 = time.perf_counter()
            for seed in range(args.seeds):
                work = tmp / f"{name}-{seed}"
                work.mkdir()
                res = run_seed(scene, seed, per_round, args.rounds, work)
                rows.append({"scene": name, "seed": seed, **res})
                print(f"{name} seed {seed}: " + "; ".join(f"{arm} κ " + " → ".join(f"{k:.3f}" for k in res[arm])
                                                          for arm in ARMS), flush=True)
            print(f"  {name}: {per_round} points a round, {time.perf_counter() - t0:.0f} s", flush=True)
    print("\n| scene | points a round | arm | " + " | ".join(f"κ after {i} rounds" for i in range(args.rounds + 1)) +
          " |\n|---|---|---|" + "---|" * (args.rounds + 1))
    summary = []
    for name in args.scenes:
        sel = [r for r in rows if r["scene"] == name]
        for arm in ARMS:
            k = np.array([r[arm] for r in sel])
            summary.append({"scene": name, "arm": arm, "mean": k.mean(0).tolist(), "std": k.std(0).tolist()})
            print(f"| {name} | {args.per_class} per class | {arm} | " +
                  " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(k.mean(0), k.std(0))) + " |")
    gains = {arm: np.mean([r[arm][-1] - r[arm][0] for r in rows]) for arm in ARMS}
    print(f"\nmean κ gain after {args.rounds} rounds over all scenes and seeds: " +
          ", ".join(f"{arm} {g:+.3f}" for arm, g in gains.items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps({"rows": rows, "table": summary, "gains": gains, "settings": vars(args)},
                                      indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
