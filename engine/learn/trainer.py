"""The one training loop: AdamW (the head at `lr`, a trainable backbone at `lr × backbone_lr_ratio`) with warm-up
and cosine decay, early stopping on the validation score, resume from the last finished epoch, batch halving on
CUDA out-of-memory, a stop with a sentence on a non-finite loss or weight, cancel and progress.

Tasks subclass `Trainer` and say only how a batch is made, scored and validated (`learn/pixels.py` for land cover
and change, `learn/cells.py` for grid cells and parcels).
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

from ..core.errors import EngineError
from ..core.progress import CancelFn, ProgressFn, check_cancel, no_progress


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
    details: dict = field(default_factory=dict)  # how a fit that is not an epoch loop went (the linear head)


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def format_eta(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


class Trainer:
    """One training run. Subclasses implement `make_batch`, `loss` and `evaluate`, and may `prepare` (cache frozen
    features), `start_epoch`, `epoch_steps` and keep `extra_state` for resume."""

    what = "fine-tuning"
    monitor = "miou"  # the validation score that picks the best epoch

    def __init__(self, model, cfg: TrainConfig, device: torch.device, resume_dir: Path | None = None,
                 fingerprint: dict | None = None, progress: ProgressFn | None = None,
                 cancel: CancelFn | None = None):
        self.model, self.cfg, self.device = model.to(device), cfg, device
        self.resume_dir, self.fingerprint = resume_dir, fingerprint or {}
        self._progress, self.cancel = progress or no_progress, cancel
        self.fraction = 0.0
        self.frozen = cfg.backbone_mode == "frozen"
        self.batch_size = cfg.batch_size
        self.autocast = device.type == "cuda"
        model.set_trainable(cfg.backbone_mode)
        head = [p for n, p in model.named_parameters() if not n.startswith("encoder.") and p.requires_grad]
        backbone = [p for p in model.encoder.parameters() if p.requires_grad]
        groups = [{"params": head, "lr": cfg.lr}]
        if backbone:
            groups.append({"params": backbone, "lr": cfg.lr * cfg.backbone_lr_ratio})
        self.opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        self.steps_per_epoch = max(1, self.epoch_steps())
        total = cfg.epochs * self.steps_per_epoch
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: warmup_cosine(s, cfg.warmup_epochs * self.steps_per_epoch, total))

    # --- what a task says ----------------------------------------------------------------------------------
    def epoch_steps(self) -> int:
        return self.cfg.windows_per_epoch // self.cfg.batch_size

    def prepare(self, rng: np.random.Generator) -> None:
        """Work done once before the first epoch (e.g. caching a frozen encoder's features)."""

    def start_epoch(self, rng: np.random.Generator) -> None:
        """Called at the start of every epoch."""

    def make_batch(self, batch_size: int, rng: np.random.Generator):
        """(inputs, target) of one optimiser step."""
        raise NotImplementedError

    def loss(self, inputs, target) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, final: bool = False) -> dict | None:
        """Scores on the held-out data (with `self.monitor` among them), or None when nothing is held out; the
        `final` one, of the best epoch, also has 95 % intervals and warnings for the report."""
        raise NotImplementedError

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    # --- the loop --------------------------------------------------------------------------------------------
    def progress(self, fraction: float | None, message: str) -> None:
        self.fraction = self.fraction if fraction is None else fraction
        self._progress(self.fraction, message)

    def check_cancel(self) -> None:
        check_cancel(self.cancel, self.what)

    def _not_finite(self, what: str, epoch: int) -> EngineError:
        return EngineError(
            f"{self.what} stopped at epoch {epoch}: the {what} is no longer a finite number, so no model was saved. "
            f"The likely cause is a learning rate too high for this data (lr {self.cfg.lr:g}; try 10× smaller), "
            "classes with almost no labelled pixels, or input values that are not finite (check the raster's "
            "no-data value and scale)")

    def _step(self, make, rng, epoch: int) -> float:
        """One optimiser step; on CUDA out-of-memory halve the batch size and retry."""
        while True:
            try:
                inputs, target = make(self.batch_size, rng)
                self.opt.zero_grad(set_to_none=True)
                with torch.autocast("cuda", torch.bfloat16, enabled=self.autocast):
                    loss = self.loss(inputs, target)
                if not torch.isfinite(loss):
                    raise self._not_finite("training loss", epoch)
                loss.backward()
                self.opt.step()
                return loss.item()
            except torch.cuda.OutOfMemoryError:
                if self.batch_size == 1:
                    raise EngineError("out of GPU memory even with one sample per batch; use a smaller preset or "
                                      "window, or run on the CPU") from None
                torch.cuda.empty_cache()
                self.batch_size = max(1, self.batch_size // 2)
                self.progress(None, f"CUDA out of memory: batch size halved to {self.batch_size}")

    def _weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters() if p.requires_grad)

    def run(self, resume: bool = False) -> TrainResult:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed + 1)
        t0 = time.perf_counter()
        history, best_state, best_key, best_epoch, start = [], None, (-math.inf,), 0, 0
        state = self._load_state(rng) if resume else None
        if state is not None:
            start, history = int(state["epoch"]), json.loads(state["history"])
            best_state, best_epoch = state["best"], int(state["best_epoch"])
            best_key = tuple(state["best_key"].tolist())
        self.prepare(rng)
        stale = start - best_epoch if best_epoch else 0
        stopped_early = False
        for epoch in range(start, cfg.epochs):
            self.model.train()
            if self.frozen:
                self.model.encoder.eval()
            self.start_epoch(rng)
            losses = []
            for _ in range(self.steps_per_epoch):
                self.check_cancel()
                losses.append(self._step(self.make_batch, rng, epoch + 1))
                self.sched.step()
            if not self._weights_finite():
                raise self._not_finite("model's weights", epoch + 1)
            val = self.evaluate()
            loss = float(np.mean(losses))
            score = val.get(self.monitor) if val else None
            key = (score, -loss) if score is not None else (-loss,)
            record = {"epoch": epoch + 1, "loss": round(loss, 5), "lr": self.opt.param_groups[0]["lr"],
                      f"val_{self.monitor}": score, "val_oa": val.get("oa") if val else None}
            history.append(record)
            if key > best_key:
                best_key, best_epoch, stale = key, epoch + 1, 0
                best_state = copy.deepcopy(self.model.state_dict())
            else:
                stale += 1
            eta = (time.perf_counter() - t0) / (epoch + 1 - start) * (cfg.epochs - epoch - 1)
            msg = f"epoch {epoch + 1}/{cfg.epochs} · loss {loss:.3f}"
            if score is not None:
                msg += f" · val {self.monitor} {score:.3f}"
            if val and self.monitor != "oa" and val.get("oa") is not None:
                msg += f" · OA {val['oa']:.3f}"
            self.progress(0.1 + 0.85 * (epoch + 1) / cfg.epochs, f"{msg} · ETA {format_eta(eta)}")
            self._save_state(epoch + 1, history, best_state, best_key, best_epoch, rng)
            if stale >= cfg.patience:
                stopped_early = True
                self.progress(0.95, f"stopping early: validation {self.monitor} has not improved for {stale} "
                                    f"epochs (best at epoch {best_epoch})")
                break
        self.model.load_state_dict(best_state)
        return TrainResult(best_state, history, best_epoch, self.evaluate(final=True), stopped_early,
                           time.perf_counter() - t0, self.batch_size)

    # --- resume ----------------------------------------------------------------------------------------------
    def _save_state(self, epoch: int, history, best_state, best_key, best_epoch, rng) -> None:
        if self.resume_dir is None:
            return
        self.resume_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.resume_dir / f".state.{uuid.uuid4().hex[:8]}.tmp"
        torch.save({"epoch": epoch, "model": self.model.state_dict(), "opt": self.opt.state_dict(),
                    "sched": self.sched.state_dict(), "best": best_state, "best_epoch": best_epoch,
                    "best_key": torch.tensor(best_key, dtype=torch.float64), "history": json.dumps(history),
                    "rng": json.dumps(rng.bit_generator.state), "config": json.dumps(self.cfg.to_dict()),
                    "fingerprint": json.dumps(self.fingerprint, sort_keys=True), "batch_size": self.batch_size,
                    "extra": json.dumps(self.extra_state())}, tmp)
        os.replace(tmp, self.resume_dir / "state.pt")

    def _load_state(self, rng):
        path = self.resume_dir / "state.pt" if self.resume_dir else None
        if path is None or not path.is_file():
            return None
        s = torch.load(path, map_location="cpu", weights_only=True)
        saved = json.loads(s.get("fingerprint", "{}"))
        changed = sorted(k for k in set(saved) | set(self.fingerprint) if saved.get(k) != self.fingerprint.get(k))
        if json.loads(s["config"]) != self.cfg.to_dict():
            changed.append("training settings")
        if changed:
            raise EngineError(f"cannot resume: the interrupted run had other {', '.join(changed)}; start afresh "
                              "without --resume, or repeat the original command")
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        self.sched.load_state_dict(s["sched"])
        rng.bit_generator.state = json.loads(s["rng"])
        self.batch_size = int(s["batch_size"])
        self.load_extra_state(json.loads(s.get("extra", "{}")))
        return s
