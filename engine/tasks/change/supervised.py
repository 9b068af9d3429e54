"""Supervised change: a logistic change classifier on each pixel's pair features (its change magnitude under the
pair's no-change distribution, its largest change variates, its brightness ratio), trained on change / no-change
polygons through the one training loop; and the change probability it gives when it maps a pair."""
from __future__ import annotations

import numpy as np
import torch

from ...core.progress import CancelFn, check_cancel
from ...io.pairing import PairSource
from ...io.tiling import TileGrid
from ...learn.features import FeatureTrainer
from ...learn.samples import LabelSet
from ...learn.trainer import TrainConfig, TrainResult
from ...model.segmenter import CHANGE_FEATURES
from .measures import ChangeMeasure


def labelled_features(measure: ChangeMeasure, source: PairSource, labels: LabelSet, tile: int, device,
                      cancel: CancelFn | None = None) -> tuple[np.ndarray, ...]:
    """(train features [n, F], train classes [n], validation features, validation classes, validation polygons)
    of the labelled pixels, read in the tiles that hold them."""
    grid = TileGrid(source.width, source.height, tile)
    seen = np.zeros(labels.train.shape, bool)  # the last row and column of tiles overlap the ones before
    parts = {"train": ([], []), "val": ([], [])}
    units, val_units = [], labels.val_units()
    for y0 in grid.rows:
        for x0 in grid.columns:
            x, y, w, h = grid.window(x0, y0)
            fresh = ~seen[y:y + h, x:x + w]
            if not (((labels.train[y:y + h, x:x + w] > 0) | (labels.val[y:y + h, x:x + w] > 0)) & fresh).any():
                continue
            check_cancel(cancel, "reading the change samples")
            v, valid = source.read(x, y, w, h)
            with torch.inference_mode():
                f = measure.pair_features(torch.from_numpy(grid.pad(v)[None]).to(device))[0, :, :h, :w].cpu().numpy()
            for name, lab in (("train", labels.train), ("val", labels.val)):
                t = lab[y:y + h, x:x + w]
                keep = (t > 0) & valid & fresh
                parts[name][0].append(f[:, keep].T)
                parts[name][1].append(t[keep])
                if name == "val":
                    units.append(val_units[y:y + h, x:x + w][keep])
            seen[y:y + h, x:x + w] = True
    out = []
    for name in ("train", "val"):
        feats, ys = parts[name]
        out += [np.concatenate(feats) if feats else np.zeros((0, CHANGE_FEATURES)),
                np.concatenate(ys) if ys else np.zeros(0, int)]
    return (*out, np.concatenate(units) if units else np.zeros(0, int))


def train_change_model(model, measure: ChangeMeasure, source: PairSource, labels: LabelSet, change_class: str,
                       cfg: TrainConfig, device, tile: int, resume: bool = False, **trainer_options) -> TrainResult:
    """Fit the classifier's logistic layer on the labelled pixels' pair features (standardised once), starting
    from the unsupervised significance rule and pulled back towards it: 20 labels per class adjust the rule
    without swinging with the sample."""
    ft, yt, fv, yv, units = labelled_features(measure, source, labels, tile, device, trainer_options.get("cancel"))
    model.feature_mean.copy_(torch.from_numpy(ft.mean(axis=0)).float())
    model.feature_std.copy_(torch.from_numpy(np.maximum(ft.std(axis=0), 1e-6)).float())
    model.start_from_significance(labels.scheme.names.index(change_class))
    trainer = FeatureTrainer(model, ft, yt, fv, yv, labels.scheme.names, cfg, device, penalty=model.prior_penalty,
                             val_units=units, **trainer_options)
    return trainer.run(resume=resume)


def change_probability(net, measure: ChangeMeasure, change_index: int):
    """Tile batch → [B, 1, H, W] the classifier's probability of change."""
    return lambda x: net.classify(measure.pair_features(x)).softmax(1)[:, change_index:change_index + 1]
