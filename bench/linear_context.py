"""`python3 build.py bench linear-context`: does neighbourhood context help the few-label linear head?

The default head reads each pixel alone. Here its features are extended with neighbourhood means and the same
class-balanced L2 logistic regression (`fit_logistic`) is fitted on the same labels as `bench real-scenes` (K
labelled 3×3 px squares per class, K = 2, 6, 20, 5 seeds, random tiny backbone); κ on every other pixel:
  none      the default features (the projection, its brightness-normalised form, the mean, the spectrum);
  lin3/lin5 plus the 3×3 / 5×5 means of the features linear in the spectrum (the ones a folded forward keeps);
  all5      plus the 5×5 means of every feature;
  diff5     plus each linear feature's difference from its 5×5 mean (a local contrast).
Features are standardised with the whole scene's statistics (the engine samples tiles; the scenes are small).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _scenes import SCENES, load_scene  # noqa: E402
from engine.io.raster import RasterSource  # noqa: E402
from engine.learn.linear import fit_logistic  # noqa: E402
from engine.learn.metrics import score  # noqa: E402
from engine.model import preset  # noqa: E402
from engine.model.linear import LinearSegmenter  # noqa: E402
from engine.model.segmenter import SpectralInput  # noqa: E402
from real_scenes import DATA, label_squares  # noqa: E402


def mean_filter(f: torch.Tensor, size: int) -> torch.Tensor:
    return F.avg_pool2d(F.pad(f, (size // 2,) * 4, mode="replicate"), size, stride=1)


def variants(f: torch.Tensor, planes: int) -> dict[str, torch.Tensor]:
    linear = torch.cat([f[:, :planes], f[:, 2 * planes:]], 1)  # the projection, the mean and the spectrum
    return {"none": f, "lin3": torch.cat([f, mean_filter(linear, 3)], 1),
            "lin5": torch.cat([f, mean_filter(linear, 5)], 1), "all5": torch.cat([f, mean_filter(f, 5)], 1),
            "diff5": torch.cat([f, linear - mean_filter(linear, 5)], 1)}


def kappa(f: torch.Tensor, train: np.ndarray, test: np.ndarray, names: list[str]) -> float:
    z = f[0].reshape(f.shape[1], -1).T
    z = (z - z.mean(0)) / z.std(0).clamp_min(1e-6)
    t = torch.from_numpy(train.ravel()).long()
    w, b, _ = fit_logistic(z[t > 0], t[t > 0] - 1, len(names))
    pred = (z.double() @ w.T.double() + b.double()).argmax(1).numpy().reshape(train.shape) + 1
    return score(test, pred, names)["kappa"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", nargs="+", default=list(SCENES), choices=SCENES)
    p.add_argument("--seeds", type=int, default=5)
    args = p.parse_args()
    if not DATA.exists() and set(args.scenes) - {"demo"}:
        print(f"needs {DATA} (the project's shared fixtures), which is not on this machine")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="specaware-bench-"))
    wins = []
    for name in args.scenes:
        scene = load_scene(name, tmp)
        src = RasterSource.open(str(scene.raster))
        x = torch.from_numpy(src.read(0, 0, src.width, src.height)[0][None]).float()
        spec = SpectralInput.from_source(src)
        kappas: dict[tuple[int, str], list[float]] = {}
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = LinearSegmenter(preset("tiny"), len(scene.names), wavelength=list(spec.wavelength)).eval()
            with torch.no_grad():
                feats = variants(model.features(x, spec).float(), model.cfg.wv_planes)
            for k in (2, 6, 20):
                train = np.zeros_like(scene.labels)
                for c, x0, y0 in label_squares(scene.labels, per_class=k, size=3, seed=seed):
                    train[y0:y0 + 3, x0:x0 + 3] = c
                test = np.where(train > 0, 0, scene.labels)
                for arm, f in feats.items():
                    kappas.setdefault((k, arm), []).append(kappa(f, train, test, scene.names))
        for k in (2, 6, 20):
            means = {arm: float(np.mean(kappas[(k, arm)])) for arm in feats}
            wins += [arm for arm in feats if arm != "none" and means[arm] > means["none"]]
            print(f"{name} K={k}: " + "  ".join(f"{arm} {means[arm]:.3f} ± {np.std(kappas[(k, arm)]):.3f}"
                                               for arm in feats), flush=True)
    print(f"cells where a context arm beats none: {len(wins)} of {4 * 3 * len(args.scenes)} ({', '.join(wins)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
