"""Training a small head on features computed once (a frozen model's, or a change statistic's) for labelled
pixels, through the one training loop: class-balanced batches, validation on the held-out polygons' pixels."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import EngineError
from .metrics import honest_accuracy, score
from .trainer import Trainer


class FeatureTrainer(Trainer):
    """Fits `model.classify` on features [n, d] with classes 1…K; the best epoch has the best validation κ."""

    monitor = "kappa"

    def __init__(self, model, features: np.ndarray, labels: np.ndarray, val_features: np.ndarray,
                 val_labels: np.ndarray, names: list[str], cfg, device, penalty=None,
                 val_units: np.ndarray | None = None, **kw):
        present = np.unique(labels)
        if len(present) < 2:
            raise EngineError(f"training needs labelled pixels of at least two classes; found only "
                              f"{', '.join(names[int(c) - 1] for c in present) or 'none'}")
        self.x = torch.from_numpy(features).float().to(device)
        self.y = torch.from_numpy(labels.astype(np.int64) - 1).to(device)
        self.val_x = torch.from_numpy(val_features).float().to(device)
        self.val_y, self.val_units = val_labels.astype(np.int64), val_units  # units: the pixels' polygons
        self.names, self.penalty = names, penalty  # penalty(): a regulariser added to the loss, weighed by 1/n
        self.by_class = [np.flatnonzero(labels == c) for c in present]
        super().__init__(model, cfg, device, **kw)

    def epoch_steps(self) -> int:
        return -(-len(self.x) // self.cfg.batch_size)

    def make_batch(self, batch_size: int, rng):
        """Each sample: a class drawn uniformly, then one of its pixels (rare classes count as much)."""
        idx = [self.by_class[i][rng.integers(len(self.by_class[i]))]
               for i in rng.integers(len(self.by_class), size=batch_size)]
        idx = torch.from_numpy(np.asarray(idx))
        return self.x[idx], self.y[idx]

    def loss(self, inputs, target) -> torch.Tensor:
        loss = F.cross_entropy(self.model.classify(inputs).float(), target)
        return loss if self.penalty is None else loss + self.penalty() / (2 * len(self.x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> np.ndarray:
        self.model.eval()
        return self.model.classify(x).argmax(1).cpu().numpy() + 1

    def evaluate(self, final: bool = False) -> dict | None:
        if not len(self.val_y):
            return None
        pred = self.predict(self.val_x)
        return honest_accuracy(self.val_y, pred, self.names, self.val_units) if final else score(self.val_y, pred,
                                                                                                 self.names)
