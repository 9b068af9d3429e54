"""The streaming driver: read → tile → batch → model → blend → write, in bounded memory.

A reader thread reads each row of tiles as one strip of whole lines (the file's own order: one large read
rather than a small one per band, line and tile), converts its tiles straight into batch buffers that are
used again and again (fresh arrays this large pay their page faults on every use), and hands full batches
on; batches run across tile rows so the model always sees `batch_size` tiles. The caller's thread runs the
model and blends overlapping predictions with a smooth window; rows go to the writer as soon as no later
tile can touch them, so memory holds one strip, a few batches and about one row of tiles, whatever the
raster's length.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..core.progress import CancelFn, ProgressFn, check_cancel
from .strips import StripSource
from .tiling import TileGrid, blend_window

_DONE = object()
STRIP_BYTES = 512 * 2**20  # a strip of whole lines wider than this is read in groups of tiles
FILL_THREADS = min(8, os.cpu_count() or 1)  # tiles converted at once (NumPy lets go of the GIL)
BUFFERS = 2  # batch buffers: one being filled while the model reads the other (memory is time: see docs/performance.md)


@dataclass
class StreamStats:
    tiles: int = 0
    valid_pixels: int = 0
    seconds: float = 0.0


@dataclass
class Batch:
    """Tiles in reading order: (x0, y0, valid [h, w], index in `values` or None when no pixel is valid)."""

    values: np.ndarray  # [B, C, T, T] float32, a reused buffer; only the first `filled` are tiles
    tiles: list = field(default_factory=list)
    filled: int = 0


def available_memory_bytes() -> int:
    try:
        for line in open("/proc/meminfo", encoding="ascii"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def choose_batch_size(bands: int, tile: int, bytes_per_input_value: float = 24.0, cap: int = 16,
                      free_bytes: int | None = None) -> int:
    """Tiles per batch so that inputs and the model's working set use at most a quarter of free memory."""
    free = free_bytes if free_bytes is not None else available_memory_bytes()
    per_tile = bands * tile * tile * bytes_per_input_value
    return int(max(1, min(cap, free // 4 // max(per_tile, 1))))


def column_groups(grid: TileGrid, bytes_per_pixel: int) -> list[list[int]]:
    """The tile columns in groups whose strip (one tile high) stays under STRIP_BYTES; one group, read as whole
    lines, whenever the raster is narrow enough (hyperspectral flight lines are)."""
    cols = grid.columns
    if grid.width * grid.tile * bytes_per_pixel <= STRIP_BYTES:
        return [cols]
    n = max(1, STRIP_BYTES // (grid.tile * grid.tile * bytes_per_pixel))
    return [cols[i:i + n] for i in range(0, len(cols), n)]


def _reader(source: StripSource, grid: TileGrid, batch_size: int, free: queue.Queue, out: queue.Queue,
            stop: threading.Event) -> None:
    """Strips in, full batches out; waits for a free buffer before filling the next batch."""

    def take() -> np.ndarray | None:
        while not stop.is_set():
            try:
                return free.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def fill(strip, tile: np.ndarray, x: int, h: int, w: int) -> None:
        strip.fill(tile[:, :h, :w], x, w)
        if (h, w) != tile.shape[1:]:  # a raster smaller than one tile
            tile[:] = grid.pad(tile[:, :h, :w])  # np.pad makes a new array before it is copied back

    try:
        strip, batch = None, None
        groups = column_groups(grid, 4 * len(source.bands))  # float32 or narrower values
        with ThreadPoolExecutor(FILL_THREADS) as pool:
            for y0 in grid.rows:
                for cols in groups:
                    xa, x_end = cols[0], min(cols[-1] + grid.tile, grid.width)
                    _, y, _, h = grid.window(xa, y0)
                    strip = source.read_strip(xa, y, x_end - xa, h, reuse=strip, pool=pool)
                    jobs = []
                    for x0 in cols:
                        if batch is None:
                            values = take()
                            if values is None:
                                return
                            batch = Batch(values)
                        _, _, w, h = grid.window(x0, y0)
                        valid = strip.valid[:, x0 - xa:x0 - xa + w]  # each strip has its own mask
                        slot = None
                        if valid.any():
                            slot = batch.filled
                            batch.filled += 1
                            jobs.append(pool.submit(fill, strip, batch.values[slot], x0 - xa, h, w))
                        batch.tiles.append((x0, y0, valid, slot))
                        if len(batch.tiles) == batch_size:  # its tiles converted, it goes (and frees a buffer)
                            for job in jobs:
                                job.result()
                            jobs = []
                            out.put(batch)
                            batch = None
                    for job in jobs:  # the strip's buffer is read into again next
                        job.result()
        if batch is not None:
            out.put(batch)
    except BaseException as e:  # noqa: BLE001 - handed to the consumer thread
        out.put(e)
    finally:
        out.put(_DONE)


def stream_predictions(source: StripSource, model_fn: Callable[[np.ndarray], np.ndarray], n_out: int,
                       on_rows: Callable[[int, np.ndarray, np.ndarray], None], tile: int, overlap: int = 0,
                       batch_size: int | None = None, progress: ProgressFn | None = None,
                       cancel: CancelFn | None = None) -> StreamStats:
    """Run `model_fn` ([B, C, T, T] → [B, n_out, T, T]) over the raster and hand finished rows to `on_rows`.

    on_rows(y, scores [n_out, h, W], valid [h, W]) receives blended scores for rows y..y+h in order. The batch
    given to `model_fn` is a view of a reused buffer: it must not be kept after the call. When `model_fn` has an
    `empty(shape)` attribute (the runtime's does: pinned memory on CUDA), the buffers come from it.
    """
    W, H = source.width, source.height
    grid = TileGrid(W, H, tile, overlap)
    weight = blend_window(tile, overlap if len(grid) > 1 else 0)
    batch_size = batch_size or choose_batch_size(len(source.bands), tile)
    stats = StreamStats()
    t0 = time.perf_counter()
    free: queue.Queue = queue.Queue()
    empty = getattr(model_fn, "empty", None) or (lambda shape: np.empty(shape, np.float32))
    for _ in range(BUFFERS):
        free.put(empty((batch_size, len(source.bands), tile, tile)))
    batches: queue.Queue = queue.Queue()
    stop = threading.Event()
    reader = threading.Thread(target=_reader, args=(source, grid, batch_size, free, batches, stop), daemon=True)
    reader.start()

    lo = 0  # first row not yet handed on
    acc = np.zeros((n_out, 0, W), np.float32)
    wsum = np.zeros((0, W), np.float32)
    valid_acc = np.zeros((0, W), bool)
    total = len(grid)

    def grow(hi: int):
        nonlocal acc, wsum, valid_acc
        extra = hi - lo - acc.shape[1]
        if extra > 0:
            acc = np.concatenate([acc, np.zeros((n_out, extra, W), np.float32)], axis=1)
            wsum = np.concatenate([wsum, np.zeros((extra, W), np.float32)], axis=0)
            valid_acc = np.concatenate([valid_acc, np.zeros((extra, W), bool)], axis=0)

    def flush(upto: int):
        nonlocal lo, acc, wsum, valid_acc
        n = upto - lo
        if n <= 0:
            return
        scores = acc[:, :n] / np.maximum(wsum[:n], 1e-12)
        on_rows(lo, scores, valid_acc[:n] & (wsum[:n] > 0))
        acc, wsum, valid_acc = acc[:, n:], wsum[n:], valid_acc[n:]
        lo = upto

    def blend(batch: Batch, preds: np.ndarray | None):
        for x0, y0, valid, slot in batch.tiles:
            if y0 > lo:  # a new row of tiles: the rows above it are final
                flush(y0)
            h, w = valid.shape
            grow(y0 + h)
            r = y0 - lo
            if slot is not None:
                wv = weight[:h, :w] * valid
                acc[:, r:r + h, x0:x0 + w] += preds[slot, :, :h, :w] * wv
                wsum[r:r + h, x0:x0 + w] += wv
            valid_acc[r:r + h, x0:x0 + w] |= valid
            stats.valid_pixels += int(valid.sum())
        stats.tiles += len(batch.tiles)

    try:
        while True:
            item = batches.get()
            if isinstance(item, BaseException):
                raise item
            if item is _DONE:
                break
            check_cancel(cancel)
            blend(item, model_fn(item.values[:item.filled]) if item.filled else None)
            free.put(item.values)
            if progress:
                progress(stats.tiles / total, f"{stats.tiles}/{total} tiles")
        flush(H)
    finally:
        stop.set()
        reader.join()
    stats.seconds = time.perf_counter() - t0
    return stats
