"""SpecAware model parts in plain PyTorch, with the reference's parameter names."""
from .config import PRESETS, SpecAwareConfig, preset
from .mae import SpecAwareMAE
from .vit import SpecAwareEncoder

__all__ = ["PRESETS", "SpecAwareConfig", "SpecAwareEncoder", "SpecAwareMAE", "preset"]
