"""k-means in torch, for the unsupervised map: clusters of the encoder's token features."""
from __future__ import annotations

import torch

from ..core.errors import EngineError


def kmeans(x: torch.Tensor, k: int, iters: int = 50, seed: int = 0, tol: float = 1e-5) -> torch.Tensor:
    """Centroids [k, D] of the rows of x [N, D]: k-means++ seeding, then Lloyd iterations."""
    if x.shape[0] < k:
        raise EngineError(f"{k} clusters asked for but only {x.shape[0]} feature vectors were sampled; ask for fewer")
    g = torch.Generator().manual_seed(seed)
    x = x.float()
    centroids = x[torch.randint(x.shape[0], (1,), generator=g)]
    for _ in range(1, k):  # k-means++: next seed with probability ∝ squared distance to the nearest one
        d2 = torch.cdist(x, centroids).min(dim=1).values.pow(2)
        centroids = torch.cat([centroids, x[torch.multinomial(d2 + 1e-12, 1, generator=g)]])
    for _ in range(iters):
        assign = torch.cdist(x, centroids).argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).clamp_min(1).unsqueeze(1).to(x.dtype)
        new = torch.where(counts > 0, sums / counts, centroids)
        shift = (new - centroids).norm(dim=1).max()
        centroids = new
        if shift < tol:
            break
    return centroids


def soft_assign(features: torch.Tensor, centroids: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
    """[B, D, h, w] features → [B, k, h, w] cluster memberships (softmax of negative squared distances)."""
    B, D, h, w = features.shape
    d2 = torch.cdist(features.flatten(2).transpose(1, 2).float(), centroids.float()).pow(2)  # [B, hw, k]
    t = temperature or float(d2.median().clamp_min(1e-6))
    return torch.softmax(-d2 / t, dim=-1).transpose(1, 2).reshape(B, -1, h, w)
