"""Raw raster windows and their validity, without GDAL: what the streaming driver converts into model input.

A `Strip` holds a window in the file's own data type and finds its no-data pixels there (cheaper than on
float32); `fill` then converts and scales any part of it straight into a caller's buffer in one pass, so a
row of tiles is read once and copied once. `LineReader` reads whole lines of an uncompressed raw file
(ENVI) in the file's own interleave with one read per strip: GDAL 3.6 reads a window of a
band-interleaved-by-line file one band and line at a time (ten times slower), and its GDAL_ONE_BIG_READ
shortcut returns wrong values for such files. Nothing here imports GDAL, so a reader without it can stream too.
"""
from __future__ import annotations

import threading
from concurrent.futures import Executor
from pathlib import Path
from typing import Protocol

import numpy as np

from ..core.errors import EngineError, shorten

INTERLEAVES = ("bsq", "bil", "bip")
ROW_BLOCK = 16  # lines whose no-data mask one worker finds at a time


def band_runs(bands: list[int]) -> list[tuple[int, int]]:
    """Consecutive band indices as (first, end) pairs: [0, 1, 2, 7, 8] → [(0, 3), (7, 9)]."""
    runs: list[tuple[int, int]] = []
    for b in bands:
        if runs and runs[-1][1] == b:
            runs[-1] = (runs[-1][0], b + 1)
        else:
            runs.append((b, b + 1))
    return runs


def invalid_pixels(parts: list[np.ndarray], nodata: set[float]) -> np.ndarray:
    """[h, w] True where a pixel is no data: a non-finite or no-data value in any band, or a constant spectrum.

    `parts` are the bands in runs, each [c, h, w] (views of any layout). A constant spectrum (fill values such
    as -0.005 or 0 in every band) is no data, as no real spectrum is flat to the last bit. Two passes over the
    bands (their minimum and maximum) answer all three questions for most pixels; only pixels whose range
    strictly contains a no-data value are compared band by band.
    """
    lo = np.minimum.reduce([p.min(axis=0) for p in parts])
    hi = np.maximum.reduce([p.max(axis=0) for p in parts])
    invalid = lo == hi if sum(p.shape[0] for p in parts) > 1 else lo == 0
    dtype = parts[0].dtype
    if dtype.kind == "f":  # NaN propagates into the minimum, ±inf shows in the minimum or maximum
        invalid |= ~(np.isfinite(lo) & np.isfinite(hi))
    else:  # only no-data values the integer type can hold can occur
        info = np.iinfo(dtype)
        nodata = {v for v in nodata if float(v).is_integer() and info.min <= v <= info.max}
    for v in nodata:
        v = dtype.type(v)
        invalid |= (lo == v) | (hi == v)
        inside = (lo < v) & (v < hi)
        if inside.any():
            rows, cols = np.nonzero(inside)
            invalid[rows, cols] |= np.logical_or.reduce([(p[:, rows, cols] == v).any(axis=0) for p in parts])
    return invalid


class Values:
    """What a strip offers besides `fill`: the whole window as float32 values with its validity."""

    bands: int
    valid: np.ndarray

    def fill(self, out: np.ndarray, x: int, w: int) -> None:
        raise NotImplementedError

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        """(float32 values [C, h, w], valid [h, w]) of the whole strip."""
        h, w = self.valid.shape
        out = np.empty((self.bands, h, w), np.float32)
        self.fill(out, 0, w)
        return out, self.valid


class Strip(Values):
    """A window in the file's data type, as band runs [c, h, w], with its validity [h, w] and the scale to
    reflectance; `buffer` is what the next read of the same size may reuse."""

    def __init__(self, parts: list[np.ndarray], nodata: set[float], scale: float, buffer: np.ndarray | None = None,
                 pool: Executor | None = None):
        self.parts, self.scale = parts, np.float32(scale)
        self.buffer = buffer if buffer is not None else parts[0]
        h = parts[0].shape[1]
        rows = [slice(y, y + ROW_BLOCK) for y in range(0, h, ROW_BLOCK)]
        blocks = (pool.map if pool is not None and len(rows) > 1 else map)(
            lambda r: invalid_pixels([p[:, r] for p in parts], nodata), rows)
        self.valid = ~np.concatenate(list(blocks))

    @property
    def bands(self) -> int:
        return sum(p.shape[0] for p in self.parts)

    def fill(self, out: np.ndarray, x: int, w: int) -> None:
        """Columns x..x+w as float32 reflectance into `out` [C, h, w] (any view), no-data pixels set to 0."""
        c = 0
        for p in self.parts:
            np.multiply(p[:, :, x:x + w], self.scale, out=out[c:c + p.shape[0]], dtype=np.float32,
                        casting="unsafe")
            c += p.shape[0]
        bad = ~self.valid[:, x:x + w]
        if bad.any():
            out[:, bad] = 0


class StackedStrip(Values):
    """Several strips of the same pixels read as one: bands one after the other, valid where all are."""

    def __init__(self, parts: list):
        self.parts = parts
        self.valid = np.logical_and.reduce([p.valid for p in parts])

    @property
    def bands(self) -> int:
        return sum(p.bands for p in self.parts)

    def fill(self, out: np.ndarray, x: int, w: int) -> None:
        """Each part's columns into its own bands of `out`, zeroed where that part has no data."""
        c = 0
        for p in self.parts:
            p.fill(out[c:c + p.bands], x, w)
            c += p.bands


class LineReader:
    """Whole lines of an uncompressed raw raster file (width × height × bands of `dtype` after `offset` bytes,
    interleaved `bsq`, `bil` or `bip`) read straight into a reused buffer: one read per strip (one per band
    for `bsq`)."""

    def __init__(self, path: str | Path, width: int, height: int, bands: int, dtype, interleave: str,
                 offset: int = 0):
        if interleave not in INTERLEAVES:
            raise ValueError(f"interleave {interleave!r}: use one of {', '.join(INTERLEAVES)}")
        self.path, self.width, self.height, self.bands = str(path), width, height, bands
        self.dtype, self.interleave, self.offset = np.dtype(dtype), interleave, offset
        self.file = None  # opened at the first read, kept open for the reader's life
        self.lock = threading.Lock()

    def _read_into(self, view: np.ndarray, offset: int, y: int, h: int) -> None:
        data = memoryview(view.reshape(-1)).cast("B")
        try:
            with self.lock:
                if self.file is None:
                    self.file = open(self.path, "rb")  # noqa: SIM115
                self.file.seek(offset)
                n = self.file.readinto(data)
        except OSError as e:
            raise EngineError(f"cannot read lines {y}–{y + h} of {shorten(self.path)} ({e.strerror or e})") from e
        if n != len(data):
            raise EngineError(f"cannot read lines {y}–{y + h} of {shorten(self.path)}: the file ends "
                              f"{len(data) - n} bytes early; it may be truncated or still being copied")

    def strip(self, y: int, h: int, bands: list[int], nodata: set[float], scale: float,
              reuse: Strip | None = None, pool: Executor | None = None) -> Strip:
        """Lines y..y+h of `bands` (0-based) as a `Strip` (its no-data mask found by `pool`'s workers if given)."""
        W, item = self.width, self.dtype.itemsize
        runs = band_runs(bands)
        shape = {"bil": (h, self.bands, W), "bip": (h, W, self.bands), "bsq": (len(bands), h, W)}[self.interleave]
        buf = reuse.buffer if reuse is not None and reuse.buffer.shape == shape else np.empty(shape, self.dtype)
        if self.interleave == "bsq":  # each band's lines are contiguous
            for i, b in enumerate(bands):
                self._read_into(buf[i], self.offset + (b * self.height + y) * W * item, y, h)
            parts, c = [], 0
            for b0, b1 in runs:
                parts.append(buf[c:c + b1 - b0])
                c += b1 - b0
        else:
            self._read_into(buf, self.offset + y * W * self.bands * item, y, h)
            cube = buf.transpose(1, 0, 2) if self.interleave == "bil" else buf.transpose(2, 0, 1)  # [bands, h, W]
            parts = [cube[b0:b1] for b0, b1 in runs]
        return Strip(parts, nodata, scale, buf, pool)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class StripSource(Protocol):
    """What the streaming driver reads: a size, the bands it gives, and strips of whole tiles."""

    width: int
    height: int
    bands: list[int]

    def read_strip(self, x: int, y: int, w: int, h: int, reuse=None,
                   pool: Executor | None = None) -> Strip | StackedStrip:
        """The window x, y, w, h; `reuse`, a strip this source returned before, may lend its buffers; `pool`'s
        workers may share the work on it."""
