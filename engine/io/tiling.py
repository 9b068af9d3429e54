"""Tile and overlap arithmetic for streaming a raster through the model, and the blending window."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TileGrid:
    """Square tiles of `tile` px (a multiple of the patch size) overlapping by `overlap` px over a W×H raster.

    Tiles start every `stride` px; the last row and column are pulled back to end at the raster's edge, so
    no tile reaches past it unless the raster is smaller than one tile (then it is reflection-padded).
    """

    width: int
    height: int
    tile: int
    overlap: int = 0

    def __post_init__(self):
        if self.tile <= 0 or not (0 <= self.overlap < self.tile):
            raise ValueError(f"tile {self.tile} and overlap {self.overlap}: need 0 ≤ overlap < tile")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"raster of {self.width}×{self.height} px has no pixels")

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    def starts(self, size: int) -> list[int]:
        if size <= self.tile:
            return [0]
        out = list(range(0, size - self.tile, self.stride))
        return out + [size - self.tile]

    @property
    def columns(self) -> list[int]:
        return self.starts(self.width)

    @property
    def rows(self) -> list[int]:
        return self.starts(self.height)

    def __len__(self) -> int:
        return len(self.columns) * len(self.rows)

    def spread(self, n: int) -> list[tuple[int, int, int, int]]:
        """Windows (x, y, w, h) of at most n tiles spread evenly over the raster, for sampling statistics."""
        origins = [(x0, y0) for y0 in self.rows for x0 in self.columns]
        pick = np.linspace(0, len(origins) - 1, min(len(origins), n)).round().astype(int)
        return [self.window(*origins[i]) for i in pick]

    def window(self, x0: int, y0: int) -> tuple[int, int, int, int]:
        """The part of tile (x0, y0) inside the raster: x, y, w, h."""
        return x0, y0, min(self.tile, self.width - x0), min(self.tile, self.height - y0)

    def pad(self, values: np.ndarray) -> np.ndarray:
        """Reflection-pad a [C, h, w] window to [C, tile, tile] (repeats for windows smaller than the pad)."""
        h, w = values.shape[-2:]
        ph, pw = self.tile - h, self.tile - w
        if ph == 0 and pw == 0:
            return values
        mode = "reflect" if h > 1 and w > 1 else "edge"
        return np.pad(values, [(0, 0)] * (values.ndim - 2) + [(0, ph), (0, pw)], mode=mode)


def blend_window(tile: int, overlap: int) -> np.ndarray:
    """[tile, tile] weights: 1 in the middle, a raised-cosine ramp over the overlap, never 0 at the edge.

    Overlapping predictions weighted this way and divided by the weight sum meet without seams.
    """
    ramp = np.ones(tile, dtype=np.float32)
    if overlap > 0:
        t = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        edge = 0.5 - 0.5 * np.cos(np.pi * t)
        ramp[:overlap] = edge
        ramp[-overlap:] = edge[::-1]
    return np.outer(ramp, ramp)
