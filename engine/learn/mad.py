"""Change statistics of a pair of dates with a known no-change distribution.

Both methods reduce a pixel pair to change variates M = A·Pa − B·Pb − offset (A, B: each date's features):
  - IR-MAD (Nielsen 2007): canonical correlation between the dates' features, iteratively reweighted by each
    pixel's probability of no change; M are the MAD variates, invariant to any affine (gain, offset) change of
    either date's bands, and the dates may have different band sets;
  - CVA on standardised bands: the difference of the dates' z-scores, whitened by its no-change covariance.
Under no change each variate is Gaussian; its variance is calibrated robustly on pixels whose overall brightness
kept the scene's typical ratio (so that change does not inflate it), plus, for hyperspectral data, each pixel's
own noise, measured from the roughness of its spectrum and propagated to the variate. Then
Z = Σ (M_i − μ_i)² / σ_i² follows χ²(k), and −log10 of its p-value is the change magnitude.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CHI2_1_MEDIAN = 0.454936  # median of χ²(1): calibrates a variance so that its median standardised square fits
MAGNITUDE_CAP = 30.0  # −log10 p is capped here (p < 1e-30 is "certainly changed")
HYPERSPECTRAL_BANDS = 30  # from this many contiguous bands on, each pixel's noise is read from its spectrum


def chi2_magnitude(z: torch.Tensor, dof: int) -> torch.Tensor:
    """−log10 P(χ²(dof) > z), capped: 0 for no evidence of change, 3 for p = 0.001."""
    if dof == 0:
        return torch.zeros_like(z)
    p = torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), z.double().clamp_min(0) / 2)
    return (-torch.log10(p.clamp_min(10 ** -MAGNITUDE_CAP))).to(z.dtype)


def spectral_noise(values: np.ndarray, wavelength: np.ndarray) -> np.ndarray | None:
    """Each pixel's noise standard deviation [n] from its spectrum's second differences over neighbouring bands
    (a smooth spectrum predicts a band from its neighbours; white noise does not), or None for multispectral data,
    whose few broad bands are not smooth neighbours."""
    if values.shape[1] < HYPERSPECTRAL_BANDS:
        return None
    v = values[:, np.argsort(wavelength)]
    d2 = v[:, 1:-1] - (v[:, :-2] + v[:, 2:]) / 2
    return 1.4826 * np.median(np.abs(d2), axis=1) / np.sqrt(1.5)


@dataclass
class Reducer:
    """Principal components of one date's features that carry more than noise (at most `max_k`)."""

    mean: np.ndarray
    basis: np.ndarray  # [features, k]

    @classmethod
    def fit(cls, values: np.ndarray, noise_var: float | None = None, max_k: int = 12) -> "Reducer":
        mean = values.mean(axis=0)
        cov = np.cov((values - mean).T).reshape(values.shape[1], values.shape[1])
        ev, vec = np.linalg.eigh(cov)
        ev, vec = ev[::-1], vec[:, ::-1]
        floor = max(ev[0] * 1e-10, 5 * noise_var if noise_var else 0.0)
        k = int(np.clip((ev > floor).sum(), 1, max_k))
        return cls(mean, vec[:, :k])

    def apply(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) @ self.basis


@dataclass
class PairStatistic:
    """A fitted change statistic: variates M = A·Pa − B·Pb − offset, their no-change centre and variance
    c + gain_a·noise_a² + gain_b·noise_b², and the degrees of freedom of Z."""

    method: str
    pa: np.ndarray  # [features a, k]
    pb: np.ndarray  # [features b, k]
    offset: np.ndarray  # [k]
    centre: np.ndarray  # [k]
    c: np.ndarray  # [k] variance not explained by the pixel's own noise
    gain_a: np.ndarray  # [k] how much date a's per-band noise variance reaches each variate
    gain_b: np.ndarray
    correlations: np.ndarray  # IR-MAD's canonical correlations (CVA: empty)
    iterations: int

    @property
    def dof(self) -> int:
        return len(self.c)

    def variates(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a @ self.pa - b @ self.pb - self.offset - self.centre

    def z(self, a: np.ndarray, b: np.ndarray, noise_a=None, noise_b=None) -> np.ndarray:
        """Z [n] of pixel pairs: the sum of squared standardised variates."""
        var = np.broadcast_to(self.c, (len(a), self.dof)).copy()
        if noise_a is not None:
            var += noise_a[:, None] ** 2 * self.gain_a
        if noise_b is not None:
            var += noise_b[:, None] ** 2 * self.gain_b
        return (self.variates(a, b) ** 2 / np.maximum(var, 1e-300)).sum(axis=1)


def no_change_pixels(brightness_a: np.ndarray, brightness_b: np.ndarray) -> np.ndarray:
    """Pixels whose brightness ratio between the dates is within 2 robust deviations of the scene's typical one:
    the calibration set (clearly brightened or darkened pixels are left out)."""
    r = np.log(np.maximum(np.abs(brightness_a), 1e-12)) - np.log(np.maximum(np.abs(brightness_b), 1e-12))
    med = np.median(r)
    spread = 1.4826 * np.median(np.abs(r - med))
    near = np.abs(r - med) <= 2 * max(spread, 1e-12)
    return near if near.sum() >= 100 else np.ones_like(near)


def _calibrate(m: np.ndarray, near: np.ndarray, noise: np.ndarray | None):
    """(centre, c, kept) per variate: the robust centre, and the variance c ≥ 0 beyond the pixels' own noise that
    makes the median standardised square on the calibration pixels that of χ²(1). Variates without any variance
    (identical dates) are dropped."""
    centre = np.median(m[near], axis=0)
    d2 = (m[near] - centre) ** 2
    c = np.median(d2, axis=0) / CHI2_1_MEDIAN
    if noise is not None:  # bisection on every variate at once
        n = noise[near]
        lo, hi = np.zeros_like(c), np.where(np.median(d2 / np.maximum(n, 1e-300), axis=0) > CHI2_1_MEDIAN, c, 0.0)
        for _ in range(60):
            mid = (lo + hi) / 2
            above = np.median(d2 / (mid + n), axis=0) > CHI2_1_MEDIAN
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        c = hi
    typical = c + (np.median(noise[near], axis=0) if noise is not None else 0.0)
    return centre, c, typical > 1e-20


def _weights(z: np.ndarray, dof: int) -> np.ndarray:
    return np.exp(-np.log(10) * chi2_magnitude(torch.from_numpy(z), dof).numpy())


def _noise_gains(basis: np.ndarray | None, proj: np.ndarray) -> np.ndarray:
    """How much white per-band noise of unit variance reaches each variate (0 without a spectral basis)."""
    if basis is None:
        return np.zeros(proj.shape[1])
    return ((basis @ proj[:basis.shape[1]]) ** 2).sum(axis=0)


def fit_irmad(a: np.ndarray, b: np.ndarray, near: np.ndarray, noise_a=None, noise_b=None, basis_a=None,
              basis_b=None, iterations: int = 50, tol: float = 1e-5) -> PairStatistic:
    """IR-MAD on features a [n, p] and b [n, q] (the spectral part first, whose band basis maps noise in)."""
    n, p = a.shape
    q = b.shape[1]
    w = np.ones(n)
    rho_before = None
    for it in range(1, iterations + 1):
        ab = np.hstack([a, b])
        mean = (w[:, None] * ab).sum(0) / w.sum()
        centred = ab - mean
        cov = (w[:, None] * centred).T @ centred / w.sum()
        sxx = cov[:p, :p] + 1e-9 * np.trace(cov[:p, :p]) / p * np.eye(p)
        syy = cov[p:, p:] + 1e-9 * np.trace(cov[p:, p:]) / q * np.eye(q)
        lx, ly = np.linalg.cholesky(sxx), np.linalg.cholesky(syy)
        u, rho, vt = np.linalg.svd(np.linalg.solve(lx, cov[:p, p:]) @ np.linalg.inv(ly).T, full_matrices=False)
        pa, pb = np.linalg.solve(lx.T, u), np.linalg.solve(ly.T, vt.T)
        offset = mean[:p] @ pa - mean[p:] @ pb
        m = a @ pa - b @ pb - offset
        noise = None
        gain_a, gain_b = _noise_gains(basis_a, pa), _noise_gains(basis_b, pb)
        if noise_a is not None or noise_b is not None:
            noise = (0 if noise_a is None else noise_a[:, None] ** 2 * gain_a) + \
                    (0 if noise_b is None else noise_b[:, None] ** 2 * gain_b)
        centre, c, kept = _calibrate(m, near, noise)
        stat = PairStatistic("irmad", pa[:, kept], pb[:, kept], offset[kept], centre[kept], c[kept], gain_a[kept],
                             gain_b[kept], rho[kept], it)
        if stat.dof == 0 or (rho_before is not None and np.abs(rho - rho_before).max() < tol):
            return stat
        w = _weights(stat.z(a, b, noise_a, noise_b), stat.dof)
        rho_before = rho
    return stat


def fit_cva(a: np.ndarray, b: np.ndarray, near: np.ndarray, noise_a=None, noise_b=None, iterations: int = 50,
            tol: float = 1e-5) -> PairStatistic:
    """CVA on standardised bands (a and b hold the same bands): the difference of robust z-scores, whitened by its
    no-change covariance (reweighted like IR-MAD); white per-band noise reaches each variate through Pa and Pb."""
    def robust_z(x):
        med = np.median(x, axis=0)
        return med, np.maximum(1.4826 * np.median(np.abs(x - med), axis=0), 1e-12)
    ma, sa = robust_z(a)
    mb, sb = robust_z(b)
    d = (b - mb) / sb - (a - ma) / sa
    w = np.ones(len(d))
    stat, before = None, None
    for it in range(1, iterations + 1):
        mean = (w[:, None] * d).sum(0) / w.sum()
        cov = (w[:, None] * (d - mean)).T @ (d - mean) / w.sum()
        ev, vec = np.linalg.eigh(cov)
        vec = vec[:, ev > ev.max() * 1e-9] if ev.max() > 0 else vec[:, :0]
        # M = (d − mean)·V = A·Pa − B·Pb − offset with Pa = −V/sa, Pb = −V/sb
        pa, pb = -vec / sa[:, None], -vec / sb[:, None]
        offset = (mean - mb / sb + ma / sa) @ vec
        m = a @ pa - b @ pb - offset
        gain_a, gain_b = (pa ** 2).sum(axis=0), (pb ** 2).sum(axis=0)
        noise = None
        if noise_a is not None and noise_b is not None:
            noise = noise_a[:, None] ** 2 * gain_a + noise_b[:, None] ** 2 * gain_b
        centre, c, kept = _calibrate(m, near, noise)
        stat = PairStatistic("cva", pa[:, kept], pb[:, kept], offset[kept], centre[kept], c[kept], gain_a[kept],
                             gain_b[kept], np.zeros(0), it)
        if stat.dof == 0:
            return stat
        w_new = _weights(stat.z(a, b, noise_a, noise_b), stat.dof)
        if before is not None and np.abs(w_new - before).max() < tol:
            return stat
        w, before = w_new, w_new
    return stat


def otsu(hist: np.ndarray) -> float:
    """Otsu's threshold on a histogram over [0, 1]."""
    p = hist.astype(np.float64) / max(hist.sum(), 1)
    centers = (np.arange(len(hist)) + 0.5) / len(hist)
    w0 = np.cumsum(p)
    mu = np.cumsum(p * centers)
    between = (mu[-1] * w0 - mu) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    return float(centers[int(np.argmax(between))] + 0.5 / len(hist))


def second_mode(hist: np.ndarray, start: float, bins: int = 64) -> bool:
    """Whether the histogram (over [0, 1]) has a second peak above `start` (a fraction of the range), separated
    from the first by a valley at most half its height: change that stands apart from the no-change bulk, not
    just the tail of one skewed mode."""
    coarse = hist.reshape(bins, -1).sum(axis=1).astype(np.float64) if len(hist) % bins == 0 else hist.astype(float)
    smooth = np.convolve(coarse, np.ones(3) / 3, mode="same")
    smooth[-1] = coarse[-1]  # the cap bin gathers every certain change; keep it as it is
    first = int(np.argmax(smooth))
    cut = max(first + 1, int(start * len(smooth)))
    if cut >= len(smooth) or smooth[cut:].max() <= 0:
        return False
    peak = cut + int(np.argmax(smooth[cut:]))
    valley = smooth[first:peak + 1].min()
    return peak > first + 1 and valley <= 0.5 * smooth[peak] and coarse[peak - 1:peak + 2].sum() >= 1e-4 * coarse.sum()
