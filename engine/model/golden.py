"""Check the engine model against golden files made by running the authors' reference code."""
from __future__ import annotations

from pathlib import Path

import torch

from ..core.errors import EngineError, shorten
from .config import SpecAwareConfig
from .mae import SpecAwareMAE
from .vit import SpecAwareEncoder

ABS_TOL = 1e-4
REL_TOL = 1e-3


def run_golden(path: str | Path, device: str = "cpu") -> list[tuple[str, float, float, bool]]:
    """(output name, max |diff|, max |reference|, ok) for each output of one golden file, computed in fp32 on
    `device` (TF32 off, so a GPU is held to the same tolerance as the CPU)."""
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise EngineError(f"{shorten(path)}: not a readable golden file ({str(e).splitlines()[0]})") from e
    missing = {"config", "state_dict", "inputs", "outputs"} - set(doc)
    if missing:
        raise EngineError(f"{shorten(path)}: golden file lacks {sorted(missing)}")
    cfg = SpecAwareConfig.from_dict(doc["config"])
    is_mae = "decoder_embed_dim" in doc["config"]
    model = (SpecAwareMAE if is_mae else SpecAwareEncoder)(cfg).float().eval()
    model.load_state_dict(doc["state_dict"], strict=True)
    model.to(device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    i = doc["inputs"]
    on = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
    args = (on(i["x"].float()), on(i["wavelength"].float()), on(i["fwhm"].float()), on(i["gsd"]), i["sensor_name"],
            i["data_level"])
    with torch.no_grad():
        out = model(*args, noise=on(i.get("noise"))) if is_mae else model(*args, return_all=True)
    out = {k: ([t.cpu() for t in v] if isinstance(v, (list, tuple)) else v.cpu() if isinstance(v, torch.Tensor)
               else v) for k, v in out.items()}
    rows = []
    for name, ref in doc["outputs"].items():
        refs, gots = (list(ref), list(out[name])) if isinstance(ref, (list, tuple)) else ([ref], [out[name]])
        for j, (r, g) in enumerate(zip(refs, gots)):
            label = name if len(refs) == 1 else f"{name}[{j}]"
            if g.shape != r.shape:
                rows.append((label, float("inf"), float(r.abs().max()), False))
                continue
            diff = float((g.float() - r.float()).abs().max())
            scale = float(r.abs().max())
            rows.append((label, diff, scale, diff <= ABS_TOL and diff <= REL_TOL * max(scale, 1e-30)))
    return rows
