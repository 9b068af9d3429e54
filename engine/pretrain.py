"""Scene-adaptive MAE pre-training: continue SpecAware's masked-autoencoder objective on the analyst's own
scene for a fixed time budget, then hand the encoder to fine-tuning.

This is the plain single-process loop; multi-view and distributed pre-training belong to the pre-training issue.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .errors import Cancelled
from .model.config import SpecAwareConfig
from .model.mae import SpecAwareMAE
from .model.segmenter import SpectralInput
from .model.weights import ENCODER_PREFIXES
from .train import SceneReader, dihedral


def adapt_encoder(source, cfg: SpecAwareConfig, seconds: float, window: int = 64, batch_size: int = 8,
                  lr: float = 1.5e-4, init_encoder: dict | None = None, seed: int = 0, device="cpu",
                  progress=None, cancel=None) -> tuple[dict, dict]:
    """Train the MAE on random windows of `source` for `seconds`; returns (encoder state dict, summary)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SpecAwareMAE(cfg).to(device)
    if init_encoder:
        model.load_state_dict(init_encoder, strict=False)
    reader = SceneReader(source, window)
    spec = SpectralInput.from_source(source)
    xs = reader.grid.columns[-1] if source.width > window else 0
    ys = reader.grid.rows[-1] if source.height > window else 0
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05, betas=(0.9, 0.95))
    t0, step, losses = time.perf_counter(), 0, []
    model.train()
    while time.perf_counter() - t0 < seconds:
        if cancel and cancel():
            raise Cancelled("pre-training cancelled by the user")
        batch = []
        for _ in range(batch_size):
            x0, y0 = int(rng.integers(0, xs + 1)), int(rng.integers(0, ys + 1))
            batch.append(dihedral(reader.read(x0, y0)[0], int(rng.integers(0, 8))))
        x = torch.from_numpy(np.stack(batch)).to(device)
        wl, fw, gsd = spec.tensors(len(batch), device)
        for g in opt.param_groups:  # warm up over the first 20 steps, then hold
            g["lr"] = lr * min(1.0, (step + 1) / 20)
        out = model(x, wl, fw, gsd, spec.sensor, spec.level)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
        step += 1
        if progress and step % 5 == 0:
            elapsed = time.perf_counter() - t0
            progress(min(1.0, elapsed / seconds), f"MAE step {step} · loss {np.mean(losses[-5:]):.4f}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items() if k.startswith(ENCODER_PREFIXES)}
    return state, {"steps": step, "seconds": round(time.perf_counter() - t0, 1),
                   "loss_first": losses[0] if losses else None, "loss_last": float(np.mean(losses[-10:]))
                   if losses else None}
