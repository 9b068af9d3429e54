"""A classify-shaped job with a cheap stand-in model, registered only for the worker tests.

It drives the real streaming driver and writers; the model is a nearest-of-three spectral-mean rule, and
`delay` seconds per batch give the cancel test time to act.
"""
import time

import numpy as np

from engine.infer import classify_to_geotiffs
from engine.jobs import job
from engine.raster import RasterSource
from engine.sensors import profile_for_raster


def standin_model(delay: float = 0.0):
    def model_fn(batch: np.ndarray) -> np.ndarray:
        time.sleep(delay)
        mean = batch.mean(axis=1)
        scores = np.stack([-(mean - c) ** 2 for c in (0.1, 0.3, 0.6)], axis=1)
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return model_fn


@job("classify-standin")
def classify_standin(params, progress=None, cancel=None, runtime=None):
    prof = profile_for_raster(params["raster"], profile=params.get("profile"))
    src = RasterSource(params["raster"], prof)
    return classify_to_geotiffs(src, standin_model(params.get("delay", 0.0)), ["dark", "mid", "bright"],
                                [(20, 20, 120), (30, 160, 30), (230, 200, 40)], params["out"],
                                tile=params.get("tile", 16), overlap=params.get("overlap", 4),
                                batch_size=params.get("batch_size", 2), progress=progress, cancel=cancel)
