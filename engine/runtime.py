"""Where the engine computes (CUDA when available unless told `cpu`) and the models it keeps warm."""
from __future__ import annotations

import torch


class Runtime:
    """Device choice and a small cache of loaded models shared by the jobs of one worker."""

    def __init__(self, device: str | None = None):
        want = (device or "auto").lower()
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want.startswith("cuda") and not torch.cuda.is_available():
            from .errors import EngineError
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
