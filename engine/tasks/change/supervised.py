"""Supervised change: a logistic change classifier on each pixel's pair features (its change magnitude under the
pair's no-change distribution, its largest change variates, its brightness ratio), trained on change / no-change
polygons through the one training loop; and the change probability it gives when it maps a pair."""
from __future__ import annotations

import numpy as np
import torch

from ...core.progress import CancelFn
from ...io.pairing import PairSource
from ...io.tiling import TileGrid
from ...learn.features import FeatureTrainer
from ...learn.samples import LabelledPixels, LabelSet, labelled_pixels
from ...learn.trainer import TrainConfig, TrainResult
from ...model.segmenter import CHANGE_FEATURES
from .measures import ChangeMeasure


def labelled_features(measure: ChangeMeasure, source: PairSource, labels: LabelSet, tile: int, device,
                      cancel: CancelFn | None = None) -> tuple[LabelledPixels, LabelledPixels]:
    """The training and validation pixels' pair features, read in the tiles that hold them."""
    grid = TileGrid(source.width, source.height, tile)

    def pair_features(x0: int, y0: int) -> tuple[np.ndarray, np.ndarray]:
        x, y, w, h = grid.window(x0, y0)
        v, valid = source.read(x, y, w, h)
        with torch.inference_mode():
            f = measure.pair_features(torch.from_numpy(grid.pad(v)[None]).to(device))[0, :, :h, :w]
        return f.cpu().numpy(), valid
    return labelled_pixels(labels, grid, pair_features, CHANGE_FEATURES, cancel)


def train_change_model(model, measure: ChangeMeasure, source: PairSource, labels: LabelSet, change_class: str,
                       cfg: TrainConfig, device, tile: int, resume: bool = False, **trainer_options) -> TrainResult:
    """Fit the classifier's logistic layer on the labelled pixels' pair features (standardised once), starting
    from the unsupervised significance rule and pulled back towards it: 20 labels per class adjust the rule
    without swinging with the sample."""
    train, val = labelled_features(measure, source, labels, tile, device, trainer_options.get("cancel"))
    model.feature_mean.copy_(torch.from_numpy(train.x.mean(axis=0)).float())
    model.feature_std.copy_(torch.from_numpy(np.maximum(train.x.std(axis=0), 1e-6)).float())
    model.start_from_significance(labels.scheme.names.index(change_class))
    trainer = FeatureTrainer(model, train.x, train.y, val.x, val.y, labels.scheme.names, cfg, device,
                             penalty=model.prior_penalty, val_units=val.units, **trainer_options)
    return trainer.run(resume=resume)


def change_probability(net, measure: ChangeMeasure, change_index: int):
    """Tile batch → [B, 1, H, W] the classifier's probability of change."""
    return lambda x: net.classify(measure.pair_features(x)).softmax(1)[:, change_index:change_index + 1]
