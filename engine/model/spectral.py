"""Spectral (meta) embedding: one 128-d vector per band from wavelength, FWHM, sensor and level.

Parameter names follow the authors' reference so that the published checkpoint loads unchanged.
"""
from __future__ import annotations

import json
import math
import warnings
from functools import lru_cache

import torch
from torch import nn

from ..core.errors import EngineError, SpecAwareWarning
from ..core.vocabulary import LEVELS, RESOURCES, SENSORS, WAVELENGTH_MAX_NM, WAVELENGTH_MIN_NM

ATTRIBUTES_PATH = RESOURCES / "attribute_embeddings.json"


@lru_cache(maxsize=1)
def attribute_vectors() -> dict[str, torch.Tensor]:
    """The six cached all-MiniLM-L6-v2 sentence vectors keyed by sensor / level string (normal tensors even when
    first asked for under inference mode, so a worker that classified first can still train)."""
    with open(ATTRIBUTES_PATH, encoding="utf-8") as f:
        doc = json.load(f)
    with torch.inference_mode(False):
        return {key: torch.tensor(entry["embedding"], dtype=torch.float32) for key, entry in doc["strings"].items()}


def attribute_vector(kind: str, value: str) -> torch.Tensor:
    """Vector for a sensor (unknown ones fall back to `others`, with a warning) or a level (strict)."""
    vectors = attribute_vectors()
    if kind == "level":
        if value not in LEVELS:
            raise EngineError(f"unknown processing level {value!r}: use one of {', '.join(LEVELS)} "
                              "(L1 = radiance, L2 = reflectance)")
        return vectors[value]
    if value not in SENSORS:
        warnings.warn(f"sensor {value!r} is not one SpecAware was pre-trained on ({', '.join(SENSORS[:3])}); "
                      "using the generic 'others' sensor embedding", SpecAwareWarning, stacklevel=2)
        value = "others"
    return vectors[value]


def check_wavelengths(wavelength: torch.Tensor) -> None:
    """The Fourier expansion is defined on 350–2550 nm (0 marks an empty slot); refuse anything else."""
    bad = (wavelength != 0) & ((wavelength < WAVELENGTH_MIN_NM) | (wavelength > WAVELENGTH_MAX_NM))
    if bool(bad.any()):
        idx = torch.nonzero(bad.reshape(-1, bad.shape[-1]).any(0)).flatten().tolist()
        raise EngineError(f"band(s) {idx[:10]} have wavelengths outside {WAVELENGTH_MIN_NM:g}–{WAVELENGTH_MAX_NM:g} nm "
                          "(are they in µm?); drop them with engine.sensors before calling the model")


class Mlp2(nn.Module):
    """Linear → GELU → Linear, stored as `mlp.0` / `mlp.2` like the reference."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class AttributeEncoder(nn.Module):
    """One shared Linear(384, 64) applied to the sensor and the level sentence vectors."""

    def __init__(self, d_text: int = 384, d_out: int = 64):
        super().__init__()
        self.fc = nn.Linear(d_text, d_out)

    def forward(self, sensor: str, level: str) -> torch.Tensor:
        device = self.fc.weight.device
        s = attribute_vector("sensor", sensor).to(device)
        l = attribute_vector("level", level).to(device)
        return torch.cat([self.fc(s), self.fc(l)], dim=-1)


class CrossModalFusion(nn.Module):
    """f1 = proj(a), f2 = proj(b); out = Seq(Linear, LayerNorm, GELU, Dropout)([f1, f2]) + f1."""

    def __init__(self, dim: int = 128, dropout: float = 0.1):
        super().__init__()
        self.modal1_proj = nn.Linear(dim, dim)
        self.modal2_proj = nn.Linear(dim, dim)
        self.fusion = nn.Sequential(nn.Linear(2 * dim, dim), nn.LayerNorm(dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        f1 = self.modal1_proj(a)
        f2 = self.modal2_proj(b)
        return self.fusion(torch.cat([f1, f2], dim=-1)) + f1


class SpectralEmbedding(nn.Module):
    """Per-band meta embedding [B, C, 128] from wavelength, FWHM, sensor and level."""

    def __init__(self, wv_planes: int = 128, n_periods: int = 64):
        super().__init__()
        periods = torch.logspace(math.log10(WAVELENGTH_MIN_NM), math.log10(WAVELENGTH_MAX_NM), n_periods,
                                 dtype=torch.float64)
        self.register_buffer("periods", periods, persistent=False)
        self.fwhm_encoder = Mlp2(1, 64, wv_planes)
        self.fusion_weights = nn.Parameter(torch.tensor([0.8, 0.2]))
        self.spectral_enhancement_mlp = Mlp2(wv_planes, 2 * wv_planes, wv_planes)
        self.attribute_encoder = AttributeEncoder(384, wv_planes // 2)
        self.cross_modal_fusion = CrossModalFusion(wv_planes)

    def fourier(self, wavelength: torch.Tensor) -> torch.Tensor:
        check_wavelengths(wavelength)
        angles = 2 * math.pi * wavelength.double().unsqueeze(-1) / self.periods
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1).float()

    def forward(self, wavelength: torch.Tensor, fwhm: torch.Tensor, sensor: str, level: str) -> torch.Tensor:
        wl = self.fourier(wavelength)
        fw = self.fwhm_encoder(((fwhm - 5.0) / 10.0).unsqueeze(-1))
        w = torch.softmax(self.fusion_weights, dim=0)
        spectral = w[0] * wl + w[1] * fw
        spectral = spectral + self.spectral_enhancement_mlp(spectral)
        attributes = self.attribute_encoder(sensor, level).expand_as(spectral)
        return self.cross_modal_fusion(spectral, attributes) + spectral


class SpectralAwareTransformer(nn.Module):
    """One pre-norm transformer layer across the bands of a sample, with an outer residual."""

    def __init__(self, wv_planes: int = 128, num_heads: int = 4):
        super().__init__()
        layer = nn.TransformerEncoderLayer(wv_planes, num_heads, dim_feedforward=wv_planes, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.transformer_encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)

    def forward(self, meta: torch.Tensor) -> torch.Tensor:
        return self.transformer_encoder(meta) + meta
