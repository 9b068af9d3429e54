"""Self-supervised pre-training of SpecAware: the paper's masked autoencoder with a progressive multi-view
schedule, on one process or many (torchrun, DDP), resumable, exporting the backbone in the official layout.

`tasks/adapt.py` runs the same loop on the rasters being mapped, for a time budget: scene-adaptive pre-training.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..core.distributed import Ranks
from ..core.errors import EngineError, shorten
from ..core.files import atomic_write_text
from ..core.progress import CancelFn, ProgressFn, check_cancel
from ..model.config import SpecAwareConfig, preset
from ..model.mae import SpecAwareMAE
from ..model.weights import load_checkpoint
from .patches import GroupedBatchSampler, PatchSet, find_records

CSV_FIELDS = ["step", "epoch", "loss", "lr", "view_px", "bands", "samples", "seconds"]


@dataclass
class PretrainConfig:
    steps: int = 1000  # optimiser steps, counted across resumes
    minutes: float | None = None  # or stop after this much training time
    batch_size: int = 8  # per rank and micro-step
    accumulate: int = 1  # micro-steps per optimiser step
    lr: float = 1.5e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    warmup_steps: int = 20
    clip: float = 1.0
    mask_ratio: float = 0.75
    patch: int = 64  # px, for patches cut from rasters
    views: str = "progressive"  # progressive | full
    checkpoint_every: int = 100
    keep: int = 3
    seed: int = 0

    @classmethod
    def from_params(cls, params: dict) -> "PretrainConfig":
        """The fields given (not None) in a job's params or the CLI's options; defaults for the rest."""
        return cls(**{k: params[k] for k in cls.__dataclass_fields__ if params.get(k) is not None})


# Progressive multi-view schedule: (until this fraction of training, spatial share of the patch, spectral share).
SCHEDULE = [(0.3, 0.5, 0.5), (0.6, 0.75, 0.75), (1.0, 1.0, 1.0)]


def view_for(fraction: float, patch: int, bands: int, k: int, mode: str) -> tuple[int, int]:
    """(view size in px, number of bands) at this point of training; full views when `mode` is 'full'."""
    if mode == "full":
        return patch, bands
    _, spatial, spectral = next(s for s in SCHEDULE if fraction < s[0] or s is SCHEDULE[-1])
    size = max(2 * k, int(patch * spatial) // k * k)
    return size, max(min(bands, 8), int(round(bands * spectral)))


def make_view(x: torch.Tensor, wl: torch.Tensor, fw: torch.Tensor, size: int, n_bands: int,
              rng: np.random.Generator):
    """Random crop of `size` px per sample, and one spectral subset for the batch: a contiguous run of bands or
    every s-th band (the two kinds of views the schedule mixes)."""
    B, C, H, W = x.shape
    if size < H or size < W:
        ys = rng.integers(0, H - size + 1, B)
        xs = rng.integers(0, W - size + 1, B)
        x = torch.stack([x[i, :, ys[i]:ys[i] + size, xs[i]:xs[i] + size] for i in range(B)])
    if n_bands < C:
        if rng.random() < 0.5:
            start = int(rng.integers(0, C - n_bands + 1))
            idx = torch.arange(start, start + n_bands)
        else:
            step = max(1, C // n_bands)
            idx = torch.arange(int(rng.integers(0, step)), C, step)[:n_bands]
        x, wl, fw = x[:, idx], wl[idx], fw[idx]
    return x, wl, fw


def lr_at(step: int, fraction: float, cfg: PretrainConfig) -> float:
    """Linear warm-up, then cosine decay to `min_lr` over the run (by steps or by the time budget)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, fraction)))


def initial_model(init: str | None, preset_name: str) -> tuple[SpecAwareMAE, str]:
    """The MAE to start from: 'random' (a preset), a checkpoint (.pth, e.g. the official one), or a run folder."""
    if init in (None, "", "random"):
        return SpecAwareMAE(preset(preset_name)), f"random initialisation ({preset_name} preset)"
    path = Path(init)
    if path.is_dir():
        path = path / "backbone.pth" if (path / "backbone.pth").is_file() else latest_checkpoint(path)
        if path is None:
            raise EngineError(f"{shorten(init)} is a folder without backbone.pth or checkpoints/; give a pre-training "
                              "run")
    ckpt = load_checkpoint(path)
    model = SpecAwareMAE(ckpt.config)
    missing, _ = model.load_state_dict(ckpt.state_dict, strict=False)
    note = " (decoder newly initialised: the file holds the encoder only)" if missing else ""
    return model, f"{path} (E={ckpt.config.embed_dim}, depth {ckpt.config.depth}){note}"


def checkpoints(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("step-*.pt"))


def latest_checkpoint(run: Path) -> Path | None:
    found = checkpoints(run)
    return found[-1] if found else None


def save_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checksum(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:16]


class Pretrainer:
    """The MAE loop. Every rank runs it; rank 0 alone writes the CSV, the plot, checkpoints and the export."""

    def __init__(self, data: PatchSet, run: Path | None, cfg: PretrainConfig, ranks: Ranks | None = None,
                 init: str | None = None, preset_name: str = "tiny", resume: bool = False,
                 progress: ProgressFn | None = None, cancel: CancelFn | None = None):
        self.data, self.run, self.cfg = data, Path(run) if run else None, cfg
        self.ranks = ranks or Ranks()
        self.progress, self.cancel = progress, cancel
        self.step = self.epoch = 0
        state = None
        if resume:
            last = latest_checkpoint(self.run) if self.run else None
            if last is None:
                raise EngineError(f"--resume: {self.run} holds no checkpoint to resume from")
            state = torch.load(last, map_location="cpu", weights_only=True)
            self.model = SpecAwareMAE(SpecAwareConfig.from_dict(state["config"]))
            self.model.load_state_dict(state["model"])
            self.init = f"resumed from {last}"
            self.step, self.epoch = int(state["step"]), int(state["epoch"]) + 1
        else:
            self.model, self.init = initial_model(init, preset_name)
        self.model.to(self.ranks.device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                     betas=(0.9, 0.95))
        if state is not None:
            self.opt.load_state_dict(state["optimizer"])
        self.net = self.model
        if self.ranks.distributed:
            dev = [self.ranks.device.index] if self.ranks.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=dev)
        self.sampler = GroupedBatchSampler(data.groups(), cfg.batch_size, self.ranks.rank, self.ranks.world_size,
                                           cfg.seed)
        self.rng = np.random.default_rng(cfg.seed * 1009 + self.ranks.rank + 7919 * self.step)
        self.losses: list[float] = []

    # -- one optimiser step ------------------------------------------------------------------------------------
    def batch(self, indices: list[int]):
        rec = self.data.records[indices[0]]
        x = torch.from_numpy(np.stack([self.data[i] for i in indices]))
        wl = torch.tensor(rec.wavelength, dtype=torch.float32)
        fw = torch.tensor(rec.fwhm, dtype=torch.float32)
        gsd = torch.tensor([self.data.records[i].gsd for i in indices], dtype=torch.float32)
        return x, wl, fw, gsd, rec.sensor, rec.level

    def train_step(self, micro: list[list[int]], fraction: float) -> tuple[float, int, int]:
        k = self.model.cfg.patch_size
        dev = self.ranks.device
        lr = lr_at(self.step, fraction, self.cfg)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        total, view = 0.0, (0, 0)
        for n, indices in enumerate(micro):
            x, wl, fw, gsd, sensor, level = self.batch(indices)
            size, bands = view_for(fraction, min(x.shape[-2:]), x.shape[1], k, self.cfg.views)
            x, wl, fw = make_view(x, wl, fw, size, bands, self.rng)
            view = (x.shape[-1], x.shape[1])
            B = x.shape[0]
            x = x.to(dev, non_blocking=True)
            wl, fw, gsd = wl.to(dev).expand(B, -1), fw.to(dev).expand(B, -1), gsd.to(dev)
            sync = n == len(micro) - 1 or not self.ranks.distributed
            ctx = self.net.no_sync() if not sync else nullcontext()
            with ctx, torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
                loss = self.net(x, wl, fw, gsd, sensor, level, mask_ratio=self.cfg.mask_ratio)["loss"] / len(micro)
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        self.opt.step()
        self.step += 1
        return total, view[0], view[1]

    # -- the loop ------------------------------------------------------------------------------------------------
    def fit(self) -> dict:
        cfg, ranks = self.cfg, self.ranks
        t0 = time.perf_counter()
        budget = cfg.minutes * 60 if cfg.minutes else None
        if ranks.main and self.run:
            self.run.mkdir(parents=True, exist_ok=True)
        samples = 0
        while self.step < cfg.steps:
            self.sampler.set_epoch(self.epoch)
            batches = list(self.sampler)
            for i in range(0, len(batches) - cfg.accumulate + 1, cfg.accumulate):
                elapsed = time.perf_counter() - t0
                fraction = max(self.step / cfg.steps, elapsed / budget if budget else 0.0)
                if self.stop(budget is not None and elapsed >= budget) or self.step >= cfg.steps:
                    break
                loss, px, bands = self.train_step(batches[i:i + cfg.accumulate], fraction)
                loss = self.mean_across_ranks(loss)
                self.losses.append(loss)
                samples += cfg.batch_size * cfg.accumulate * ranks.world_size
                if ranks.main:
                    self.log({"step": self.step, "epoch": self.epoch, "loss": f"{loss:.6f}",
                              "lr": f"{self.opt.param_groups[0]['lr']:.3e}", "view_px": px, "bands": bands,
                              "samples": samples, "seconds": f"{time.perf_counter() - t0:.2f}"})
                    if self.progress:
                        self.progress(min(1.0, fraction), f"MAE step {self.step} · loss {loss:.4f} · "
                                      f"view {px} px × {bands} bands")
                    if self.run and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
            else:
                self.epoch += 1
                continue
            break
        sums = ranks.gather(checksum(self.model))
        summary = {"steps": self.step, "epoch": self.epoch, "world_size": ranks.world_size,
                   "samples_this_run": samples, "seconds": round(time.perf_counter() - t0, 1),
                   "loss_first": self.losses[0] if self.losses else None,
                   "loss_last": float(np.mean(self.losses[-5:])) if self.losses else None,
                   "rank_checksums": sums, "init": self.init, "pretrain": asdict(cfg),
                   "config": self.model.cfg.to_dict(), "data": self.data.summary()}
        if ranks.main and self.run:
            if cfg.checkpoint_every:
                self.save_checkpoint()
            self.export(self.run / "backbone.pth", summary)
            plot_losses(self.run / "loss.csv", self.run / "loss.png")
        ranks.barrier()
        return summary

    def stop(self, local: bool) -> bool:
        """Stop on the time budget or a cancel; all ranks decide together so none waits in a collective."""
        check_cancel(self.cancel, "pre-training")
        if not self.ranks.distributed:
            return local
        flag = torch.tensor([1.0 if local else 0.0], device=self.ranks.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def mean_across_ranks(self, value: float) -> float:
        if not self.ranks.distributed:
            return value
        t = torch.tensor([value], device=self.ranks.device)
        dist.all_reduce(t)
        return float(t.item()) / self.ranks.world_size

    def log(self, row: dict) -> None:
        if not self.run:
            return
        path = self.run / "loss.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, CSV_FIELDS)
            if new:
                w.writeheader()
            w.writerow(row)

    def save_checkpoint(self) -> None:
        path = self.run / "checkpoints" / f"step-{self.step:08d}.pt"
        save_atomic({"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "step": self.step,
                     "epoch": self.epoch, "config": self.model.cfg.to_dict(), "pretrain": asdict(self.cfg)}, path)
        for old in checkpoints(self.run)[:-self.cfg.keep]:
            old.unlink()

    def export(self, path: Path, summary: dict) -> None:
        """The MAE state dict in the published checkpoint's key layout, and a manifest beside it."""
        save_atomic({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, path)
        manifest = path.with_name("manifest.json") if path.name == "backbone.pth" else path.with_suffix(".json")
        atomic_write_text(manifest, json.dumps({**summary, "backbone": str(path)}, indent=1))


def plot_losses(csv_path: Path, png_path: Path, width: int = 640, height: int = 320) -> None:
    """The loss curve as a PNG written by GDAL: steps on x, loss on y, grey frame, blue line (CSV only where
    GDAL is not installed, e.g. on a GPU node)."""
    try:
        from osgeo import gdal  # optional: GPU nodes may lack GDAL, and then only the CSV is written
    except ImportError:
        return
    rows = list(csv.DictReader(open(csv_path))) if csv_path.exists() else []
    if len(rows) < 2:
        return
    steps = np.array([float(r["step"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    img = np.full((3, height, width), 255, np.uint8)
    m = 20
    img[:, m, m:width - m] = img[:, height - m, m:width - m] = 160
    img[:, m:height - m, m] = img[:, m:height - m, width - m] = 160
    lo, hi = float(loss.min()), float(loss.max()) or 1.0
    xs = m + (steps - steps[0]) / max(1.0, steps[-1] - steps[0]) * (width - 2 * m - 1)
    ys = height - m - (loss - lo) / max(hi - lo, 1e-12) * (height - 2 * m - 1)
    for (x0, y0), (x1, y1) in zip(zip(xs[:-1], ys[:-1]), zip(xs[1:], ys[1:])):
        n = int(max(abs(x1 - x0), abs(y1 - y0))) + 2
        px, py = np.linspace(x0, x1, n).round().astype(int), np.linspace(y0, y1, n).round().astype(int)
        for c, v in enumerate((31, 119, 180)):
            img[c, py, px] = v
            img[c, np.clip(py + 1, 0, height - 1), px] = v
    mem = gdal.GetDriverByName("MEM").Create("", width, height, 3, gdal.GDT_Byte)
    mem.WriteRaster(0, 0, width, height, img.tobytes())
    tmp = png_path.with_name(f".{png_path.name}.part")
    gdal.GetDriverByName("PNG").CreateCopy(str(tmp), mem)
    Path(str(tmp) + ".aux.xml").unlink(missing_ok=True)
    os.replace(tmp, png_path)


def pretrain(data: list[str], run: str, cfg: PretrainConfig, ranks: Ranks | None = None, init: str | None = None,
             preset_name: str = "tiny", resume: bool = False, progress: ProgressFn | None = None,
             cancel: CancelFn | None = None) -> dict:
    """Pre-train on Hyper-400K folders, raster folders or rasters; writes RUN/backbone.pth and RUN/manifest.json."""
    records = [r for d in data for r in find_records(d, cfg.patch)]
    trainer = Pretrainer(PatchSet(records), Path(run), cfg, ranks, init, preset_name, resume, progress, cancel)
    return trainer.fit()
