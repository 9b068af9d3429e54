"""`python3 build.py bench real-scenes`: the default fine-tuning against classic classifiers from few labels.

Scenes: Samson (rock / tree / water, argmax of the abundances), ABU airport-1 and urban-2 (AVIRIS, target vs
background) from ../shared/data, and the demo's synthetic AVIRIS-NG scene (its known map). For K labelled 3×3 px
squares per class (K = 2, 6, 20) and 5 seeds, every other pixel of the reference map is the test set. Arms:
  default     `finetune` with nothing but the raster, the squares and the seed (what the dock's Fine-tune runs):
              the linear head on frozen per-pixel SpecAware features, then `classify`;
  levers      the default plus one thing each: 3×3 smoothing of its probabilities; one round of self-training
              (the 10 % most confident unlabelled pixels of each predicted class as extra labels); the backbone
              after scene-adaptive MAE (`adapt`, --adapt-seconds); the head (linear or light) with the better
              validation κ;
  heads       the light head and the paper's UPerNet head (tiny preset, frozen backbone; window 32 px, 20 epochs
              of 64 windows, 128 cached windows, lr 3e-3: the default 64 px × 40 epochs take 6–8 min a run on
              this shared 2-core machine);
  classic     RandomForest and SVM (RBF, standardised) on the raw spectra, and an SVM on 30 PCA components with
              their 5×5 neighbourhood means (spatial-spectral).
Prints one table of OA, AA, κ and mIoU (mean ± std over seeds) and writes bench_out/real_scenes.json.
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
import torch  # noqa: E402
from osgeo import gdal  # noqa: E402

from _scenes import SCENES, Scene, load_scene, write_points  # noqa: E402
from engine.core.files import atomic_write_text  # noqa: E402
from engine.learn.metrics import score  # noqa: E402
from engine.service.jobs import call  # noqa: E402
from real_scenes import DATA, label_squares  # noqa: E402
from scenes import rect, write_polygons  # noqa: E402

METRICS = ("oa", "aa", "kappa", "miou")
DEFAULT = "SpecAware default (linear head)"
SMOOTH, SELF, MAE, CHOSEN = ("+ 3×3 probability smoothing", "+ self-training", "+ scene MAE backbone",
                             "head chosen by validation κ")
LIGHT, UPERNET = "SpecAware light head", "SpecAware UPerNet head"
CLASSIC = ("RandomForest", "SVM (RBF, scaled)", "SVM on PCA-30 + 5×5 means")
TRAINED_HEAD = dict(window=32, epochs=20, windows_per_epoch=64, frozen_pool=128, lr=3e-3, batch_size=8)
ARM_KEYS = {"default": [DEFAULT], "smooth": [SMOOTH], "self": [SELF], "mae": [MAE], "light": [LIGHT, CHOSEN],
            "upernet": [UPERNET], "classic": list(CLASSIC)}


def map_of(raster: Path, bundle: str, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """(classes [H, W], probabilities [K, H, W]) of `classify` with the bundle."""
    res = call("classify", raster=str(raster), out=str(out), model=bundle, probabilities=True)
    return gdal.Open(res["outputs"][0]).ReadAsArray(), gdal.Open(res["outputs"][2]).ReadAsArray()


def smooth(probs: np.ndarray) -> np.ndarray:
    """3×3 mean of each class's probability (edges replicated), then the most probable class."""
    p = np.pad(np.nan_to_num(probs), ((0, 0), (1, 1), (1, 1)), mode="edge")
    H, W = probs.shape[1:]
    mean = sum(p[:, dy:dy + H, dx:dx + W] for dy in range(3) for dx in range(3)) / 9
    return mean.argmax(axis=0) + 1


def pseudo_labels(scene: Scene, classes: np.ndarray, probs: np.ndarray, train: np.ndarray, share=0.1):
    """The `share` most confident unlabelled pixels of each predicted class: (class name, x, y)."""
    conf = np.nan_to_num(probs).max(axis=0)
    out = []
    for c in range(1, len(scene.names) + 1):
        ys, xs = np.nonzero((classes == c) & (train == 0))
        if len(ys) == 0:
            continue
        top = np.argsort(-conf[ys, xs])[:max(1, int(share * len(ys)))]
        out += [(scene.names[c - 1], int(xs[i]), int(ys[i])) for i in top]
    return out


def specaware_arms(scene: Scene, polygons: Path, train: np.ndarray, truth_test: np.ndarray, seed: int,
                   arms: set[str], adapted: str | None, work: Path, seconds: dict) -> dict:
    """Every SpecAware arm asked for, through the engine's jobs as a user would run them."""
    res = {}

    def timed(arm, fn):
        t = time.perf_counter()
        out = fn()
        seconds[f"{scene.name} / {arm}"] = seconds.get(f"{scene.name} / {arm}", 0.0) + time.perf_counter() - t
        return out

    def tune(tag, **params):
        return call("finetune", raster=str(scene.raster), polygons=str(polygons), class_field="class",
                    out=str(work / "models" / tag), seed=seed, overwrite=True, **params)

    trained = timed(DEFAULT, lambda: tune("default"))
    classes, probs = timed(DEFAULT, lambda: map_of(scene.raster, trained["bundle"], work / "default"))
    res[DEFAULT] = score(truth_test, classes, scene.names)
    if "smooth" in arms:
        res[SMOOTH] = score(truth_test, smooth(probs), scene.names)
    if "self" in arms:
        points = write_points(work / "pseudo.gpkg", scene, pseudo_labels(scene, classes, probs, train))
        again = timed(SELF, lambda: tune("self", samples=str(points)))
        res[SELF] = score(truth_test, timed(SELF, lambda: map_of(scene.raster, again["bundle"], work / "self"))[0],
                          scene.names)
    if "mae" in arms and adapted:
        m = timed(MAE, lambda: tune("mae", backbone=adapted))
        res[MAE] = score(truth_test, map_of(scene.raster, m["bundle"], work / "mae")[0], scene.names)
    for key, arm, head in (("light", LIGHT, "light"), ("upernet", UPERNET, "upernet")):
        if key in arms:
            m = timed(arm, lambda: tune(head, head=head, **TRAINED_HEAD))
            res[arm] = score(truth_test, timed(arm, lambda: map_of(scene.raster, m["bundle"], work / head))[0],
                             scene.names)
            if key == "light":
                kappa = lambda r: (r.get("validation") or {}).get("kappa") or -1.0  # noqa: E731
                res[CHOSEN] = res[LIGHT] if kappa(m) > kappa(trained) else res[DEFAULT]
    return res


def pca_neighbourhood(cube: np.ndarray, components: int = 30, size: int = 5) -> np.ndarray:
    """Pixels × (PCA components and their size×size means): the spatial-spectral classic's features."""
    from sklearn.decomposition import PCA
    C, H, W = cube.shape
    z = PCA(min(components, C), random_state=0).fit_transform(cube.reshape(C, -1).T).T.reshape(-1, H, W)
    pad = np.pad(z, ((0, 0), (size // 2,) * 2, (size // 2,) * 2), mode="reflect")
    means = sum(pad[:, dy:dy + H, dx:dx + W] for dy in range(size) for dx in range(size)) / size ** 2
    return np.concatenate([z, means]).reshape(2 * len(z), -1).T


def classic_arms(scene: Scene, train: np.ndarray, truth_test: np.ndarray, seed: int) -> dict:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    X = scene.cube.reshape(scene.cube.shape[0], -1).T
    sel = train.ravel() > 0
    out = {}
    for arm, clf, feats in (
            (CLASSIC[0], RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=1), X),
            (CLASSIC[1], make_pipeline(StandardScaler(), SVC(kernel="rbf", gamma="scale")), X),
            (CLASSIC[2], make_pipeline(StandardScaler(), SVC(kernel="rbf", gamma="scale")),
             pca_neighbourhood(scene.cube))):
        clf.fit(feats[sel], train.ravel()[sel])
        out[arm] = score(truth_test, clf.predict(feats).reshape(train.shape), scene.names)
    return out


def table(rows: list[dict], scenes, ks) -> list[dict]:
    print("\n| scene | K | arm | OA | AA | κ | mIoU |\n|---|---|---|---|---|---|---|")
    out = []
    for name in scenes:
        for k in ks:
            for arm in dict.fromkeys(r["arm"] for r in rows):
                sel = [r for r in rows if r["scene"] == name and r["k"] == k and r["arm"] == arm]
                if not sel:
                    continue
                stats = {x: (float(np.mean([r[x] for r in sel])), float(np.std([r[x] for r in sel])))
                         for x in METRICS}
                out.append({"scene": name, "k": k, "arm": arm, "runs": len(sel),
                            **{x: list(v) for x, v in stats.items()}})
                print(f"| {name} | {k} | {arm} | " + " | ".join(
                    f"{m:.3f} ± {s:.3f}" if x == "kappa" else f"{100 * m:.1f} ± {100 * s:.1f}"
                    for x, (m, s) in stats.items()) + " |")
    return out


def verdict(summary: list[dict]) -> list[str]:
    """Per scene and K: the default's κ against the best classic arm's."""
    lines = []
    for row in (r for r in summary if r["arm"] == DEFAULT):
        classic = [r for r in summary if r["scene"] == row["scene"] and r["k"] == row["k"] and r["arm"] in CLASSIC]
        if classic:
            best = max(classic, key=lambda r: r["kappa"][0])
            d = row["kappa"][0] - best["kappa"][0]
            lines.append(f"{row['scene']} K={row['k']}: default κ {row['kappa'][0]:.3f} vs {best['arm']} "
                         f"{best['kappa'][0]:.3f} ({d:+.3f}) — {'ahead' if d > 0 else 'BEHIND'}")
    return lines


def save(path, rows, summary, lines, seconds, adaptation, arms) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps({"rows": rows, "table": summary, "verdict": lines, "seconds": seconds,
                                       "adaptation": adaptation, "arms": sorted(arms)}, indent=1, default=str))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", nargs="+", default=list(SCENES), choices=SCENES)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--k", type=int, nargs="+", default=[2, 6, 20])
    p.add_argument("--arms", nargs="+", default=list(ARM_KEYS), choices=list(ARM_KEYS))
    p.add_argument("--adapt-seconds", type=float, default=180.0)
    p.add_argument("--out", default=str(ROOT / "bench_out" / "real_scenes.json"))
    args = p.parse_args()
    os.environ.setdefault("SPECAWARE_DATA_DIR", tempfile.mkdtemp(prefix="specaware-bench-"))  # resume state
    if not DATA.exists() and set(args.scenes) - {"demo"}:
        print(f"needs {DATA} (the project's shared fixtures), which is not on this machine")
        return 2
    arms = set(args.arms)
    print(f"CPU, {torch.get_num_threads()} threads; no pretrained SpecAware checkpoint on this machine: every "
          "backbone is a random initialisation (or that after scene MAE)")
    rows, seconds, adaptation = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.scenes:
            scene = load_scene(name, tmp)
            t0 = time.perf_counter()
            print(f"\n{name}: {scene.labels.shape[1]}×{scene.labels.shape[0]} px, {len(scene.names)} classes",
                  flush=True)
            adapted = None
            if "mae" in arms:
                adapted = str(tmp / f"{name}-adapted.pth")  # `engine adapt`: the path a user takes
                adaptation[name] = call("adapt", raster=[str(scene.raster)], out=adapted,
                                        minutes=args.adapt_seconds / 60, backbone="random", patch=32)
            for k in args.k:
                for seed in range(args.seeds):
                    squares = label_squares(scene.labels, per_class=k, size=3, seed=seed)
                    shapes = [(scene.names[c - 1], rect(x, y, x + 3, y + 3)) for c, x, y in squares]
                    polygons = write_polygons(tmp / f"{name}-{k}-{seed}.gpkg", shapes, gt=scene.gt,
                                              epsg=scene.epsg)
                    train = np.zeros_like(scene.labels)
                    for c, x, y in squares:
                        train[y:y + 3, x:x + 3] = c
                    truth_test = np.where(train > 0, 0, scene.labels)
                    work = tmp / f"{name}-{k}-{seed}"
                    res = specaware_arms(scene, polygons, train, truth_test, seed, arms, adapted, work, seconds)
                    if "classic" in arms:
                        t = time.perf_counter()
                        res.update(classic_arms(scene, train, truth_test, seed))
                        seconds[f"{name} / classic"] = seconds.get(f"{name} / classic", 0.0) + \
                            time.perf_counter() - t
                    for arm, m in res.items():
                        rows.append({"scene": name, "k": k, "seed": seed, "arm": arm, **{x: m[x] for x in METRICS}})
                    print(f"  K={k} seed {seed}: " + ", ".join(f"{arm} κ {m['kappa']:.3f}" for arm, m in res.items()),
                          flush=True)
            print(f"  scene total {time.perf_counter() - t0:.0f} s", flush=True)
            save(args.out, rows, [], [], seconds, adaptation, arms)  # what is done so far
    summary = table(rows, args.scenes, args.k)
    lines = verdict(summary)
    print("\n" + "\n".join(lines))
    print("\nseconds per scene and arm (all K and seeds): " +
          ", ".join(f"{k}: {v:.0f}" for k, v in seconds.items()))
    save(args.out, rows, summary, lines, seconds, adaptation, arms)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
