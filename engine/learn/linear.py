"""Fitting the few-label head (`model/linear.py`): per-pixel SpecAware features of the labelled pixels, standardised
with the scene's own statistics, and a class-balanced multinomial logistic regression with an L2 penalty, solved
to convergence by L-BFGS (a convex problem: no epochs, no learning rate, the same answer every time).

With few labels a linear model on good features generalises better than a network trained on them; it is
validated on the held-out polygons, then refitted on every labelled pixel for the saved model.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from ..core.progress import CancelFn, ProgressFn, check_cancel, no_progress
from ..io.raster import RasterSource
from ..model.linear import LinearSegmenter
from ..model.segmenter import SpectralInput
from .metrics import boundary_shares, honest_accuracy
from .pixels import SceneReader
from .samples import LabelledPixels, LabelSet, labelled_pixels
from .trainer import TrainResult

TILE = 64  # px: the scene is described tile by tile
SCENE_SAMPLE = 20000  # pixels for the standardisation statistics
SAMPLE_TILES = 24
C = 1.0  # inverse strength of the L2 penalty per labelled pixel (scikit-learn's C)
MAX_ITER = 500


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, c: float = C,
                 max_iter: int = MAX_ITER) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(weight [K, F], bias [K], iterations) minimising the class-balanced mean cross-entropy plus
    ‖weight‖² / (2·c·n) over standardised features x [n, F] and classes y [n] (0…K-1)."""
    x, y = x.double(), y.long()
    counts = torch.bincount(y, minlength=num_classes).double()
    balance = torch.where(counts > 0, len(y) / (num_classes * counts.clamp_min(1)), torch.zeros_like(counts))
    w = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, device=x.device, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, device=x.device, requires_grad=True)
    l2 = 1.0 / (c * len(y))
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, tolerance_grad=1e-7, tolerance_change=1e-10,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w.T + b, y, weight=balance) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return w.detach().float(), b.detach().float(), int(opt.state[opt._params[0]].get("n_iter", 0))


class LinearFit:
    """One fit of a `LinearSegmenter` on a scene's labels: statistics, features, fit, validation, refit."""

    def __init__(self, model: LinearSegmenter, source: RasterSource, labels: LabelSet, device, seed: int = 0,
                 progress: ProgressFn | None = None, cancel: CancelFn | None = None):
        self.model, self.source, self.labels, self.device = model.to(device).eval(), source, labels, device
        self.seed, self.progress, self.cancel = seed, progress or no_progress, cancel
        self.spec = SpectralInput.from_source(source)
        self.reader = SceneReader(source, TILE)

    @torch.no_grad()
    def _features(self, x0: int, y0: int) -> tuple[np.ndarray, np.ndarray, tuple]:
        """([F, h, w] raw features, [h, w] validity, (x, y, w, h)) of the tile at (x0, y0), padding removed."""
        values, valid = self.reader.read(x0, y0)
        f = self.model.features(torch.from_numpy(values[None]).to(self.device), self.spec)[0].float().cpu().numpy()
        x, y, w, h = self.reader.grid.window(x0, y0)
        return f[:, :h, :w], valid[:h, :w], (x, y, w, h)

    def _statistics(self) -> None:
        """Mean and spread of every feature over valid pixels of tiles spread over the scene."""
        rng = np.random.default_rng(self.seed)
        windows = self.reader.grid.spread(SAMPLE_TILES)
        per_tile = max(1, SCENE_SAMPLE // len(windows))
        sample = []
        for i, (x, y, _, _) in enumerate(windows):
            check_cancel(self.cancel, "fine-tuning")
            f, valid, _ = self._features(x, y)
            pixels = f[:, valid].T
            if len(pixels):
                sample.append(pixels[rng.permutation(len(pixels))[:per_tile]])
            self.progress(0.3 * (i + 1) / len(windows), f"scene statistics: {i + 1}/{len(windows)} tiles")
        z = np.concatenate(sample) if sample else np.zeros((1, self.model.feature_count), np.float32)
        std = z.std(axis=0)
        self.model.mean.copy_(torch.from_numpy(z.mean(axis=0)))
        self.model.scale.copy_(torch.from_numpy(np.where(std > 1e-6 * (np.abs(z).max(axis=0) + 1e-12), std, 1.0)))

    def _labelled(self) -> tuple[LabelledPixels, LabelledPixels]:
        """The training and the validation pixels' features, classes and polygons."""
        return labelled_pixels(self.labels, self.reader.grid, lambda x0, y0: self._features(x0, y0)[:2],
                               self.model.feature_count, self.cancel,
                               lambda f, message: self.progress(0.3 + 0.5 * f, message))

    def _fit(self, x: np.ndarray, y: np.ndarray) -> int:
        """Fit the classifier on raw features x [n, F] and classes y (1…K)."""
        z = (torch.from_numpy(x).to(self.device) - self.model.mean) / self.model.scale
        w, b, n_iter = fit_logistic(z, torch.from_numpy(y - 1).to(self.device), len(self.labels.scheme.names))
        self.model.classifier.weight.data.copy_(w)
        self.model.classifier.bias.data.copy_(b)
        return n_iter

    @torch.no_grad()
    def _validate(self, val: LabelledPixels) -> dict | None:
        """Accuracy on the held-out pixels with 95 % intervals, and whether they sample the map's class boundaries
        (the map of the tiles around them)."""
        if len(val.y) == 0:
            return None
        pred = self.model.classify(torch.from_numpy(val.x).to(self.device)).argmax(1).cpu().numpy() + 1
        class_map = np.zeros(self.labels.val.shape, np.uint16)
        for x0, y0 in val.tiles:  # the model's own (folded) forward: no second pass through the features
            values, valid = self.reader.read(x0, y0)
            logits = self.model(torch.from_numpy(values[None]).to(self.device), self.spec)[0]
            x, y, w, h = self.reader.grid.window(x0, y0)
            class_map[y:y + h, x:x + w] = np.where(valid[:h, :w], logits.argmax(0)[:h, :w].cpu().numpy() + 1, 0)
        return honest_accuracy(val.y, pred, self.labels.scheme.names, val.units,
                               boundary_shares(class_map, self.labels.val > 0), seed=self.seed)

    def run(self) -> TrainResult:
        t0 = time.perf_counter()
        self._statistics()
        train, val = self._labelled()
        self.progress(0.85, f"fitting the linear head on {len(train.y)} labelled pixels")
        iterations = self._fit(train.x, train.y)
        validation = self._validate(val)
        if len(val.y):  # the saved model learns from every labelled pixel; its accuracy was measured without them
            iterations = self._fit(np.concatenate([train.x, val.x]), np.concatenate([train.y, val.y]))
        details = {"solver": "L-BFGS", "iterations": iterations, "penalty_c": C, "train_pixels": int(len(train.y)),
                   "refitted_with_validation_pixels": int(len(val.y)), "features": self.model.feature_count}
        self.progress(0.95, "linear head fitted")
        return TrainResult({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, [], 0, validation,
                           False, time.perf_counter() - t0, 0, details)
