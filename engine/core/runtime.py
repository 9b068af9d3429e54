"""Where the engine computes (CUDA when available unless told `cpu`), the models it keeps warm, and the
wrapper that runs a torch forward on a NumPy batch there."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .errors import EngineError


class Runtime:
    """Device choice and a small cache of loaded models shared by the jobs of one worker."""

    def __init__(self, device: str | None = None):
        want = (device or "auto").lower()
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want.startswith("cuda") and not torch.cuda.is_available():
            raise EngineError("CUDA was requested but torch sees no CUDA device; use device 'cpu'")
        self.device = torch.device(want)
        self.models: dict[str, object] = {}

    @property
    def device_name(self) -> str:
        if self.device.type == "cuda":
            return f"CUDA: {torch.cuda.get_device_name(self.device)}"
        return "CPU"

    def cached(self, key: str, load):
        """The model stored under key, loading it once with `load()`."""
        if key not in self.models:
            self.models.clear()  # one model at a time keeps GPU memory predictable
            self.models[key] = load()
        return self.models[key]

    def model_fn(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[np.ndarray], np.ndarray]:
        """NumPy batch → NumPy scores through `forward` on this device (bf16 on CUDA).

        Its `empty(shape)` gives float32 host buffers to fill with batches: page-locked on CUDA, so that the
        copy to the device is one direct transfer instead of a copy into pinned memory first.
        """
        device, cuda = self.device, self.device.type == "cuda"

        def model_fn(batch: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(batch)
            if cuda and not x.is_pinned():
                x = x.pin_memory()
            x = x.to(device, non_blocking=True)
            with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=cuda):
                return forward(x).float().cpu().numpy()

        def empty(shape: tuple[int, ...]) -> np.ndarray:
            if cuda:
                return torch.empty(shape, dtype=torch.float32, pin_memory=True).numpy()
            return np.empty(shape, np.float32)

        model_fn.empty = empty
        return model_fn
