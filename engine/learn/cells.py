"""The cell model (pooled-token head): one label per grid cell or parcel. Labelled polygons become cells in a
window centred on them; `CellTrainer` fits the head through the one training loop (a frozen encoder's pooled
features are computed once, so training is quick on a CPU); `pooled_cell_probabilities` classifies cells
covered by several windows."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.errors import EngineError
from ..core.progress import CancelFn, ProgressFn, check_cancel
from ..io.raster import RasterSource
from ..model.segmenter import SpectralInput
from .metrics import honest_accuracy, score
from .pixels import dihedral
from .samples import LabelSet
from .trainer import Trainer

CELL_WINDOW = 32  # px read around each cell; a larger cell is covered by several windows


@dataclass(frozen=True)
class Cell:
    """One labelled polygon as a training sample: its window, which id raster marks it, its class, its split."""

    x0: int
    y0: int
    polygon: int
    validation_layer: bool
    label: int  # 1…K
    val: bool


def window_size(source: RasterSource, k: int, size: int = CELL_WINDOW) -> int:
    """The cell window: `size` px, smaller on a small raster, a multiple of the patch size."""
    return max(k, min(size, source.width // k * k, source.height // k * k))


def polygon_boxes(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel bounding boxes [n+1, 4] (x0, y0, x1, y1; empty ids have x0 ≥ x1) and one pixel [n+1, 2] of ids 1…n."""
    H, W = ids.shape
    box = np.array([[W, H, 0, 0]] * (n + 1), np.int64)
    ys, xs = np.nonzero(ids)
    v = ids[ys, xs].astype(np.int64)
    np.minimum.at(box[:, 0], v, xs)
    np.minimum.at(box[:, 1], v, ys)
    np.maximum.at(box[:, 2], v, xs + 1)
    np.maximum.at(box[:, 3], v, ys + 1)
    pixel = np.zeros((n + 1, 2), np.int64)
    first = np.unique(v, return_index=True)
    pixel[first[0]] = np.stack([ys[first[1]], xs[first[1]]], axis=1)
    return box, pixel


def centred(box, S: int, W: int, H: int) -> tuple[int, int]:
    cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
    return int(np.clip(cx - S // 2, 0, W - S)), int(np.clip(cy - S // 2, 0, H - S))


def labelled_cells(labels: LabelSet, S: int) -> list[Cell]:
    """Every labelled polygon of the training (and validation) layer, in a window centred on it."""
    cells = []
    for ids, val_layer in ((labels.polygon_ids, False), (labels.val_polygon_ids, True)):
        if ids is None:
            continue
        H, W = ids.shape
        n = int(ids.max())
        boxes, pixels = polygon_boxes(ids, n)
        for p in range(1, n + 1):
            if boxes[p, 0] >= boxes[p, 2]:
                continue
            y, x = pixels[p]
            train_id, val_id = int(labels.train[y, x]), int(labels.val[y, x])
            label, val = (val_id, True) if val_layer or not train_id else (train_id, False)
            if label:
                cells.append(Cell(*centred(boxes[p], S, W, H), p, val_layer, label, val))
    return cells


def read_cells(source: RasterSource, labels: LabelSet, cells: list[Cell], S: int, flip: int = 0):
    """Model input [B, C, S, S] and cell masks [B, S, S] for a batch of cells (one dihedral transform)."""
    xs, ms = [], []
    for c in cells:
        values, valid = source.read(c.x0, c.y0, S, S)
        ids = labels.val_polygon_ids if c.validation_layer else labels.polygon_ids
        mask = (ids[c.y0:c.y0 + S, c.x0:c.x0 + S] == c.polygon) & valid
        xs.append(dihedral(values, flip))
        ms.append(dihedral(mask.astype(np.float32), flip))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ms))


class CellTrainer(Trainer):
    """Fit the pooled-token head (and, unless frozen, the encoder) on labelled cells; the best epoch is the one with
    the best validation accuracy on the held-out cells."""

    monitor = "oa"

    def __init__(self, model, source: RasterSource, labels: LabelSet, cfg, device, **kw):
        self.source, self.labels = source, labels
        self.window = window_size(source, model.cfg.patch_size, cfg.window)
        cells = labelled_cells(labels, self.window)
        self.fit = [c for c in cells if not c.val]
        self.held = [c for c in cells if c.val]
        if len({c.label for c in self.fit}) < 2:
            raise EngineError("cell training needs labelled cells of at least two classes on the raster")
        self.spec = SpectralInput.from_source(source)
        super().__init__(model, cfg, device, **kw)
        counts = np.bincount([c.label for c in self.fit], minlength=len(labels.scheme.names) + 1)[1:].astype(float)
        weight = torch.tensor(np.where(counts > 0, 1 / np.sqrt(np.maximum(counts, 1)), 0.0), dtype=torch.float32)
        self.loss_fn = torch.nn.CrossEntropyLoss(weight=(weight / weight[weight > 0].mean()).to(device))
        self.cache: dict[Cell, torch.Tensor] = {}
        self.order, self.position = np.arange(len(self.fit)), 0

    def epoch_steps(self) -> int:
        return -(-len(self.fit) // self.cfg.batch_size)

    def _pooled(self, batch: list[Cell], flip: int = 0, grad: bool = False) -> torch.Tensor:
        x, m = read_cells(self.source, self.labels, batch, self.window, flip)
        with torch.set_grad_enabled(grad):
            return self.model.pool(self.model.encode(x.to(self.device), self.spec), m.to(self.device))

    def prepare(self, rng) -> None:
        if not self.frozen:
            return
        self.model.eval()
        cells = self.fit + self.held
        for i in range(0, len(cells), self.batch_size):
            self.check_cancel()
            batch = cells[i:i + self.batch_size]
            for c, v in zip(batch, self._pooled(batch)):
                self.cache[c] = v.detach()
            self.progress(0.1 * (i + len(batch)) / len(cells), f"features of {i + len(batch)} of {len(cells)} cells")

    def start_epoch(self, rng) -> None:
        self.order, self.position = rng.permutation(len(self.fit)), 0

    def make_batch(self, batch_size: int, rng):
        if self.position >= len(self.order):  # a halved batch size needs more steps than the epoch planned
            self.start_epoch(rng)
        batch = [self.fit[j] for j in self.order[self.position:self.position + batch_size]]
        self.position += batch_size
        feats = torch.stack([self.cache[c] for c in batch]) if self.frozen else \
            self._pooled(batch, int(rng.integers(8)), True)
        return feats, torch.tensor([c.label - 1 for c in batch], device=self.device)

    def loss(self, inputs, target) -> torch.Tensor:
        return self.loss_fn(self.model.classify(inputs).float(), target)

    def predict(self, cells: list[Cell]) -> np.ndarray:
        self.model.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(cells), self.batch_size):
                b = cells[i:i + self.batch_size]
                feats = torch.stack([self.cache[c] for c in b]) if self.frozen else self._pooled(b)
                out.append(self.model.classify(feats).argmax(1).cpu() + 1)
        return torch.cat(out).numpy() if out else np.zeros(0, int)

    def evaluate(self, final: bool = False) -> dict | None:
        if not self.held:
            return None
        truth, pred = np.array([c.label for c in self.held]), self.predict(self.held)
        result = (honest_accuracy if final else score)(truth, pred, self.labels.scheme.names)  # a cell is one unit
        return {**result, "cells": len(self.held)}


def pooled_cell_probabilities(net, source: RasterSource, spec, boxes_and_masks, S: int, device, batch: int,
                              progress: ProgressFn | None = None, cancel: CancelFn | None = None):
    """Class probabilities per cell: each cell is covered by S×S windows; their pooled features are combined
    with the number of cell pixels each window holds as weights."""
    jobs = []  # (cell index, x0, y0) for every window over every cell
    for i, (box, _) in enumerate(boxes_and_masks):
        x0, y0, x1, y1 = box
        for wy in range(y0, max(y0 + 1, y1 - S // 2), S):
            for wx in range(x0, max(x0 + 1, x1 - S // 2), S):
                cx, cy = centred((wx, wy, min(wx + S, x1), min(wy + S, y1)), S, source.width, source.height)
                jobs.append((i, cx, cy))
    n = len(boxes_and_masks)
    sums = None
    weights = np.zeros(n)
    for j in range(0, len(jobs), batch):
        check_cancel(cancel)
        part = jobs[j:j + batch]
        xs, ms = [], []
        for i, cx, cy in part:
            values, valid = source.read(cx, cy, S, S)
            xs.append(values)
            ms.append(boxes_and_masks[i][1](cx, cy, S) & valid)
        m = torch.from_numpy(np.stack(ms).astype(np.float32))
        with torch.inference_mode():
            feats = net.pool(net.encode(torch.from_numpy(np.stack(xs)).to(device), spec), m.to(device)).cpu()
        w = m.sum((1, 2)).numpy()
        if sums is None:
            sums = np.zeros((n, feats.shape[1]))
        for (i, _, _), f, wk in zip(part, feats.numpy(), w):
            sums[i] += f * wk
            weights[i] += wk
        if progress:
            progress(min(1.0, (j + len(part)) / len(jobs)), f"{j + len(part)} of {len(jobs)} cell windows")
    pooled = torch.from_numpy(sums / np.maximum(weights, 1)[:, None]).float()
    with torch.inference_mode():
        probs = net.classify(pooled.to(device)).softmax(1).cpu().numpy()
    return probs, weights
