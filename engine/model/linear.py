"""The few-label head: a linear classifier (multinomial logistic regression) on frozen per-pixel SpecAware features.

Each pixel is described by its spectrum projected on the encoder's own band embeddings (absolute and brightness-
normalised, as the per-pixel head reads it), by the spectrum itself resampled to the training bands, and
optionally (`tokens`, off in every fit so far) by the encoder's last-block tokens. The features are standardised
with the training scene's statistics; the weights are fitted to convergence by `learn/linear.py` (L-BFGS on a
convex loss), not by gradient epochs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import EngineError
from .config import SpecAwareConfig
from .segmenter import build_segmenter, spectral_projection
from .vit import SpecAwareEncoder


def spectral_descriptors(spectral: torch.Tensor, planes: int) -> torch.Tensor:
    """[B, 2·planes + 1, H, W] from `spectral_projection`'s [B, planes + 1, H, W]: the projection, the projection
    over the pixel's mean value (its spectral shape, brightness removed) and the mean value."""
    proj, mean = spectral[:, :planes], spectral[:, planes:planes + 1]
    return torch.cat([proj, proj / (mean.abs() + 1e-3), mean], dim=1)


def resampling_matrix(source_nm, target_nm) -> torch.Tensor:
    """[C_source, C_target] linear interpolation in wavelength (held at the ends): a spectrum of another band set
    as the training bands would have seen it. The identity when the band sets agree within 0.5 nm."""
    src = torch.as_tensor(source_nm, dtype=torch.float64)
    dst = torch.as_tensor(target_nm, dtype=torch.float64)
    if src.shape == dst.shape and bool(((src - dst).abs() <= 0.5).all()):
        return torch.eye(len(src), dtype=torch.float32)
    order = torch.argsort(src)
    s = src[order]
    pos = torch.searchsorted(s, dst.clamp(s[0], s[-1])).clamp(1, len(s) - 1)
    lo, hi = pos - 1, pos
    t = ((dst.clamp(s[0], s[-1]) - s[lo]) / (s[hi] - s[lo]).clamp_min(1e-9)).clamp(0, 1)
    m = torch.zeros(len(s), len(dst), dtype=torch.float64)
    cols = torch.arange(len(dst))
    m[order[lo], cols] += 1 - t
    m[order[hi], cols] += t
    return m.float()


class LinearSegmenter(nn.Module):
    """`encoder` (frozen), feature standardisation and one linear layer: per-pixel class logits for any sensor.

    `wavelength` is the training bands' (the spectrum part of the features is resampled to them); `tokens` adds
    the last block's tokens, bilinearly upsampled to the pixels."""

    head_kind = "linear"

    def __init__(self, cfg: SpecAwareConfig, num_classes: int, wavelength: list[float] | None = None,
                 tokens: bool = False):
        super().__init__()
        self.cfg, self.tokens = cfg, tokens
        self.encoder = SpecAwareEncoder(cfg)
        self.register_buffer("wavelength", torch.tensor(wavelength or [], dtype=torch.float32))
        n = self.feature_count
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("scale", torch.ones(n))
        self.classifier = nn.Linear(n, num_classes)
        self._resample: dict = {}

    @property
    def feature_count(self) -> int:
        return 2 * self.cfg.wv_planes + 1 + len(self.wavelength) + (self.cfg.embed_dim if self.tokens else 0)

    def options(self) -> dict:
        """What `build_segmenter` needs besides the config to rebuild this model (kept in the bundle)."""
        return {"wavelength": [round(float(w), 4) for w in self.wavelength], "tokens": self.tokens}

    def _spectrum_matrix(self, spec) -> torch.Tensor:
        """[C, C_train] from this input's bands to the training bands (cached per band set)."""
        key = tuple(spec.wavelength)
        if key not in self._resample:
            self._resample[key] = resampling_matrix(key, self.wavelength.cpu())
        return self._resample[key]

    def _spectrum(self, x: torch.Tensor, spec) -> torch.Tensor:
        return torch.einsum("bchw,cd->bdhw", x, self._spectrum_matrix(spec).to(x.device, x.dtype))

    def features(self, x: torch.Tensor, spec) -> torch.Tensor:
        """[B, F, H, W] raw (unstandardised) features of every pixel of x [B, C, H, W]."""
        wl, fw, gsd = spec.tensors(x.shape[0], x.device)
        taps = None
        if self.tokens:
            out = self.encoder(x, wl, fw, gsd, spec.sensor, spec.level, return_all=True)
            enhanced, taps = out["enhanced_meta_embedding"], out["features"][-1]
        else:  # the band embeddings depend on the band metadata only: no pass through the blocks is needed
            enhanced = self.encoder.patch_embed.meta(wl, fw, spec.sensor, spec.level)[1]
        parts = [spectral_descriptors(spectral_projection(x, enhanced), self.cfg.wv_planes), self._spectrum(x, spec)]
        if taps is not None:
            parts.append(F.interpolate(taps.float(), x.shape[-2:], mode="bilinear", align_corners=False))
        return torch.cat(parts, dim=1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits [..., K] of raw features [..., F] (the last axis)."""
        return self.classifier((features - self.mean) / self.scale)

    def forward(self, x: torch.Tensor, spec) -> torch.Tensor:
        """Logits [B, K, H, W]. Without tokens every feature but the brightness-normalised one is linear in the
        spectrum, so standardisation and the classifier fold into two [K, C] weights: two small products per
        pixel instead of building its 2·planes + 1 + C features (the same logits to float rounding)."""
        if self.tokens:
            f = self.features(x, spec).float()
            return self.classify(f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        B, C, H, W = x.shape
        u, v, w_mean, bias = self.folded_weights(x, spec)
        flat = x.reshape(B, C, H * W).to(u.dtype)
        mean = flat.mean(dim=1, keepdim=True)
        logits = torch.matmul(u, flat) + torch.matmul(v, flat) / (mean.abs() + 1e-3) + w_mean * mean + bias
        return logits.reshape(B, -1, H, W)

    def folded_weights(self, x: torch.Tensor, spec) -> tuple[torch.Tensor, ...]:
        """u, v [B, K, C], w_mean and bias [K, 1]: logits = u·x + v·x / (|mean| + 1e-3) + w_mean·mean + bias,
        where x is a pixel's spectrum and mean its mean value (see `spectral_descriptors`)."""
        planes, C = self.cfg.wv_planes, x.shape[1]
        wl, fw, _ = spec.tensors(x.shape[0], x.device)
        enhanced = self.encoder.patch_embed.meta(wl, fw, spec.sensor, spec.level)[1].float() / C  # [B, C, planes]
        weight = self.classifier.weight / self.scale  # standardisation folded in
        bias = self.classifier.bias - weight @ self.mean
        w_proj, w_shape = weight[:, :planes], weight[:, planes:2 * planes]
        w_mean, w_spectrum = weight[:, 2 * planes], weight[:, 2 * planes + 1:]
        resample = self._spectrum_matrix(spec).to(x.device)  # [C, C_train]
        u = torch.matmul(w_proj, enhanced.transpose(1, 2)) + (w_spectrum @ resample.T)  # [B, K, C]
        v = torch.matmul(w_shape, enhanced.transpose(1, 2))
        return u, v, w_mean[:, None], bias[:, None]

    def set_trainable(self, mode: str) -> None:
        """The linear head reads a frozen encoder."""
        for p in self.encoder.parameters():
            p.requires_grad = False


def build_model(cfg: SpecAwareConfig, head: str, num_classes: int, task: str = "pixels", **options) -> nn.Module:
    """The model of any head: the linear few-label head (land cover only), or a `Segmenter` with a trained head.
    `options` are what `LinearSegmenter.options` kept in the bundle."""
    if head != "linear" or task == "cells":  # cells always take the pooled-token head
        return build_segmenter(cfg, head, num_classes, task)
    if task != "pixels":
        raise EngineError(f"the linear head classifies land cover per pixel; for task {task!r} choose the light or "
                          "upernet head")
    return LinearSegmenter(cfg, num_classes, **options)
