"""A cheap stand-in model (nearest of three spectral means) and a helper that writes class maps through the real
streaming driver and writers, for tests that need no network."""
import time

import numpy as np

from engine.io.writers import OutputSet
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
