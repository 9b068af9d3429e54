"""`python3 build.py bench real-scenes`: SpecAware against RandomForest and SVM on real scenes from few labels.

Scenes (../shared/data): Samson (rock / tree / water, argmax of the abundances), ABU airport-1 and urban-2
(AVIRIS, target vs background). For 3 seeds, K = 2 and K = 6 labelled 3×3 px squares per class are drawn; every
other pixel of the reference map is the test set. Arms:
  (a) SpecAware fine-tuned (small preset, light head, frozen backbone) from the backbone this machine has;
  (b) the same after scene-adaptive MAE pre-training on that scene (--adapt-seconds, default 180);
  (c) RandomForest and SVM (RBF, standardised) from scikit-learn on the same training pixels.
Prints one table of OA, AA, κ and mIoU (mean ± std over seeds) and writes bench_out/real_scenes.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from osgeo import gdal  # noqa: E402

from engine.core.files import atomic_write_text  # noqa: E402
from engine.learn.metrics import score  # noqa: E402
from engine.learn.trainer import TrainConfig  # noqa: E402
from engine.service.jobs import call  # noqa: E402
from real_scenes import DATA, GT, abu, label_squares, samson, write_geotiff  # noqa: E402
from scenes import rect, write_polygons  # noqa: E402

SCENES = {"samson": samson, "abu-airport-1": lambda: abu("abu-airport-1"), "abu-urban-2": lambda: abu("abu-urban-2")}
METRICS = ("oa", "aa", "kappa", "miou")
ARM_A, ARM_B = "SpecAware (a) random init", "SpecAware (b) + scene MAE"


def specaware_arm(raster: Path, polygons: Path, truth_test: np.ndarray, names, seed: int, backbone: str,
                  train_cfg: TrainConfig, work: Path) -> dict:
    """Fine-tune (small preset, light head, no validation split) and classify, through the engine's jobs."""
    trained = call("finetune", raster=str(raster), polygons=str(polygons), class_field="class",
                   out=str(work / "models" / f"bench-{seed}"), preset="small", head="light", backbone=backbone,
                   val_fraction=0, epochs=train_cfg.epochs, window=train_cfg.window, batch_size=train_cfg.batch_size,
                   windows_per_epoch=train_cfg.windows_per_epoch, frozen_pool=train_cfg.frozen_pool,
                   lr=train_cfg.lr, seed=seed, overwrite=True)
    out = call("classify", raster=str(raster), out=str(work / "map"), model=trained["bundle"])
    pred = gdal.Open(out["outputs"][0]).ReadAsArray()
    return score(truth_test, pred, names)


def classic_arms(cube: np.ndarray, train: np.ndarray, truth_test: np.ndarray, names, seed: int) -> dict:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    X = cube.reshape(cube.shape[0], -1).T
    sel = train.ravel() > 0
    out = {}
    for arm, clf in (("RandomForest", RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=-1)),
                     ("SVM (RBF, scaled)", make_pipeline(StandardScaler(), SVC(kernel="rbf", gamma="scale")))):
        clf.fit(X[sel], train.ravel()[sel])
        out[arm] = score(truth_test, clf.predict(X).reshape(train.shape), names)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", nargs="+", default=list(SCENES))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--k", type=int, nargs="+", default=[2, 6])
    p.add_argument("--adapt-seconds", type=float, default=180.0)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--out", default=str(ROOT / "bench_out" / "real_scenes.json"))
    args = p.parse_args()
    if not DATA.exists():
        print(f"needs {DATA} (the project's shared fixtures), which is not on this machine")
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train_cfg = TrainConfig(epochs=args.epochs, window=32, batch_size=8, windows_per_epoch=64, frozen_pool=128,
                            lr=3e-3, patience=args.epochs)
    print(f"SpecAware: small preset, light head, frozen backbone, window 32 px, {args.epochs} epochs, "
          f"{train_cfg.frozen_pool} cached windows, CPU ({torch.get_num_threads()} threads)")
    print("Backbone (a): random initialisation — no pretrained SpecAware checkpoint is available on this machine")
    rows, seconds, adaptation = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.scenes:
            scene = SCENES[name]()
            raster = write_geotiff(tmp / f"{name}.tif", scene)
            print(f"\n{name}: {scene.cube.shape[2]}×{scene.cube.shape[1]} px, {scene.cube.shape[0]} bands; "
                  f"{scene.note}", flush=True)
            t0 = time.perf_counter()
            adapted = str(tmp / f"{name}-adapted.pth")  # `engine adapt`: the same path a user takes
            summary = call("adapt", raster=[str(raster)], out=adapted, minutes=args.adapt_seconds / 60,
                           backbone="random", preset="small", patch=32)
            adaptation[name] = summary
            print(f"  MAE adaptation: {summary['steps']} steps in {summary['seconds']} s, loss "
                  f"{summary['loss_first']:.4f} → {summary['loss_last']:.4f}", flush=True)
            for k in args.k:
                for seed in range(args.seeds):
                    squares = label_squares(scene.labels, per_class=k, size=3, seed=seed)
                    shapes = [(scene.class_names[c - 1], rect(x, y, x + 3, y + 3)) for c, x, y in squares]
                    polygons = write_polygons(tmp / f"{name}-{k}-{seed}.gpkg", shapes, gt=GT, epsg=32610)
                    train = np.zeros_like(scene.labels)
                    for c, x, y in squares:
                        train[y:y + 3, x:x + 3] = c
                    truth_test = np.where(train > 0, 0, scene.labels)
                    res = {}
                    for i, (arm, state) in enumerate(((ARM_A, "random"), (ARM_B, adapted))):
                        t = time.perf_counter()
                        res[arm] = specaware_arm(raster, polygons, truth_test, scene.class_names, seed, state,
                                                 train_cfg, tmp / f"{name}-{k}-{seed}-{i}")
                        seconds[f"{name} / {arm}"] = seconds.get(f"{name} / {arm}", 0.0) + time.perf_counter() - t
                    t = time.perf_counter()
                    res.update(classic_arms(scene.cube, train, truth_test, scene.class_names, seed))
                    seconds[f"{name} / classic"] = seconds.get(f"{name} / classic", 0.0) + time.perf_counter() - t
                    for arm, m in res.items():
                        rows.append({"scene": name, "k": k, "seed": seed, "arm": arm, **{x: m[x] for x in METRICS}})
                    print(f"  K={k} seed {seed}: " + ", ".join(f"{arm} mIoU {m['miou']:.3f}" for arm, m in res.items()),
                          flush=True)
            print(f"  scene total {time.perf_counter() - t0:.0f} s", flush=True)

    print("\n| scene | K | arm | OA | AA | κ | mIoU |\n|---|---|---|---|---|---|---|")
    table = []
    for name in args.scenes:
        for k in args.k:
            for arm in dict.fromkeys(r["arm"] for r in rows):
                sel = [r for r in rows if r["scene"] == name and r["k"] == k and r["arm"] == arm]
                stats = {x: (float(np.mean([r[x] for r in sel])), float(np.std([r[x] for r in sel]))) for x in METRICS}
                table.append({"scene": name, "k": k, "arm": arm, **{x: list(v) for x, v in stats.items()}})
                print(f"| {name} | {k} | {arm} | " + " | ".join(f"{100 * m:.1f} ± {100 * s:.1f}" if x != "kappa"
                                                               else f"{m:.3f} ± {s:.3f}"
                                                               for x, (m, s) in stats.items()) + " |")
    print("\nseconds per scene and arm (all K and seeds; the MAE adaptation is counted once per scene): " +
          ", ".join(f"{k}: {v:.0f}" for k, v in seconds.items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps({"rows": rows, "table": table, "seconds": seconds, "adaptation": adaptation,
                                       "settings": train_cfg.to_dict()}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
