"""Per-pixel training (land cover, and change from a pair of dates): class-balanced windows with flips and 90°
turns, median-frequency class weights, validation on the held-out polygons' pixels.

With a frozen backbone the encoder's features are computed once for a pool of augmented windows, so an epoch
costs only the heads.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import EngineError
from ..io.raster import RasterSource
from ..io.tiling import TileGrid
from ..model.segmenter import Features, Segmenter, SpectralInput
from .metrics import boundary_shares, honest_accuracy, score
from .samples import LabelSet, WindowSampler
from .trainer import Trainer

IGNORE = -1
IN_MEMORY_BYTES = 512 * 2**20  # scenes smaller than this are read once; larger ones window by window


class SceneReader:
    """Windows of model input with their validity; the whole scene is held in memory when it is small."""

    def __init__(self, source: RasterSource, window: int):
        self.source, self.window = source, window
        self.grid = TileGrid(source.width, source.height, window)
        self.cube = None
        if len(source.bands) * source.width * source.height * 4 <= IN_MEMORY_BYTES:
            self.cube = source.read(0, 0, source.width, source.height)

    def read(self, x0: int, y0: int) -> tuple[np.ndarray, np.ndarray]:
        """([C, T, T] reflection-padded values, [T, T] validity, False in the padding)."""
        x, y, w, h = self.grid.window(x0, y0)
        if self.cube is not None:
            values, valid = self.cube[0][:, y:y + h, x:x + w], self.cube[1][y:y + h, x:x + w]
        else:
            values, valid = self.source.read(x, y, w, h)
        T = self.window
        padded_valid = np.zeros((T, T), bool)
        padded_valid[:h, :w] = valid
        return self.grid.pad(values), padded_valid


def window_labels(labels: np.ndarray, x0: int, y0: int, T: int, valid: np.ndarray) -> np.ndarray:
    """[T, T] int64 class index (0…K-1) or IGNORE, for the window at (x0, y0)."""
    crop = labels[y0:y0 + T, x0:x0 + T].astype(np.int64) - 1
    out = np.full((T, T), IGNORE, np.int64)
    out[:crop.shape[0], :crop.shape[1]] = crop
    out[~valid] = IGNORE
    return out


def dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/90° turns of the last two axes."""
    a = np.rot90(a, k % 4, axes=(-2, -1))
    return np.ascontiguousarray(a[..., ::-1] if k >= 4 else a)


def median_frequency_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Loss weight per class = median class frequency / class frequency (Eigen & Fergus 2015), so a class
    with few labelled pixels (roofs beside large fields) still counts in every window it shares."""
    counts = np.bincount(labels.ravel(), minlength=num_classes + 1)[1:num_classes + 1].astype(np.float64)
    freq = counts / max(counts.sum(), 1)
    w = np.where(counts > 0, np.median(freq[counts > 0]) / np.maximum(freq, 1e-12), 0.0)
    return torch.tensor(np.sqrt(np.clip(w, 0.0, 10.0)), dtype=torch.float32)


class PixelTrainer(Trainer):
    """A `Segmenter` on polygon labels of one raster."""

    def __init__(self, model: Segmenter, source: RasterSource, labels: LabelSet, cfg, device, **kw):
        k = model.cfg.patch_size
        if cfg.window % k:
            raise EngineError(f"training window {cfg.window} px must be a multiple of the patch size {k}")
        self.source, self.labels = source, labels
        self.spec = SpectralInput.from_source(source)
        self.reader = SceneReader(source, cfg.window)
        self.sampler = WindowSampler(labels.train, cfg.window, cfg.seed)
        super().__init__(model, cfg, device, **kw)
        self.class_weight = median_frequency_weights(labels.train, len(labels.scheme.names)).to(device)
        self.val_tiles = self._validation_tiles()
        self.pool = None

    # --- data ----------------------------------------------------------------------------------------------
    def _augmented_window(self, x0: int, y0: int, k: int):
        values, valid = self.reader.read(x0, y0)
        target = window_labels(self.labels.train, x0, y0, self.cfg.window, valid)
        return dihedral(values, k), dihedral(target, k)

    def _batch(self, origins, turns) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self._augmented_window(x0, y0, k) for (x0, y0), k in zip(origins, turns)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs]))
        y = torch.from_numpy(np.stack([p[1] for p in pairs]))
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def prepare(self, rng) -> None:
        """Taps, spectral features (float16) and targets of `frozen_pool` augmented windows, computed once."""
        if not self.frozen:
            return
        n = self.cfg.frozen_pool
        origins, turns = self.sampler.sample(n), rng.integers(0, 8, n)
        taps, spectral, targets = [], [], []
        self.model.eval()
        for i in range(0, n, self.batch_size):
            self.check_cancel()
            x, y = self._batch(origins[i:i + self.batch_size], turns[i:i + self.batch_size])
            with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=self.autocast):
                f = self.model.encode(x, self.spec)
            taps.append([t.float().cpu() for t in f.taps])
            spectral.append(f.spectral.to(torch.float16).cpu())
            targets.append(y.cpu())
            self.progress(0.1 * min(1.0, (i + self.batch_size) / n),
                          f"caching frozen backbone features: {min(n, i + self.batch_size)}/{n} windows")
        self.pool = ([torch.cat(level) for level in zip(*taps)], torch.cat(spectral), torch.cat(targets))

    def make_batch(self, batch_size: int, rng):
        if self.frozen:
            taps, spectral, targets = self.pool
            idx = torch.from_numpy(rng.integers(0, len(targets), batch_size))
            features = Features([t[idx].to(self.device) for t in taps], spectral[idx].to(self.device).float())
            return features, targets[idx].to(self.device)
        return self._batch(self.sampler.sample(batch_size), rng.integers(0, 8, batch_size))

    def loss(self, inputs, target) -> torch.Tensor:
        if self.frozen:
            logits = self.model.decode(inputs, target.shape[-2:])
        else:
            logits = self.model(inputs, self.spec)
        return F.cross_entropy(logits.float(), target, weight=self.class_weight, ignore_index=IGNORE)

    def extra_state(self) -> dict:
        return {"sampler_rng": self.sampler.rng.bit_generator.state}

    def load_extra_state(self, state: dict) -> None:
        if "sampler_rng" in state:
            self.sampler.rng.bit_generator.state = state["sampler_rng"]

    # --- validation ------------------------------------------------------------------------------------------
    def _validation_tiles(self) -> list[tuple[int, int]]:
        """Non-overlapping tiles that hold validation pixels (fixed, so epochs are comparable)."""
        grid = self.reader.grid
        return [(x0, y0) for y0 in grid.rows for x0 in grid.columns
                if self.labels.val[y0:y0 + grid.tile, x0:x0 + grid.tile].any()]

    @torch.no_grad()
    def predict_tile(self, x0: int, y0: int) -> tuple[np.ndarray, np.ndarray]:
        values, valid = self.reader.read(x0, y0)
        x = torch.from_numpy(values[None]).to(self.device)
        with torch.autocast("cuda", torch.bfloat16, enabled=self.autocast):
            logits = self.model(x, self.spec)
        return logits[0].float().argmax(0).cpu().numpy() + 1, valid

    def evaluate(self, final: bool = False) -> dict | None:
        """Scores on the held-out polygons' pixels, or None when nothing is held out; the final one with 95 %
        intervals (polygons as units) and whether the held-out pixels sample the map's class boundaries."""
        if not self.val_tiles:
            return None
        self.model.eval()
        T = self.cfg.window
        truth, pred, units = [], [], []
        unit_map = self.labels.val_units() if final else None
        seen = np.zeros(self.labels.val.shape, bool)  # the last row and column of tiles overlap the previous
        class_map = np.zeros(self.labels.val.shape, np.uint16)  # the predicted map around the held-out pixels
        for x0, y0 in self.val_tiles:
            p, valid = self.predict_tile(x0, y0)
            t = window_labels(self.labels.val, x0, y0, T, valid) + 1
            h, w = seen[y0:y0 + T, x0:x0 + T].shape
            fresh = np.zeros((T, T), bool)
            fresh[:h, :w] = ~seen[y0:y0 + T, x0:x0 + T]
            seen[y0:y0 + T, x0:x0 + T] = True
            class_map[y0:y0 + h, x0:x0 + w] = np.where(valid, p, 0)[:h, :w]
            keep = (t > 0) & fresh
            truth.append(t[keep])
            pred.append(p[keep])
            if final:
                u = np.zeros((T, T), np.int64)
                u[:h, :w] = unit_map[y0:y0 + h, x0:x0 + w]
                units.append(u[keep])
        names = self.labels.scheme.names
        if not final:
            return score(np.concatenate(truth), np.concatenate(pred), names)
        return honest_accuracy(np.concatenate(truth), np.concatenate(pred), names, np.concatenate(units),
                               boundary_shares(class_map, self.labels.val > 0), seed=self.cfg.seed)
