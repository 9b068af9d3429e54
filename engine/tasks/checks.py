"""Quick questions: the sensor profiles on offer, whether a file is a SpecAware checkpoint, whether the model
matches the authors' golden tensors, and versions for a bug report."""
from __future__ import annotations

import platform
import sys
from dataclasses import dataclass

import numpy as np
import torch
from osgeo import gdal

from .. import __version__
from ..core.paths import data_dir
from ..core.progress import CancelFn, ProgressFn
from ..core.request import Request, param
from ..core.runtime import Runtime
from ..core.vocabulary import DEVICES
from ..io.sensors import all_profiles
from ..model.golden import run_golden
from ..model.weights import load_checkpoint


@dataclass(kw_only=True)
class ProfilesRequest(Request):
    job = "profiles"
    summary = "the sensor profiles a user can choose (built-in and custom)"


def profiles(req: ProfilesRequest, runtime: Runtime | None = None, progress: ProgressFn | None = None,
             cancel: CancelFn | None = None) -> dict:
    return {"profiles": [{"key": k, "name": p.name, "sensor": p.sensor, "level": p.level, "bands": p.n_bands}
                         for k, p in all_profiles().items()]}


@dataclass(kw_only=True)
class InspectWeightsRequest(Request):
    job = "inspect-weights"
    summary = "check a SpecAware checkpoint and print its configuration"
    path: str = param(help="the checkpoint file (.pth)", kind="file", positional=True)
    num_heads: int | None = param(None, "attention heads, when the width is not a preset's", lo=1, hi=256)


def inspect_weights(req: InspectWeightsRequest, runtime: Runtime | None = None, progress: ProgressFn | None = None,
                    cancel: CancelFn | None = None) -> dict:
    return load_checkpoint(req.path, num_heads=req.num_heads).summary()


@dataclass(kw_only=True)
class GoldenRequest(Request):
    job = "verify-golden"
    summary = "compare the engine model with golden reference files"
    files: list[str] = param(help="golden files made by the authors' reference code", kind="file", positional=True)
    device: str = param("cpu", "cpu (default) or cuda: check the model on the GPU", choices=DEVICES)


def verify_golden(req: GoldenRequest, runtime: Runtime | None = None, progress: ProgressFn | None = None,
                  cancel: CancelFn | None = None) -> dict:
    rows = [{"file": path, "output": name, "max_abs_diff": diff, "max_abs_reference": scale, "ok": ok}
            for path in req.files for name, diff, scale, ok in run_golden(path, req.device)]
    return {"rows": rows, "ok": all(r["ok"] for r in rows)}


@dataclass(kw_only=True)
class DiagnosticsRequest(Request):
    job = "diagnostics"
    summary = "versions and device, for a bug report"


def diagnostics(req: DiagnosticsRequest, runtime: Runtime | None = None, progress: ProgressFn | None = None,
                cancel: CancelFn | None = None) -> dict:
    return {"engine": __version__, "python": sys.version.split()[0], "executable": sys.executable,
            "platform": platform.platform(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(), "gdal": gdal.__version__, "numpy": np.__version__,
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "device": runtime.device_name if runtime else "CPU", "data_dir": str(data_dir())}
