"""The SpecAware ViT encoder: HyperEmbedding tokens, GSD-scaled sin-cos positions, pre-norm blocks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import EngineError
from .config import SpecAwareConfig
from .hyper import HyperEmbedding


class Attention(nn.Module):
    """Multi-head self-attention through torch's fused scaled_dot_product_attention."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, D))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with timm's parameter names."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def sincos_pos_embed(dim: int, h: int, w: int, gsd: torch.Tensor) -> torch.Tensor:
    """Scale-MAE positions [B, h·w, dim]: grid coordinates times the GSD, column half first, float64."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64, device=gsd.device) / (dim / 4))
    i, j = torch.meshgrid(torch.arange(h, dtype=torch.float64, device=gsd.device),
                          torch.arange(w, dtype=torch.float64, device=gsd.device), indexing="ij")
    s = gsd.double().reshape(-1, 1, 1)
    x = (j.reshape(1, -1, 1) * s) * omega
    y = (i.reshape(1, -1, 1) * s) * omega
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=-1).float()


class SpecAwareEncoder(nn.Module):
    """The encoder of the published checkpoint: `cls_token`, `patch_embed.*`, `blocks.*`, `norm.*`."""

    def __init__(self, cfg: SpecAwareConfig):
        super().__init__()
        self.cfg = cfg
        E = cfg.embed_dim
        self.patch_embed = HyperEmbedding(E, cfg.patch_size, cfg.wv_planes, cfg.rank, cfg.content_grid,
                                          cfg.content_hidden)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, E))
        self.blocks = nn.ModuleList(Block(E, cfg.num_heads, cfg.mlp_ratio, cfg.ln_eps) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(E, eps=cfg.ln_eps)
        nn.init.normal_(self.cls_token, std=0.02)

    def embed(self, x, wavelength, fwhm, gsd, sensor: str, level: str):
        """Patch tokens with positions [B, N, E], plus the raw tokens and both meta embeddings."""
        self._check_input(x, wavelength, fwhm)
        tokens, meta, enhanced = self.patch_embed(x, wavelength, fwhm, sensor, level)
        k = self.cfg.patch_size
        pos = sincos_pos_embed(self.cfg.embed_dim, x.shape[2] // k, x.shape[3] // k, torch.as_tensor(gsd))
        return tokens + pos.to(tokens.dtype), tokens, meta, enhanced

    def _check_input(self, x, wavelength, fwhm):
        k = self.cfg.patch_size
        if x.ndim != 4 or x.shape[2] % k or x.shape[3] % k:
            raise EngineError(f"model input must be [B, C, H, W] with H and W multiples of the patch size {k}; "
                              f"got {tuple(x.shape)}")
        if wavelength.shape != x.shape[:2] or fwhm.shape != x.shape[:2]:
            raise EngineError(f"wavelength {tuple(wavelength.shape)} and fwhm {tuple(fwhm.shape)} must be [B, C] = "
                              f"{tuple(x.shape[:2])}: one value per band")

    def with_cls(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)

    def forward(self, x, wavelength, fwhm, gsd, sensor: str, level: str, return_all: bool = False):
        """Final normalised tokens [B, 1+N, E]; with return_all a dict that also holds the taps."""
        k = self.cfg.patch_size
        h, w = x.shape[2] // k, x.shape[3] // k
        z, patch_tokens, meta, enhanced = self.embed(x, wavelength, fwhm, gsd, sensor, level)
        z = self.with_cls(z)
        taps = []
        last = len(self.blocks) - 1
        for i, blk in enumerate(self.blocks):
            z = blk(z)
            if i == last:
                z = self.norm(z)
            if i in self.cfg.feature_blocks:
                taps.append(z[:, 1:].transpose(1, 2).reshape(z.shape[0], -1, h, w))
        if not return_all:
            return z
        return {"tokens": z, "features": taps, "patch_tokens": patch_tokens, "meta_embedding": meta,
                "enhanced_meta_embedding": enhanced}

    def features(self, x, wavelength, fwhm, gsd, sensor: str, level: str) -> list[torch.Tensor]:
        """The four segmentation taps, each [B, E, h, w]."""
        return self.forward(x, wavelength, fwhm, gsd, sensor, level, return_all=True)["features"]
