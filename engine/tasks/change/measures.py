"""Per-pixel change measures of a pair of dates: the distance between SpecAware's position-free token features
(each date read with its own sensor metadata) and the spectral angle on the bands both dates share, each on a log
scale between its unchanged level and its 99th percentile; and Otsu's threshold."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ...core.errors import EngineError, shorten
from ...io.pairing import PairSource
from ...io.tiling import TileGrid
from ...model.segmenter import SpectralInput, position_free_tokens

SCALE_SAMPLE_TILES = 16


def shared_bands(wa: np.ndarray, wb: np.ndarray, fwhm_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i in A, j in B) of bands whose centres lie within max(5 nm, FWHM/2) of each other."""
    ia, ib = [], []
    for i, w in enumerate(wa):
        j = int(np.abs(wb - w).argmin())
        if abs(wb[j] - w) <= max(5.0, fwhm_a[i] / 2):
            ia.append(i)
            ib.append(j)
    return np.asarray(ia, int), np.asarray(ib, int)


def spectral_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] angle between the spectra, divided by π/2 (0 same shape, 1 orthogonal)."""
    cos = F.cosine_similarity(a, b, dim=1, eps=1e-8).clamp(-1, 1)
    return (torch.arccos(cos) / (math.pi / 2)).unsqueeze(1)


class ChangeModel:
    """Per-pixel change terms of a tile pair: feature distance (1 − cos of the encoder's last-block tokens,
    position-free, upsampled) and the spectral angle on shared bands; plus class scores when a bundle is given."""

    def __init__(self, encoder, spec_a: SpectralInput, spec_b: SpectralInput, n_a: int, pairs, classifier=None):
        self.n_a, self.pairs, self.classifier = n_a, pairs, classifier
        self.spec_a, self.spec_b = spec_a, spec_b
        self.tokens_a, self.tokens_b = position_free_tokens(encoder, spec_a), position_free_tokens(encoder, spec_b)
        self.noise, self.high = torch.ones(2), torch.full((2,), math.e - 1)  # set by `calibrate`

    def terms(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 2, H, W]: feature distance and spectral angle (zeros when fewer than 3 bands are shared)."""
        xa, xb = x[:, :self.n_a], x[:, self.n_a:]
        fa, fb = self.tokens_a(xa), self.tokens_b(xb)
        dist = (1 - F.cosine_similarity(fa, fb, dim=1)).unsqueeze(1)
        dist = F.interpolate(dist, x.shape[-2:], mode="bilinear", align_corners=False)
        if len(self.pairs[0]) >= 3:
            sam = spectral_angle(xa[:, self.pairs[0]], xb[:, self.pairs[1]])
        else:
            sam = torch.zeros_like(dist)
        return torch.cat([dist, sam], dim=1)

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] in 0–1: each term on a log scale between its typical (unchanged) level and its 99th
        percentile, then averaged; subtle and strong changes both stand well above the unchanged floor."""
        noise, high = (v.to(x.device).view(1, 2, 1, 1) for v in (self.noise, self.high))
        t = torch.log1p(self.terms(x) / noise) / torch.log1p(high / noise)
        used = 2 if len(self.pairs[0]) >= 3 else 1
        return t[:, :used].clamp(0, 1).mean(dim=1, keepdim=True)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        magnitude = self.magnitude(x)
        if self.classifier is None:
            return magnitude
        pa = self.classifier(x[:, :self.n_a], self.spec_a).softmax(1)
        pb = self.classifier(x[:, self.n_a:], self.spec_b).softmax(1)
        return torch.cat([magnitude, pa, pb], dim=1)


def calibrate(model: ChangeModel, source: PairSource, tile: int, device) -> None:
    """Each term's median (the unchanged level, as most pixels do not change) and 99th percentile, over tiles
    spread across the pair."""
    grid = TileGrid(source.width, source.height, tile)
    values = [[], []]
    for x, y, w, h in grid.spread(SCALE_SAMPLE_TILES):
        v, valid = source.read(x, y, w, h)
        if not valid.any():
            continue
        with torch.inference_mode():
            t = model.terms(torch.from_numpy(grid.pad(v)[None]).to(device))[0, :, :h, :w].cpu().numpy()
        for k in range(2):
            values[k].append(t[k][valid])
    if not values[0]:
        raise EngineError(f"the overlap of {shorten(source.a.path)} and {shorten(source.b.path)} holds no pixel "
                          "valid on both dates (one date is all no-data there)")
    merged = [np.concatenate(v) for v in values]
    model.noise = torch.tensor([max(float(np.median(v)), 1e-6) for v in merged])
    model.high = torch.maximum(torch.tensor([float(np.percentile(v, 99)) for v in merged]), 2 * model.noise)


def otsu(hist: np.ndarray) -> float:
    """Otsu's threshold on a histogram over [0, 1]."""
    p = hist.astype(np.float64) / max(hist.sum(), 1)
    centers = (np.arange(len(hist)) + 0.5) / len(hist)
    w0 = np.cumsum(p)
    mu = np.cumsum(p * centers)
    between = (mu[-1] * w0 - mu) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    return float(centers[int(np.argmax(between))] + 0.5 / len(hist))
