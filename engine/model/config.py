"""Model configurations: the published Base and the smaller presets for CPU work."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..core.errors import EngineError


@dataclass
class SpecAwareConfig:
    """Every size the model needs; names match the golden files' `config` dicts."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    patch_size: int = 8
    img_size: int = 224
    mlp_ratio: float = 4.0
    wv_planes: int = 128
    rank: int = 64
    ln_eps: float = 1e-6
    content_grid: int = 28
    content_hidden: int = 196
    feature_blocks: list[int] = field(default_factory=list)
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mask_ratio: float = 0.75

    def __post_init__(self):
        if not self.feature_blocks:
            d = self.depth
            self.feature_blocks = sorted({max(0, round(d * q) - 1) for q in (0.25, 0.5, 0.75, 1.0)})
        self.feature_blocks = [int(b) for b in self.feature_blocks]

    @classmethod
    def from_dict(cls, d: dict) -> "SpecAwareConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "base": dict(embed_dim=768, depth=12, num_heads=12, decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16),
    "small": dict(embed_dim=384, depth=12, num_heads=6, decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8),
    "tiny": dict(embed_dim=192, depth=6, num_heads=3, decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4),
}


def preset(name: str, **overrides) -> SpecAwareConfig:
    """Config for a named preset (`base` is the published model)."""
    if name not in PRESETS:
        raise EngineError(f"unknown model preset {name!r}: use one of {', '.join(PRESETS)}")
    return SpecAwareConfig(**{**PRESETS[name], **overrides})
