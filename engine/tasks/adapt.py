"""`adapt`: scene-adaptive pre-training. The MAE continues on the rasters being mapped for a time budget, and the
backbone is written in the official layout (it loads wherever the official file loads), with a manifest."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.distributed import Ranks
from ..core.errors import EngineError
from ..core.paths import configured_checkpoint
from ..core.progress import CancelFn, ProgressFn
from ..core.request import Request, param
from ..core.runtime import Runtime
from ..core.vocabulary import PRESETS
from ..io.datasets import open_raster
from ..learn.patches import PatchSet, raster_records
from ..learn.pretrain import PretrainConfig, Pretrainer


@dataclass(kw_only=True)
class AdaptRequest(Request):
    job = "adapt"
    summary = "scene-adaptive MAE pre-training on the rasters being mapped"
    computes = True
    raster: list[str] = param(help="a raster to adapt to (repeatable)", kind="raster")
    minutes: float = param(help="time budget in minutes", lo=0.0, hi=10000.0, lo_open=True)
    out: str = param(help="the adapted backbone, a .pth file", kind="out-file")
    overwrite: bool = param(False, "replace the output file if it exists (never done otherwise)")
    backbone: str | None = param(None, "start from this checkpoint (default: the configured one, else random)",
                                 kind="model")
    preset: str = param("tiny", "preset when starting from random", choices=PRESETS)
    patch: int = param(64, "patch size in px (smaller on a small scene)", lo=16, hi=1024)
    batch_size: int = param(8, "patches per step", lo=1, hi=1024)
    seed: int = param(0, "random seed", lo=0, hi=2**31 - 1)
    profile: str | None = param(None, "sensor profile for rasters without wavelength metadata")

    def check(self) -> None:
        if not self.raster:
            raise EngineError("adapt needs at least one raster")
        if not str(self.out).endswith((".pth", ".pt")):
            raise EngineError(f"out {self.out}: give a file name ending in .pth for the adapted backbone")

    def output_paths(self) -> list[Path]:
        return [Path(self.out), Path(self.out).with_suffix(".json")]


def adapt(req: AdaptRequest, runtime: Runtime | None = None, progress: ProgressFn | None = None,
          cancel: CancelFn | None = None) -> dict:
    """Continue the MAE on `req.raster` for `req.minutes`, then write the backbone to `req.out`."""
    ckpt = configured_checkpoint()
    init = req.backbone or (str(ckpt) if ckpt else "random")
    side = min(min(ds.RasterXSize, ds.RasterYSize) for ds in map(open_raster, req.raster))
    patch = min(req.patch, max(16, side // 8 * 8))  # a small scene still adapts, with smaller patches
    cfg = PretrainConfig(steps=10 ** 9, minutes=req.minutes, batch_size=req.batch_size, patch=patch,
                         checkpoint_every=0, warmup_steps=10, seed=req.seed)
    device = runtime.device if runtime else Runtime("cpu").device
    trainer = Pretrainer(PatchSet(raster_records(req.raster, patch, profile=req.profile)), None, cfg,
                         Ranks(device=device), init, req.preset, progress=progress, cancel=cancel)
    summary = trainer.fit()
    out = Path(req.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    trainer.export(out, {**summary, "rasters": [str(r) for r in req.raster]})
    return {**{k: summary[k] for k in ("steps", "seconds", "loss_first", "loss_last", "init")},
            "backbone": str(out), "manifest": str(out.with_suffix(".json"))}
