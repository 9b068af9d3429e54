"""HyperEmbedding: patch-embedding weights generated per image from sensor metadata and content.

The tokens are computed without the [B, N, C, E] tensor of the reference code: the per-band low-rank
factors are first merged into one [C·k², E] weight (cheap), then all bands and pixels of a patch are
contracted in a single matrix product, row block by row block so the unfolded patches stay small.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .spectral import CrossModalFusion, SpectralAwareTransformer, SpectralEmbedding

# Unfolded patches are built this many bytes at a time on the CPU; the matmul stays large enough to run at full
# speed there. A GPU takes them in one piece: each piece reads the per-image weights again (42 MB a Base tile in
# bf16), and with one patch row a piece the product is bound by that reading, not by arithmetic.
PATCH_CHUNK_BYTES = 32 * 2**20


class ContentFeatureExtractor(nn.Module):
    """Per-band content vector [B, C, 128] from adaptive average and max pooling to a fixed grid."""

    def __init__(self, grid: int = 28, hidden: int = 196, dim: int = 128, dropout: float = 0.1):
        super().__init__()
        self.grid = grid
        n = grid * grid
        self.avg_feature_encoder = nn.Sequential(nn.Linear(n, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.max_feature_encoder = nn.Sequential(nn.Linear(n, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.feature_fusion = nn.Sequential(nn.Linear(2 * dim, 2 * dim), nn.GELU(), nn.Dropout(dropout),
                                            nn.Linear(2 * dim, dim))
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = F.adaptive_avg_pool2d(x, self.grid).flatten(2)
        mx = F.adaptive_max_pool2d(x, self.grid).flatten(2)
        both = torch.cat([self.avg_feature_encoder(avg), self.max_feature_encoder(mx)], dim=-1)
        return self.layer_norm(self.feature_fusion(both))


def _generator(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, d_in), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(d_in, 64), nn.GELU(), nn.Linear(64, d_out))


class MatrixGenerator(nn.Module):
    """Three small MLPs that turn a conditioning vector into the U and V factors and a bias."""

    def __init__(self, d_in: int, u_out: int, v_out: int, bias_out: int, dropout: float = 0.1):
        super().__init__()
        self.u_generator = _generator(d_in, u_out, dropout)
        self.v_generator = _generator(d_in, v_out, dropout)
        self.bias_generator = nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, 64), nn.GELU(),
                                            nn.Linear(64, bias_out))
        nn.init.zeros_(self.bias_generator[3].weight)
        nn.init.zeros_(self.bias_generator[3].bias)


def unfold_rows(x: torch.Tensor, k: int, row0: int, row1: int) -> torch.Tensor:
    """Patch rows row0..row1 of x [B, C, H, W] as [B, n, C·k²], channel-major like `F.unfold`."""
    B, C, _, W = x.shape
    w = W // k
    rows = x[:, :, row0 * k:row1 * k, :w * k].reshape(B, C, row1 - row0, k, w, k)
    return rows.permute(0, 2, 4, 1, 3, 5).reshape(B, (row1 - row0) * w, C * k * k)


def hyper_tokens(x: torch.Tensor, U: torch.Tensor, V: torch.Tensor, bias: torch.Tensor, k: int) -> torch.Tensor:
    """Σ_c U_c (V_c · patch_c) + bias for every patch, as [B, N, E].

    x [B, C, H, W]; U [B, C, E, r]; V [B, C, r, k²]; bias [B, E].
    """
    B, C, H, W = x.shape
    E = U.shape[2]
    # weight[b, c, p, e] = Σ_r V[b, c, r, p] · U[b, c, e, r]: the per-band patch-embedding matrices.
    weight = torch.matmul(V.transpose(-1, -2), U.transpose(-1, -2)).reshape(B, C * k * k, E)
    h, w = H // k, W // k
    rows_per_chunk = h if x.device.type != "cpu" else \
        max(1, PATCH_CHUNK_BYTES // max(1, B * w * C * k * k * x.element_size()))
    bias = bias.unsqueeze(1)
    chunks = [torch.baddbmm(bias, unfold_rows(x, k, r0, min(h, r0 + rows_per_chunk)), weight)
              for r0 in range(0, h, rows_per_chunk)]
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=1)


def hyper_tokens_reference(x: torch.Tensor, U: torch.Tensor, V: torch.Tensor, bias: torch.Tensor,
                           k: int) -> torch.Tensor:
    """The reference code's way, materialising [B, N, C, E]; kept only to benchmark and test against."""
    B, C = x.shape[:2]
    patches = F.unfold(x, k, stride=k).transpose(1, 2)
    patches = patches.reshape(B, patches.shape[1], C, k * k)
    low_rank = torch.einsum("bcrp,bncp->bncr", V, patches)
    per_band = torch.einsum("bcer,bncr->bnce", U, low_rank)
    return per_band.sum(dim=2) + bias.unsqueeze(1)


class HyperEmbedding(nn.Module):
    """The SpecAware patch embedding: tokens [B, N, E] and the enhanced meta embedding [B, C, 128]."""

    def __init__(self, embed_dim: int, patch_size: int, wv_planes: int = 128, rank: int = 64,
                 content_grid: int = 28, content_hidden: int = 196):
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.rank = rank
        self.spectral_embedding = SpectralEmbedding(wv_planes)
        self.spectral_aware_transformer = SpectralAwareTransformer(wv_planes)
        self.content_feature_extractor = ContentFeatureExtractor(content_grid, content_hidden, wv_planes)
        self.feature_fusion = CrossModalFusion(wv_planes)
        self.matrix_generator = MatrixGenerator(wv_planes, embed_dim * rank, rank * patch_size ** 2, embed_dim)
        self.scaler = nn.Parameter(torch.tensor(0.02))

    def meta(self, wavelength, fwhm, sensor: str, level: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(meta embedding after fusion, enhanced meta embedding after the spectral transformer)."""
        meta = self.spectral_embedding(wavelength, fwhm, sensor, level)
        return meta, self.spectral_aware_transformer(meta)

    def factors(self, x: torch.Tensor, enhanced_meta: torch.Tensor):
        """U [B, C, E, r], V [B, C, r, k²] and bias [B, E] for this batch."""
        B, C = x.shape[:2]
        content = self.content_feature_extractor(x)
        g = self.feature_fusion(enhanced_meta, content) + enhanced_meta
        gen = self.matrix_generator
        U = gen.u_generator(g).reshape(B, C, self.embed_dim, self.rank)
        V = gen.v_generator(g).reshape(B, C, self.rank, self.patch_size ** 2)
        bias = gen.bias_generator(g.mean(dim=1))
        return U, V, bias

    def forward(self, x, wavelength, fwhm, sensor: str, level: str):
        meta, enhanced = self.meta(wavelength, fwhm, sensor, level)
        U, V, bias = self.factors(x, enhanced)
        tokens = self.scaler * hyper_tokens(x, U, V, bias, self.patch_size)
        return tokens, meta, enhanced
