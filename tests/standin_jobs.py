"""A classify-shaped job with a cheap stand-in model, registered only for the worker tests, and a helper that
writes class maps through the real writers.

It drives the real streaming driver and writers; the model is a nearest-of-three spectral-mean rule, and
`delay` seconds per batch give the cancel test time to act.
"""
import time
from dataclasses import dataclass

import numpy as np

from engine.core.request import Request, param
from engine.io.raster import RasterSource
from engine.io.writers import OutputSet
from engine.service.jobs import register
from engine.tasks.classify import classify_to_geotiffs


def standin_model(delay: float = 0.0):
    def model_fn(batch: np.ndarray) -> np.ndarray:
        time.sleep(delay)
        mean = batch.mean(axis=1)
        scores = np.stack([-(mean - c) ** 2 for c in (0.1, 0.3, 0.6)], axis=1)
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return model_fn


def write_classes(source, model_fn, names, colors, out_dir, **kw) -> dict:
    """classes.tif and confidence.tif in `out_dir`, all or nothing, as the classify job writes them."""
    with OutputSet(out_dir, ["classes.tif", "confidence.tif"]) as out:
        result = classify_to_geotiffs(source, model_fn, names, colors, out, **kw)
        out.commit()
    return result


@dataclass(kw_only=True)
class StandinRequest(Request):
    job = "classify-standin"
    raster: str = param(help="raster", kind="raster")
    out: str = param(help="output folder", kind="out-dir")
    profile: str | None = param(None, "sensor profile")
    delay: float = param(0.0, "seconds per batch", lo=0)
    tile: int = param(16, "tile", lo=8)
    overlap: int = param(4, "overlap", lo=0)
    batch_size: int = param(2, "batch", lo=1)


def classify_standin(req: StandinRequest, runtime=None, progress=None, cancel=None) -> dict:
    src = RasterSource.open(req.raster, req.profile)
    return write_classes(src, standin_model(req.delay), ["dark", "mid", "bright"],
                         [(20, 20, 120), (30, 160, 30), (230, 200, 40)], req.out, tile=req.tile,
                         overlap=req.overlap, batch_size=req.batch_size, progress=progress, cancel=cancel)


register(StandinRequest, classify_standin)
