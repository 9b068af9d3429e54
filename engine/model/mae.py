"""SpecAware masked autoencoder: encoder + light decoder + HyperLinear prediction, and the paper's loss."""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import SpecAwareConfig
from .hyper import MatrixGenerator
from .spectral import CrossModalFusion
from .vit import Block, SpecAwareEncoder, sincos_pos_embed


class AttentionPool(nn.Module):
    """Pool tokens [B, L, D] to [B, 1, D] with one query made from their mean (no biases)."""

    def __init__(self, dim: int, key_dim: int = 64):
        super().__init__()
        self.query_proj = nn.Linear(dim, key_dim, bias=False)
        self.key_proj = nn.Linear(dim, key_dim, bias=False)
        self.value_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.query_proj(x.mean(dim=1, keepdim=True))
        k = self.key_proj(x)
        attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(k.shape[-1]), dim=-1)
        return attn @ self.value_proj(x)


class HyperLinear(nn.Module):
    """`decoder_pred`: decoder tokens [B, L, D] → per-band pixel values [B, L, k²·C] (pixel-major)."""

    def __init__(self, dim: int, patch_size: int, wv_planes: int = 128, rank: int = 64):
        super().__init__()
        self.k2 = patch_size ** 2
        self.rank = rank
        self.dim = dim
        self.x_attention_pool = AttentionPool(dim)
        self.x_feature_extractor = nn.Sequential(nn.Linear(dim, wv_planes), nn.GELU(), nn.Linear(wv_planes, wv_planes))
        self.matrix_generator = MatrixGenerator(wv_planes, self.k2 * rank, rank * dim, self.k2)
        self.feature_fusion = CrossModalFusion(wv_planes)

    def forward(self, x: torch.Tensor, enhanced_meta: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        C = enhanced_meta.shape[1]
        content = self.x_feature_extractor(self.x_attention_pool(x)).expand(-1, C, -1)
        g = self.feature_fusion(enhanced_meta, content) + content
        gen = self.matrix_generator
        U = gen.u_generator(g).reshape(B, C, self.k2, self.rank)
        V = gen.v_generator(g).reshape(B, C * self.rank, D)
        bias = gen.bias_generator(g)  # [B, C, k²]: one bias per band
        low_rank = (x @ V.transpose(1, 2)).reshape(B, L, C, self.rank)
        out = torch.einsum("blcr,bcpr->blpc", low_rank, U) + bias.transpose(1, 2).unsqueeze(1)
        return out.reshape(B, L, self.k2 * C)


def patchify(imgs: torch.Tensor, k: int) -> torch.Tensor:
    """[B, C, H, W] → [B, L, k²·C], pixel-major and band-minor like the reference."""
    B, C, H, W = imgs.shape
    h, w = H // k, W // k
    x = imgs.reshape(B, C, h, k, w, k).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(B, h * w, k * k * C)


def unpatchify(x: torch.Tensor, k: int, C: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `patchify`."""
    B = x.shape[0]
    x = x.reshape(B, h, w, k, k, C).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(B, C, h * k, w * k)


def random_masking(n_batch: int, n_tokens: int, mask_ratio: float, noise: torch.Tensor | None = None,
                   device=None):
    """Indices to keep, the restore order and the mask (1 = removed) from argsorted noise."""
    if noise is None:
        noise = torch.rand(n_batch, n_tokens, device=device)
    len_keep = int(n_tokens * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    mask = torch.ones(n_batch, n_tokens, device=noise.device)
    mask[:, :len_keep] = 0
    return ids_keep, ids_restore, torch.gather(mask, 1, ids_restore)


def mae_loss(imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """1 − spectral cosine + 2 × Charbonnier, both averaged over the masked pixels."""
    B, C, H, W = imgs.shape
    pred_img = unpatchify(pred, k, C, H // k, W // k)
    pixel_mask = mask.reshape(B, 1, H // k, W // k).float()
    pixel_mask = torch.nn.functional.interpolate(pixel_mask, size=(H, W), mode="nearest")[:, 0]
    denom = pixel_mask.sum() + 1e-6
    cos = torch.nn.functional.cosine_similarity(pred_img, imgs, dim=1, eps=1e-8)
    charbonnier = (torch.sqrt((pred_img - imgs) ** 2 + 1.0) - 1.0).mean(dim=1)
    loss_spectral = ((1 - cos) * pixel_mask).sum() / denom
    loss_charbonnier = 2.0 * (charbonnier * pixel_mask).sum() / denom
    return {"loss_spectral": loss_spectral, "loss_charbonnier": loss_charbonnier,
            "loss": loss_spectral + loss_charbonnier}


class SpecAwareMAE(SpecAwareEncoder):
    """Full pre-training model; its state dict is the published checkpoint's layout."""

    def __init__(self, cfg: SpecAwareConfig):
        super().__init__(cfg)
        D = cfg.decoder_embed_dim
        self.decoder_embed = nn.Linear(cfg.embed_dim, D)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, D))
        self.decoder_blocks = nn.ModuleList(Block(D, cfg.decoder_num_heads, cfg.mlp_ratio, cfg.ln_eps)
                                            for _ in range(cfg.decoder_depth))
        self.decoder_norm = nn.LayerNorm(D, eps=cfg.ln_eps)
        self.decoder_pred = HyperLinear(D, cfg.patch_size, cfg.wv_planes, cfg.rank)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, x, wavelength, fwhm, gsd, sensor: str, level: str, noise: torch.Tensor | None = None,
                mask_ratio: float | None = None):
        """Loss terms, `pred` [B, L, k²·C] and `mask` [B, L] for one batch."""
        k = self.cfg.patch_size
        h, w = x.shape[2] // k, x.shape[3] // k
        gsd = torch.as_tensor(gsd, device=x.device)
        z, _, _, enhanced = self.embed(x, wavelength, fwhm, gsd, sensor, level)
        B, L, E = z.shape
        ratio = self.cfg.mask_ratio if mask_ratio is None else mask_ratio
        ids_keep, ids_restore, mask = random_masking(B, L, ratio, noise, x.device)
        z = torch.gather(z, 1, ids_keep.unsqueeze(-1).expand(-1, -1, E))
        z = self.with_cls(z)
        for blk in self.blocks:
            z = blk(z)
        z = self.norm(z)

        d = self.decoder_embed(z)
        D = d.shape[-1]
        fill = self.mask_token.to(d.dtype).expand(B, L + 1 - d.shape[1], -1)
        body = torch.cat([d[:, 1:], fill], dim=1)
        body = torch.gather(body, 1, ids_restore.unsqueeze(-1).expand(-1, -1, D))
        body = body + sincos_pos_embed(D, h, w, gsd).to(d.dtype)
        d = torch.cat([d[:, :1], body], dim=1)
        for blk in self.decoder_blocks:
            d = blk(d)
        d = self.decoder_norm(d)
        pred = self.decoder_pred(d, enhanced)[:, 1:]
        out = mae_loss(x, pred, mask, k)
        out.update(pred=pred, mask=mask)
        return out
