"""The streaming driver: read → tile → batch → model → blend → write, in bounded memory.

Tiles are read by a prefetch thread while the model computes. Predictions of overlapping tiles are blended
with a smooth window; rows are handed to the writer as soon as no later tile can touch them, so memory
holds about one row of tiles, whatever the raster's length.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core.progress import CancelFn, ProgressFn, check_cancel
from .raster import RasterSource
from .tiling import TileGrid, blend_window

_DONE = object()


@dataclass
class StreamStats:
    tiles: int = 0
    valid_pixels: int = 0
    seconds: float = 0.0


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


def _prefetch(source: RasterSource, grid: TileGrid, out: queue.Queue, stop: threading.Event) -> None:
    try:
        for y0 in grid.rows:
            for x0 in grid.columns:
                if stop.is_set():
                    return
                x, y, w, h = grid.window(x0, y0)
                values, valid = source.read(x, y, w, h)
                out.put((x0, y0, grid.pad(values), valid))
    except BaseException as e:  # noqa: BLE001 - handed to the consumer thread
        out.put(e)
    finally:
        out.put(_DONE)


def stream_predictions(source: RasterSource, model_fn: Callable[[np.ndarray], np.ndarray], n_out: int,
                       on_rows: Callable[[int, np.ndarray, np.ndarray], None], tile: int, overlap: int = 0,
                       batch_size: int | None = None, progress: ProgressFn | None = None,
                       cancel: CancelFn | None = None) -> StreamStats:
    """Run `model_fn` ([B, C, T, T] → [B, n_out, T, T]) over the raster and hand finished rows to `on_rows`.

    on_rows(y, scores [n_out, h, W], valid [h, W]) receives blended scores for rows y..y+h in order.
    """
    W, H = source.width, source.height
    grid = TileGrid(W, H, tile, overlap)
    weight = blend_window(tile, overlap if len(grid) > 1 else 0)
    batch_size = batch_size or choose_batch_size(len(source.bands), tile)
    stats = StreamStats()
    t0 = time.perf_counter()
    tiles_q: queue.Queue = queue.Queue(maxsize=max(2, 2 * batch_size))
    stop = threading.Event()
    reader = threading.Thread(target=_prefetch, args=(source, grid, tiles_q, stop), daemon=True)
    reader.start()

    lo = 0  # first row not yet handed on
    acc = np.zeros((n_out, 0, W), np.float32)
    wsum = np.zeros((0, W), np.float32)
    valid_acc = np.zeros((0, W), bool)
    rows = grid.rows
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

    def run_batch(batch):
        todo = [i for i, b in enumerate(batch) if b[3].any()]
        preds = model_fn(np.stack([batch[i][2] for i in todo])) if todo else None
        for j, i in enumerate(todo):
            x0, y0, _, valid = batch[i]
            h, w = valid.shape
            grow(y0 + h)
            r = y0 - lo
            wv = weight[:h, :w] * valid
            acc[:, r:r + h, x0:x0 + w] += preds[j, :, :h, :w] * wv
            wsum[r:r + h, x0:x0 + w] += wv
        for x0, y0, _, valid in batch:
            h, w = valid.shape
            grow(y0 + h)
            valid_acc[y0 - lo:y0 - lo + h, x0:x0 + w] |= valid
            stats.valid_pixels += int(valid.sum())
        stats.tiles += len(batch)

    try:
        batch = []
        current_row = rows[0]
        while True:
            item = tiles_q.get()
            if isinstance(item, BaseException):
                raise item
            if item is _DONE:
                break
            check_cancel(cancel)
            if item[1] != current_row:
                if batch:
                    run_batch(batch)
                    batch = []
                next_row = item[1]
                flush(next_row)
                current_row = next_row
            batch.append(item)
            if len(batch) >= batch_size:
                run_batch(batch)
                batch = []
                if progress:
                    progress(stats.tiles / total, f"{stats.tiles}/{total} tiles")
        if batch:
            run_batch(batch)
        flush(H)
        if progress:
            progress(1.0, f"{stats.tiles}/{total} tiles")
    finally:
        stop.set()
        while reader.is_alive():  # unblock the reader if it waits on a full queue
            try:
                tiles_q.get_nowait()
            except queue.Empty:
                reader.join(0.05)
    stats.seconds = time.perf_counter() - t0
    return stats
