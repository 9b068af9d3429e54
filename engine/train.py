"""Fine-tuning a Segmenter on polygon labels: class-balanced windows, flips and 90° turns, AdamW with warm-up and
cosine decay, early stopping on validation mIoU, resume, cancel, and batch halving on CUDA out-of-memory.

With a frozen backbone the encoder's features are computed once for a pool of augmented windows, so an epoch costs
only the head.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import Cancelled, EngineError
from .metrics import score
from .model.segmenter import Features, Segmenter, SpectralInput
from .raster import RasterSource
from .samples import LabelSet, WindowSampler
from .tiling import TileGrid

IGNORE = -1
IN_MEMORY_BYTES = 512 * 2**20  # scenes smaller than this are read once; larger ones window by window


@dataclass
class TrainConfig:
    epochs: int = 40
    window: int = 64
    batch_size: int = 8
    windows_per_epoch: int = 64
    lr: float = 1e-3
    backbone_lr_ratio: float = 0.1
    weight_decay: float = 0.05
    warmup_epochs: int = 2
    patience: int = 10
    seed: int = 0
    backbone_mode: str = "frozen"  # frozen | last-N | full
    frozen_pool: int = 256  # augmented windows whose frozen features are cached (about 1.3 MB each)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    state_dict: dict
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    validation: dict | None = None
    stopped_early: bool = False
    seconds: float = 0.0
    batch_size: int = 0


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


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def format_eta(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


class Trainer:
    """Owns one fine-tuning run: data, optimiser, schedule, checkpoints for resume, and evaluation."""

    def __init__(self, model: Segmenter, source: RasterSource, labels: LabelSet, cfg: TrainConfig,
                 device: torch.device, resume_dir: Path | None = None, progress=None, cancel=None, spec=None):
        k = model.cfg.patch_size
        if cfg.window % k:
            raise EngineError(f"training window {cfg.window} px must be a multiple of the patch size {k}")
        self.model, self.source, self.labels, self.cfg = model.to(device), source, labels, cfg
        self.device, self.resume_dir = device, resume_dir
        self._progress, self.cancel = progress or (lambda f, m: None), cancel or (lambda: False)
        self.fraction = 0.0
        self.spec = spec or SpectralInput.from_source(source)  # a PairInput for change models
        self.reader = SceneReader(source, cfg.window)
        self.sampler = WindowSampler(labels.train, cfg.window, cfg.seed)
        self.class_weight = median_frequency_weights(labels.train, len(labels.scheme.names)).to(device)
        self.frozen = cfg.backbone_mode == "frozen"
        self.batch_size = cfg.batch_size
        self.autocast = device.type == "cuda"
        model.set_trainable(cfg.backbone_mode)
        head = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
        backbone = [p for p in model.encoder.parameters() if p.requires_grad]
        groups = [{"params": head, "lr": cfg.lr}]
        if backbone:
            groups.append({"params": backbone, "lr": cfg.lr * cfg.backbone_lr_ratio})
        self.opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        steps_per_epoch = max(1, cfg.windows_per_epoch // cfg.batch_size)
        total = cfg.epochs * steps_per_epoch
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: warmup_cosine(s, cfg.warmup_epochs * steps_per_epoch, total))
        self.steps_per_epoch = steps_per_epoch
        self.val_tiles = self._validation_tiles()

    def progress(self, fraction: float | None, message: str) -> None:
        self.fraction = self.fraction if fraction is None else fraction
        self._progress(self.fraction, message)

    # --- data ----------------------------------------------------------------------------------------------------
    def _augmented_window(self, x0: int, y0: int, k: int):
        values, valid = self.reader.read(x0, y0)
        target = window_labels(self.labels.train, x0, y0, self.cfg.window, valid)
        return dihedral(values, k), dihedral(target, k)

    def _batch(self, origins, turns) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self._augmented_window(x0, y0, k) for (x0, y0), k in zip(origins, turns)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs]))
        y = torch.from_numpy(np.stack([p[1] for p in pairs]))
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _frozen_pool(self, rng) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Taps, spectral features (float16) and targets of `frozen_pool` augmented windows, computed once."""
        n = self.cfg.frozen_pool
        origins, turns = self.sampler.sample(n), rng.integers(0, 8, n)
        taps, spectral, targets = [], [], []
        self.model.eval()
        for i in range(0, n, self.batch_size):
            self._check_cancel()
            x, y = self._batch(origins[i:i + self.batch_size], turns[i:i + self.batch_size])
            with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=self.autocast):
                f = self.model.encode(x, self.spec)
            taps.append([t.float().cpu() for t in f.taps])
            spectral.append(f.spectral.to(torch.float16).cpu())
            targets.append(y.cpu())
            self.progress(0.1 * min(1.0, (i + self.batch_size) / n),
                          f"caching frozen backbone features: {min(n, i + self.batch_size)}/{n} windows")
        return [torch.cat(level) for level in zip(*taps)], torch.cat(spectral), torch.cat(targets)

    def _validation_tiles(self) -> list[tuple[int, int]]:
        """Non-overlapping tiles that hold validation pixels (fixed, so epochs are comparable)."""
        grid = self.reader.grid
        return [(x0, y0) for y0 in grid.rows for x0 in grid.columns
                if self.labels.val[y0:y0 + grid.tile, x0:x0 + grid.tile].any()]

    # --- steps ---------------------------------------------------------------------------------------------------
    def _check_cancel(self):
        if self.cancel():
            raise Cancelled("fine-tuning cancelled by the user")

    def _step(self, x_or_features, y: torch.Tensor) -> float:
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", torch.bfloat16, enabled=self.autocast):
            if self.frozen:
                logits = self.model.decode(x_or_features, y.shape[-2:])
            else:
                logits = self.model(x_or_features, self.spec)
        loss = F.cross_entropy(logits.float(), y.to(self.device), weight=self.class_weight, ignore_index=IGNORE)
        if not torch.isfinite(loss):
            return float("nan")
        loss.backward()
        self.opt.step()
        return loss.item()

    def _step_halving(self, make_batch) -> float:
        """One optimiser step; on CUDA out-of-memory halve the batch size and retry."""
        while True:
            try:
                return self._step(*make_batch(self.batch_size))
            except torch.cuda.OutOfMemoryError:
                if self.batch_size == 1:
                    raise EngineError("out of GPU memory even with one window per batch; use a smaller preset "
                                      "or window, or run on the CPU") from None
                torch.cuda.empty_cache()
                self.batch_size = max(1, self.batch_size // 2)
                self.progress(None, f"CUDA out of memory: batch size halved to {self.batch_size}")

    @torch.no_grad()
    def predict_tile(self, x0: int, y0: int) -> tuple[np.ndarray, np.ndarray]:
        values, valid = self.reader.read(x0, y0)
        x = torch.from_numpy(values[None]).to(self.device)
        with torch.autocast("cuda", torch.bfloat16, enabled=self.autocast):
            logits = self.model(x, self.spec)
        return logits[0].float().argmax(0).cpu().numpy() + 1, valid

    def evaluate(self) -> dict | None:
        """Scores on the held-out polygons' pixels, or None when nothing is held out."""
        if not self.val_tiles:
            return None
        self.model.eval()
        T = self.cfg.window
        truth, pred = [], []
        seen = np.zeros(self.labels.val.shape, bool)  # the last row and column of tiles overlap the previous
        for x0, y0 in self.val_tiles:
            p, valid = self.predict_tile(x0, y0)
            t = window_labels(self.labels.val, x0, y0, T, valid) + 1
            h, w = seen[y0:y0 + T, x0:x0 + T].shape
            fresh = np.zeros((T, T), bool)
            fresh[:h, :w] = ~seen[y0:y0 + T, x0:x0 + T]
            seen[y0:y0 + T, x0:x0 + T] = True
            keep = (t > 0) & fresh
            truth.append(t[keep])
            pred.append(p[keep])
        return score(np.concatenate(truth), np.concatenate(pred), self.labels.scheme.names)

    # --- resume --------------------------------------------------------------------------------------------------
    def _save_state(self, epoch: int, history, best_state, best_key, best_epoch, rng) -> None:
        if self.resume_dir is None:
            return
        self.resume_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.resume_dir / f".state.{uuid.uuid4().hex[:8]}.tmp"
        torch.save({"epoch": epoch, "model": self.model.state_dict(), "opt": self.opt.state_dict(),
                    "sched": self.sched.state_dict(), "best": best_state, "best_epoch": best_epoch,
                    "best_key": torch.tensor(best_key, dtype=torch.float64), "history": json.dumps(history),
                    "rng": json.dumps(rng.bit_generator.state), "sampler_rng": json.dumps(
                        self.sampler.rng.bit_generator.state), "config": json.dumps(self.cfg.to_dict()),
                    "batch_size": self.batch_size}, tmp)
        os.replace(tmp, self.resume_dir / "state.pt")

    def _load_state(self, rng):
        path = self.resume_dir / "state.pt" if self.resume_dir else None
        if path is None or not path.is_file():
            return None
        s = torch.load(path, map_location="cpu", weights_only=True)
        if json.loads(s["config"]) != self.cfg.to_dict():
            raise EngineError(f"cannot resume from {path}: it was started with other settings; start afresh "
                              "without --resume, or repeat the original settings")
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        self.sched.load_state_dict(s["sched"])
        rng.bit_generator.state = json.loads(s["rng"])
        self.sampler.rng.bit_generator.state = json.loads(s["sampler_rng"])
        self.batch_size = int(s["batch_size"])
        return s

    # --- the loop ------------------------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> TrainResult:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed + 1)
        t0 = time.perf_counter()
        history, best_state, best_key, best_epoch, start = [], None, -math.inf, 0, 0
        state = self._load_state(rng) if resume else None
        if state is not None:
            start, history = int(state["epoch"]), json.loads(state["history"])
            best_state, best_key, best_epoch = state["best"], float(state["best_key"]), int(state["best_epoch"])
        pool = self._frozen_pool(rng) if self.frozen else None
        stale = start - best_epoch if best_epoch else 0
        stopped_early = False
        for epoch in range(start, cfg.epochs):
            self.model.train()
            if self.frozen:
                self.model.encoder.eval()
            losses = []
            for _ in range(self.steps_per_epoch):
                self._check_cancel()
                if self.frozen:
                    def make(bs):
                        idx = torch.from_numpy(rng.integers(0, len(pool[2]), bs))
                        features = Features([t[idx].to(self.device) for t in pool[0]],
                                            pool[1][idx].to(self.device).float())
                        return features, pool[2][idx]
                else:
                    def make(bs):
                        return self._batch(self.sampler.sample(bs), rng.integers(0, 8, bs))
                losses.append(self._step_halving(make))
                self.sched.step()
            val = self.evaluate()
            loss = float(np.nanmean(losses)) if np.isfinite(losses).any() else float("nan")
            key = val["miou"] if val and val["miou"] is not None else -loss
            record = {"epoch": epoch + 1, "loss": round(loss, 5), "lr": self.opt.param_groups[0]["lr"],
                      "val_miou": val["miou"] if val else None, "val_oa": val["oa"] if val else None}
            history.append(record)
            if key > best_key:
                best_key, best_epoch, stale = key, epoch + 1, 0
                best_state = copy.deepcopy(self.model.state_dict())
            else:
                stale += 1
            elapsed = time.perf_counter() - t0
            done = epoch + 1 - start
            eta = elapsed / done * (cfg.epochs - epoch - 1)
            msg = f"epoch {epoch + 1}/{cfg.epochs} · loss {loss:.3f}"
            if val:
                msg += f" · val mIoU {val['miou']:.3f} · OA {val['oa']:.3f}"
            self.progress(0.1 + 0.85 * (epoch + 1) / cfg.epochs, f"{msg} · ETA {format_eta(eta)}")
            self._save_state(epoch + 1, history, best_state, best_key, best_epoch, rng)
            if stale >= cfg.patience:
                stopped_early = True
                self.progress(0.95, f"stopping early: validation mIoU has not improved for {stale} epochs "
                                    f"(best at epoch {best_epoch})")
                break
        self.model.load_state_dict(best_state)
        validation = self.evaluate()
        return TrainResult(best_state, history, best_epoch, validation, stopped_early,
                           time.perf_counter() - t0, self.batch_size)
