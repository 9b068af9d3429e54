"""Class colours: a palette of distinguishable colours and `#rrggbb` parsing."""
from __future__ import annotations

from ..core.errors import EngineError

# Tableau 10, then Paul Tol's muted set.
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#332288", "#88ccee", "#44aa99", "#117733", "#999933", "#ddcc77", "#cc6677", "#882255",
           "#aa4499", "#dddddd"]


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    c = str(color).lstrip("#")
    if len(c) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in c):
        raise EngineError(f"colour {color!r} is not #rrggbb")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def palette(n: int) -> list[str]:
    return [PALETTE[i % len(PALETTE)] for i in range(n)]
