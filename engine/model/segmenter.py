"""A SpecAware encoder with a segmentation head: pixels in, per-pixel class logits out, for any sensor."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from ..core.errors import EngineError
from ..core.vocabulary import TASKS
from .config import SpecAwareConfig
from .heads import build_head
from .vit import SpecAwareEncoder


@dataclass(frozen=True)
class SpectralInput:
    """What the hypernetwork needs to know about a batch's bands: one sensor and one level per batch."""

    wavelength: tuple[float, ...]
    fwhm: tuple[float, ...]
    gsd: float
    sensor: str
    level: str

    @classmethod
    def from_source(cls, source) -> "SpectralInput":
        p = source.profile
        return cls(tuple(map(float, source.wavelength)), tuple(map(float, source.fwhm)), float(p.gsd or 1.0),
                   p.sensor, p.level or "L2")

    def tensors(self, batch: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        wl = torch.tensor(self.wavelength, dtype=torch.float32, device=device).expand(batch, -1)
        fw = torch.tensor(self.fwhm, dtype=torch.float32, device=device).expand(batch, -1)
        return wl, fw, torch.full((batch,), self.gsd, dtype=torch.float32, device=device)


def position_free_tokens(encoder, spec: SpectralInput):
    """The last block's tokens [B, E, h, w] with GSD 0, so every token has the same position code and the
    features follow materials, not places (with random weights the position code would otherwise dominate)."""
    spec = dataclasses.replace(spec, gsd=0.0)

    def tokens(x: torch.Tensor) -> torch.Tensor:
        wl, fw, gsd = spec.tensors(x.shape[0], x.device)
        return encoder.features(x, wl, fw, gsd, spec.sensor, spec.level)[-1]
    return tokens


class Features(NamedTuple):
    """What the heads read: the encoder's four taps [B, E, h, w] and per-pixel spectral features [B, 129, H, W]."""

    taps: list[torch.Tensor]
    spectral: torch.Tensor


def spectral_projection(x: torch.Tensor, band_embedding: torch.Tensor) -> torch.Tensor:
    """[B, planes + 1, H, W]: each pixel's spectrum projected on the bands' 128-d embeddings (mean over bands), and
    its mean value, in one matrix product on the channels-first input (the mean is a last column of ones).

    The basis comes from the encoder's own wavelength/FWHM/sensor embedding, so it exists for any band set.
    """
    B, C, H, W = x.shape
    basis = torch.cat([band_embedding, torch.ones_like(band_embedding[..., :1])], dim=-1) / C  # [B, C, planes + 1]
    return torch.matmul(basis.transpose(1, 2).to(x.dtype), x.reshape(B, C, H * W)).reshape(B, -1, H, W)


PIXEL_BLOCK = 8192  # pixels at a time on the CPU: the head's intermediates stay in cache (twice as fast)


class PixelHead(nn.Module):
    """Per-pixel class logits from the spectral features, in absolute and brightness-normalised form.

    Tokens summarise k×k pixels; this branch keeps each pixel's own spectrum in the decision, which matters for
    objects a few pixels wide (roads, roofs). Its logits are added to the spatial head's.

    Each pixel's input is z = [p, p / (|m| + 1e-3), m] (p the projection, m the mean), then LayerNorm and an MLP.
    The forward never builds z: the norm's scale and the first layer are folded into one weight that multiplies
    [p, m] directly, and the norm's mean and variance come from sums of p, so the head costs two small matrix
    products per pixel, channels first.
    """

    def __init__(self, num_classes: int, width: int = 128, planes: int = 128):
        super().__init__()
        self.planes = planes
        n_in = 2 * planes + 1
        self.norm = nn.LayerNorm(n_in)
        self.mlp = nn.Sequential(nn.Linear(n_in, width), nn.GELU(), nn.Linear(width, width // 2),
                                 nn.GELU(), nn.Linear(width // 2, num_classes))

    def forward(self, spectral: torch.Tensor) -> torch.Tensor:
        B, _, H, W = spectral.shape
        s = spectral.reshape(B, self.planes + 1, H * W)
        folded = self.folded()
        step = PIXEL_BLOCK if s.device.type == "cpu" else H * W
        out = [self.pixels(s[..., i:i + step], *folded) for i in range(0, H * W, step)]
        return (out[0] if len(out) == 1 else torch.cat(out, -1)).reshape(B, -1, H, W)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The norm's scale and the first layer as one weight [2·width, planes + 1] (rows on [p, m], then rows on
        p to be scaled by r), the sums of the scaled weights, and the first layer's bias."""
        D, first = self.planes, self.mlp[0]
        folded = first.weight * self.norm.weight  # weight on [p, p·r, m]
        zero = folded.new_zeros(folded.shape[0], 1)
        weight = torch.cat([torch.cat([folded[:, :D], folded[:, 2 * D:]], -1),
                            torch.cat([folded[:, D:2 * D], zero], -1)], 0)
        return weight, folded.sum(1), first.weight @ self.norm.bias + first.bias

    def pixels(self, s: torch.Tensor, weight: torch.Tensor, weight_sum: torch.Tensor,
               bias: torch.Tensor) -> torch.Tensor:
        """Logits [B, K, n] of n pixels' features s [B, planes + 1, n]."""
        D, width = self.planes, bias.shape[0]
        n, eps = self.norm.normalized_shape[0], self.norm.eps
        s32 = s.float()
        p, m = s32[:, :D], s32[:, D:]  # [B, D, n], [B, 1, n]
        r = 1.0 / (m.abs() + 1e-3)
        total = p.sum(1, keepdim=True) * (1 + r) + m
        sq = (p * p).sum(1, keepdim=True) * (1 + r * r) + m * m
        y = torch.matmul(weight, s)  # [B, 2·width, n]
        t = torch.addcmul(y[:, :width], y[:, width:], r)
        mean = total / n
        rstd = torch.rsqrt((sq / n - mean * mean).clamp_min(0) + eps)
        t = t.float().addcmul_(weight_sum[:, None], mean, value=-1)
        z = self.mlp[1](torch.addcmul(bias[:, None], t, rstd))
        second, last = self.mlp[2], self.mlp[4]
        z = self.mlp[3](torch.baddbmm(second.bias[:, None], second.weight.expand(len(z), -1, -1), z))
        return torch.baddbmm(last.bias[:, None], last.weight.expand(len(z), -1, -1), z)


class Segmenter(nn.Module):
    """`encoder` (the checkpoint's layout), a spatial `head` on its taps, and a `pixel_head` on each pixel's
    spectrum; `encode` and `decode` are split so a frozen encoder's features can be cached."""

    def __init__(self, cfg: SpecAwareConfig, head: str, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.head_kind = head
        self.encoder = SpecAwareEncoder(cfg)
        self.head = build_head(head, cfg.embed_dim, len(cfg.feature_blocks), num_classes, cfg.patch_size)
        self.pixel_head = PixelHead(num_classes, planes=cfg.wv_planes)

    def encode(self, x: torch.Tensor, spec: SpectralInput) -> Features:
        wl, fw, gsd = spec.tensors(x.shape[0], x.device)
        out = self.encoder(x, wl, fw, gsd, spec.sensor, spec.level, return_all=True)
        return Features(out["features"], spectral_projection(x, out["enhanced_meta_embedding"]))

    def decode(self, features: Features, out_hw) -> torch.Tensor:
        return self.head(features.taps, tuple(out_hw)) + self.pixel_head(features.spectral)

    def forward(self, x: torch.Tensor, spec: SpectralInput) -> torch.Tensor:
        return self.decode(self.encode(x, spec), x.shape[-2:])

    def set_trainable(self, mode: str) -> None:
        """`frozen` (head only), `last-N` (head and the last N blocks with the final norm) or `full`."""
        for p in self.encoder.parameters():
            p.requires_grad = mode == "full"
        if mode.startswith("last-"):
            try:
                n = int(mode.split("-", 1)[1])
            except ValueError:
                n = -1
            if not 1 <= n <= len(self.encoder.blocks):
                raise EngineError(f"backbone mode {mode!r}: N must be 1…{len(self.encoder.blocks)}")
            for module in [*self.encoder.blocks[-n:], self.encoder.norm]:
                for p in module.parameters():
                    p.requires_grad = True
        elif mode not in ("frozen", "full"):
            raise EngineError(f"unknown backbone mode {mode!r}: use frozen, last-N (e.g. last-2) or full")


CHANGE_FEATURES = 5  # what a change classifier reads of each pixel pair (tasks/change/measures.py makes them)


class ChangeClassifier(nn.Module):
    """A supervised change model: the encoder (whose token features the pair's change statistic reads) and a
    logistic layer on each pixel's pair features (its change magnitude under the pair's no-change distribution,
    its largest standardised change variates, its brightness ratio). Few parameters, so 20 labelled pixels per
    class train it stably; the statistic itself is refitted on every pair it maps."""

    def __init__(self, cfg: SpecAwareConfig, head: str = "logistic", num_classes: int = 2):
        super().__init__()
        self.cfg, self.head_kind = cfg, "logistic"
        self.encoder = SpecAwareEncoder(cfg)
        self.register_buffer("feature_mean", torch.zeros(CHANGE_FEATURES))
        self.register_buffer("feature_std", torch.ones(CHANGE_FEATURES))
        self.classifier = nn.Linear(CHANGE_FEATURES, num_classes)
        self.register_buffer("prior_weight", torch.zeros(num_classes, CHANGE_FEATURES))
        self.register_buffer("prior_bias", torch.zeros(num_classes))

    def set_trainable(self, mode: str) -> None:
        """The encoder only supplies features to the statistic; it is never trained here."""
        for p in self.encoder.parameters():
            p.requires_grad = False

    @torch.no_grad()
    def start_from_significance(self, change_index: int, magnitude: float = 3.0, sharpness: float = 2.0) -> None:
        """Weights that reproduce the unsupervised rule (change where the magnitude, feature 0 = magnitude / 10,
        exceeds `magnitude`), kept as the prior that training pulls towards: few labels adjust the rule, many can
        rewrite it."""
        w = torch.zeros_like(self.prior_weight)
        b = torch.zeros_like(self.prior_bias)
        mean, std = float(self.feature_mean[0]), float(self.feature_std[0])
        sign = torch.full((w.shape[0],), -1.0)
        sign[change_index] = 1.0
        w[:, 0] = sign * sharpness * 10 * std / 2  # logit(change) − logit(other) = sharpness · (magnitude − t)
        b[:] = sign * sharpness * (10 * mean - magnitude) / 2
        self.prior_weight.copy_(w)
        self.prior_bias.copy_(b)
        self.classifier.weight.copy_(w)
        self.classifier.bias.copy_(b)

    def prior_penalty(self) -> torch.Tensor:
        """Squared distance of the logistic layer from its prior (see `start_from_significance`)."""
        return ((self.classifier.weight - self.prior_weight) ** 2).sum() + \
            ((self.classifier.bias - self.prior_bias) ** 2).sum()

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits [B, K, ...] of pair features [B, CHANGE_FEATURES, ...]."""
        shape = [1, -1] + [1] * (features.dim() - 2)
        z = (features - self.feature_mean.view(shape)) / self.feature_std.view(shape)
        return self.classifier(z.movedim(1, -1)).movedim(-1, 1)


class CellClassifier(Segmenter):
    """Scene classification of a grid cell or parcel: the last block's tokens, weighted by how much of each token
    the cell covers, and each pixel's spectral features, both averaged over the cell; one linear layer on top
    (the pooled-token head)."""

    def __init__(self, cfg: SpecAwareConfig, head: str = "pooled", num_classes: int = 2):
        nn.Module.__init__(self)
        self.cfg, self.head_kind = cfg, "pooled"
        self.encoder = SpecAwareEncoder(cfg)
        n_in = cfg.embed_dim + 2 * cfg.wv_planes + 1
        self.norm = nn.LayerNorm(n_in)
        self.classifier = nn.Linear(n_in, num_classes)

    def decode(self, features: Features, mask: torch.Tensor) -> torch.Tensor:
        """Class logits [B, K] for the cells marked by `mask` [B, H, W] (1 inside the cell)."""
        return self.classify(self.pool(features, mask))

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.norm(pooled))

    def pool(self, features: Features, mask: torch.Tensor) -> torch.Tensor:
        """[B, E + 2·planes + 1]: what the head sees of each cell (cacheable while the encoder is frozen)."""
        tokens = features.taps[-1].float()
        m = mask[:, None].float()
        cover = torch.nn.functional.adaptive_avg_pool2d(m, tokens.shape[-2:])
        pooled_tokens = (tokens * cover).sum((2, 3)) / cover.sum((2, 3)).clamp_min(1e-6)
        spec = features.spectral.float()
        proj, mean = spec[:, :-1], spec[:, -1:]
        pixels = torch.cat([proj, proj / (mean.abs() + 1e-3), mean], dim=1)
        pooled_pixels = (pixels * m).sum((2, 3)) / m.sum((2, 3)).clamp_min(1e-6)
        return torch.cat([pooled_tokens, pooled_pixels], dim=1)

    def forward(self, x: torch.Tensor, spec: SpectralInput, mask: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x, spec), mask)


def build_segmenter(cfg: SpecAwareConfig, head: str, num_classes: int, task: str = "pixels") -> Segmenter:
    """The model for a fine-tuning task: `pixels` (land cover), `cells` (grid cells, parcels) or `change`."""
    if task not in TASKS:
        raise EngineError(f"unknown task {task!r}: use one of {', '.join(TASKS)}")
    return {"change": ChangeClassifier, "cells": CellClassifier}.get(task, Segmenter)(cfg, head, num_classes)
