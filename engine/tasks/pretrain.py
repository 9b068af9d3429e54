"""`pretrain` (MAE pre-training, one process or a torchrun launch) and `make-patches` (Hyper-400K-style .npz
patches from rasters)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.distributed import Ranks
from ..core.progress import CancelFn, ProgressFn
from ..core.request import Request, param
from ..core.runtime import Runtime
from ..core.vocabulary import PRESETS
from ..learn.patches import write_patches
from ..learn.pretrain import PretrainConfig, pretrain

DEFAULTS = PretrainConfig()


@dataclass(kw_only=True)
class PretrainRequest(Request):
    job = "pretrain"
    summary = "MAE pre-training; run it under torchrun for several GPUs or nodes"
    computes = True
    data: list[str] = param(help="a Hyper-400K folder (manifest.csv + .npz), a folder of rasters, or a raster "
                                 "(repeatable)", kind="path")
    out: str = param(help="run folder: checkpoints/, loss.csv, loss.png, backbone.pth", kind="out-dir")
    init: str | None = param(None, "random (default), a checkpoint .pth (e.g. the official one), or a run folder",
                             kind="model")
    preset: str = param("tiny", "preset when starting from random", choices=PRESETS)
    resume: bool = param(False, "continue the run in --out from its last checkpoint")
    steps: int = param(DEFAULTS.steps, "optimiser steps, counted across resumes", lo=1, hi=10**9)
    minutes: float | None = param(None, "or stop after this much training time", lo=0.0, lo_open=True)
    batch_size: int = param(DEFAULTS.batch_size, "patches per rank and micro-step", lo=1, hi=4096)
    accumulate: int = param(DEFAULTS.accumulate, "micro-steps per optimiser step", lo=1, hi=1024)
    lr: float = param(DEFAULTS.lr, "peak learning rate", lo=0.0, hi=1.0, lo_open=True)
    warmup_steps: int = param(DEFAULTS.warmup_steps, "linear warm-up steps", lo=0, hi=10**9)
    patch: int = param(DEFAULTS.patch, "patch size in px for patches cut from rasters", lo=16, hi=1024)
    checkpoint_every: int = param(DEFAULTS.checkpoint_every, "steps between checkpoints (0 = only at the end)",
                                  lo=0, hi=10**9)
    keep: int = param(DEFAULTS.keep, "checkpoints kept", lo=1, hi=1000)
    seed: int = param(DEFAULTS.seed, "random seed", lo=0, hi=2**31 - 1)
    mask_ratio: float = param(DEFAULTS.mask_ratio, "share of tokens masked", lo=0.0, hi=0.99, lo_open=True)
    views: str = param(DEFAULTS.views, "progressive multi-view schedule or full views", choices=("progressive", "full"))

    def config(self) -> PretrainConfig:
        return PretrainConfig.from_params(self.to_params())

    def output_paths(self) -> list[Path]:
        return [Path(self.out) / n for n in ("backbone.pth", "manifest.json", "loss.csv", "loss.png")]


def run_pretrain(req: PretrainRequest, runtime: Runtime | None = None, progress: ProgressFn | None = None,
                 cancel: CancelFn | None = None, ranks: Ranks | None = None) -> dict:
    """Pre-train in this process (or as one rank of a torchrun launch when `ranks` says so)."""
    ranks = ranks or Ranks(device=(runtime or Runtime("cpu")).device)
    summary = pretrain(req.data, req.out, req.config(), ranks, req.init, req.preset, req.resume, progress, cancel)
    return {**summary, "backbone": str(Path(req.out) / "backbone.pth")}


@dataclass(kw_only=True)
class MakePatchesRequest(Request):
    job = "make-patches"
    summary = "write Hyper-400K-style .npz patches and manifest.csv from rasters"
    raster: list[str] = param(help="a raster to cut into patches (repeatable)", kind="raster")
    out: str = param(help="output folder", kind="out-dir")
    patch: int = param(64, "patch size in px", lo=16, hi=1024)

    def output_paths(self) -> list[Path]:
        return [Path(self.out) / "manifest.csv"]


def make_patches(req: MakePatchesRequest, runtime: Runtime | None = None, progress: ProgressFn | None = None,
                 cancel: CancelFn | None = None) -> dict:
    return {"manifest": str(write_patches(req.raster, req.out, req.patch))}
