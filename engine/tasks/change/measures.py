"""Per-pixel change magnitude of a pair of dates for the streaming driver.

Each date becomes features: for `irmad` and `cva` the bands both dates share; for `specaware` each date's own good
bands (any sensor) and, with a pretrained backbone, the encoder's position-free token features (the content
around the pixel, read with that date's sensor metadata; random weights would only add noise). A `PairStatistic`
(learn/mad.py) is fitted on pixels sampled over the pair, and every pixel's magnitude is −log10 of the p-value of
its change statistic under the estimated no-change distribution.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...core.errors import EngineError, shorten
from ...core.progress import CancelFn, check_cancel
from ...io.pairing import PairSource
from ...io.tiling import TileGrid
from ...learn.mad import (HYPERSPECTRAL_BANDS, PairStatistic, Reducer, chi2_magnitude, fit_cva, fit_irmad,
                          no_change_pixels, spectral_noise)
from ...model.segmenter import CHANGE_FEATURES, SpectralInput, position_free_tokens

SAMPLE_TILES = 24
MAX_SAMPLES = 150_000
TOKEN_COMPONENTS = 4


def shared_bands(wa: np.ndarray, wb: np.ndarray, fwhm_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i in A, j in B) of bands whose centres lie within max(5 nm, FWHM/2) of each other."""
    ia, ib = [], []
    for i, w in enumerate(wa):
        j = int(np.abs(wb - w).argmin())
        if abs(wb[j] - w) <= max(5.0, fwhm_a[i] / 2):
            ia.append(i)
            ib.append(j)
    return np.asarray(ia, int), np.asarray(ib, int)


class DateFeatures:
    """One date's pixels as features: chosen bands (reduced to their informative components), their per-pixel
    noise, and optionally the encoder's token features reduced the same way."""

    def __init__(self, bands: np.ndarray, wavelength: np.ndarray, tokens=None, reduce: bool = True):
        self.bands, self.wavelength, self.tokens, self.reduce = bands, wavelength[bands], tokens, reduce
        self.spectral: Reducer | None = None
        self.token_reducer: Reducer | None = None

    def raw(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(band values [n, C], token features [n, E] or None, brightness [n]) of a batch [B, C_date, H, W]."""
        v = x[:, self.bands].permute(0, 2, 3, 1).reshape(-1, len(self.bands)).double().cpu().numpy()
        t = None
        if self.tokens is not None:
            tok = F.interpolate(self.tokens(x), x.shape[-2:], mode="bilinear", align_corners=False)
            t = tok.permute(0, 2, 3, 1).reshape(-1, tok.shape[1]).double().cpu().numpy()
        return v, t, np.abs(v).mean(axis=1)

    def fit(self, values: np.ndarray, tokens: np.ndarray | None, noise: np.ndarray | None) -> None:
        if self.reduce:
            self.spectral = Reducer.fit(values, float(np.median(noise)) ** 2 if noise is not None else None)
        if tokens is not None:
            self.token_reducer = Reducer.fit(tokens, max_k=TOKEN_COMPONENTS)

    def features(self, values: np.ndarray, tokens: np.ndarray | None) -> np.ndarray:
        f = self.spectral.apply(values) if self.spectral is not None else values
        return np.hstack([f, self.token_reducer.apply(tokens)]) if self.token_reducer is not None else f

    def noise(self, values: np.ndarray) -> np.ndarray | None:
        return spectral_noise(values, self.wavelength)


class ChangeMeasure:
    """The change magnitude of tile pairs [B, Ca + Cb, H, W] → [B, 1, H, W] (and, with a classifier, both dates'
    class probabilities after it)."""

    def __init__(self, method: str, spec_a: SpectralInput, spec_b: SpectralInput, n_a: int, encoder=None,
                 classifier=None):
        wa, wb = np.asarray(spec_a.wavelength), np.asarray(spec_b.wavelength)
        ia, ib = shared_bands(wa, wb, np.asarray(spec_a.fwhm))
        if method == "specaware":
            ia, ib = np.arange(len(wa)), np.arange(len(wb))
        elif len(ia) < 2:
            raise EngineError(f"the dates share {len(ia)} band(s) (centres within 5 nm or half the FWHM), too few for "
                              f"{method}; use the method 'specaware', which reads each date's own bands")
        use_tokens = method == "specaware" and encoder is not None
        tokens = (lambda s: position_free_tokens(encoder, s)) if use_tokens else (lambda s: None)
        self.method, self.n_a, self.shared = method, n_a, len(shared_bands(wa, wb, np.asarray(spec_a.fwhm))[0])
        self.a = DateFeatures(ia, wa, tokens(spec_a), reduce=method != "cva")
        self.b = DateFeatures(ib, wb, tokens(spec_b), reduce=method != "cva")
        self.classifier, self.spec_a, self.spec_b = classifier, spec_a, spec_b
        self.stat: PairStatistic | None = None

    # --- fitting on a sample of the pair --------------------------------------------------------------------
    def fit(self, source: PairSource, tile: int, device, cancel: CancelFn | None = None) -> PairStatistic:
        grid = TileGrid(source.width, source.height, tile)
        parts = []
        for x, y, w, h in grid.spread(SAMPLE_TILES):
            check_cancel(cancel, "change detection")
            v, valid = source.read(x, y, w, h)
            if not valid.any():
                continue
            with torch.inference_mode():
                batch = torch.from_numpy(grid.pad(v)[None]).to(device)
                raw = [d.raw(part) for d, part in ((self.a, batch[:, :self.n_a]), (self.b, batch[:, self.n_a:]))]
            keep = np.pad(valid, ((0, tile - h), (0, tile - w))).ravel()
            parts.append([[None if r is None else r[keep] for r in date] for date in raw])
        if not parts:
            raise EngineError(f"the overlap of {shorten(source.a.path)} and {shorten(source.b.path)} holds no "
                              "pixel valid on both dates (one date is all no-data there)")
        (va, ta, ba), (vb, tb, bb) = [[None if parts[0][d][k] is None else
                                       np.concatenate([p[d][k] for p in parts]) for k in range(3)] for d in (0, 1)]
        pick = np.random.default_rng(0).permutation(len(va))[:MAX_SAMPLES]
        va, vb, ba, bb = va[pick], vb[pick], ba[pick], bb[pick]
        ta, tb = (None if t is None else t[pick] for t in (ta, tb))
        na, nb = self.a.noise(va), self.b.noise(vb)
        self.a.fit(va, ta, na)
        self.b.fit(vb, tb, nb)
        fa, fb = self.a.features(va, ta), self.b.features(vb, tb)
        near = no_change_pixels(ba, bb)
        if self.method == "cva":
            self.stat = fit_cva(fa, fb, near, na, nb)
        else:
            self.stat = fit_irmad(fa, fb, near, na, nb, self.a.spectral.basis if na is not None else None,
                                  self.b.spectral.basis if nb is not None else None)
        return self.stat

    # --- per tile ------------------------------------------------------------------------------------------
    def statistic(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Z [n], standardised variates [n, k], log brightness ratio [n]) of a batch's pixels."""
        (va, ta, ba), (vb, tb, bb) = self.a.raw(x[:, :self.n_a]), self.b.raw(x[:, self.n_a:])
        fa, fb = self.a.features(va, ta), self.b.features(vb, tb)
        na, nb = self.a.noise(va), self.b.noise(vb)
        s = self.stat
        var = s.c + (0 if na is None else na[:, None] ** 2 * s.gain_a) + (0 if nb is None else nb[:, None] ** 2 *
                                                                          s.gain_b)
        std = s.variates(fa, fb) / np.sqrt(np.maximum(var, 1e-300))
        ratio = np.log(np.maximum(ba, 1e-12)) - np.log(np.maximum(bb, 1e-12))
        return (std ** 2).sum(axis=1), std, ratio

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        z = torch.from_numpy(self.statistic(x)[0])
        return chi2_magnitude(z, self.stat.dof).float().reshape(B, 1, H, W).to(x.device)

    def pair_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, CHANGE_FEATURES, H, W] what a change classifier reads: the magnitude, the three largest standardised
        squared variates (log scale), and the brightness ratio between the dates."""
        B, _, H, W = x.shape
        z, std, ratio = self.statistic(x)
        top = np.sort(std ** 2, axis=1)[:, ::-1][:, :3]
        top = np.pad(top, ((0, 0), (0, 3 - top.shape[1])))
        mag = chi2_magnitude(torch.from_numpy(z), self.stat.dof).numpy()
        f = np.column_stack([mag / 10, np.log1p(top), ratio])
        return torch.from_numpy(f).float().reshape(B, H, W, CHANGE_FEATURES).permute(0, 3, 1, 2).to(x.device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        magnitude = self.magnitude(x)
        if self.classifier is None:
            return magnitude
        pa = self.classifier(x[:, :self.n_a], self.spec_a).softmax(1)
        pb = self.classifier(x[:, self.n_a:], self.spec_b).softmax(1)
        return torch.cat([magnitude, pa, pb], dim=1)

    def describe(self) -> str:
        what = {"specaware": "each date's own bands" + (" and the pretrained SpecAware token features" if
                                                         self.a.tokens is not None else
                                                         " (SpecAware's token features need a pretrained backbone; "
                                                         "none is configured)"),
                "irmad": f"the {self.shared} bands both dates share",
                "cva": f"the standardised differences of the {self.shared} shared bands"}[self.method]
        noise = " and each pixel's spectral noise" if len(self.a.bands) >= HYPERSPECTRAL_BANDS else ""
        return (f"{'IR-MAD' if self.method != 'cva' else 'CVA'} on {what}: magnitude = −log10 p of the pixel's "
                f"chi-square statistic ({self.stat.dof} degrees of freedom) under the no-change distribution "
                f"estimated from the pair{noise}; 3 means p = 0.001")
