"""A class map checked against an independent validation layer: accuracy with 95 % intervals and error-adjusted
class areas (Olofsson et al. 2014), for the reports of `classify`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from osgeo import gdal

from ..core.errors import EngineError, shorten
from ..io.vectors import rasterize, read_features
from ..learn.metrics import boundary_shares, confusion_matrix, honest_accuracy, stratified_areas
from ..learn.samples import class_key

MARGIN = 2  # px of map read around the validation pixels, to tell whether they sample class boundaries


def reference_map(path, class_field: str, raster_ds, names: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """([H, W] class id of the map's classes (0 = none), [H, W] validation feature 1…n, notes) from a layer whose
    class values are the model's class names (case and surrounding spaces ignored)."""
    feats, notes = read_features(path, class_field, raster_ds)
    by_key = {class_key(n): i + 1 for i, n in enumerate(names)}
    ids = [by_key.get(class_key(str(v)), 0) for v, _ in feats]
    unknown = sorted({str(v) for (v, _), i in zip(feats, ids) if i == 0})
    if unknown and not any(ids):
        raise EngineError(f"{shorten(path)}: none of the classes in {class_field!r} ({', '.join(unknown[:8])}) is a "
                          f"class of the model ({', '.join(names)}); check the class field")
    if unknown:
        notes.append(f"validation features of class(es) {', '.join(unknown[:8])} are not classes of the model and "
                     "are left out")
    units = rasterize(feats, raster_ds, list(range(1, len(feats) + 1)))
    return np.array([0, *ids], np.uint16)[units], np.where(units > 0, units, 0), notes


def map_validation(path, class_field: str, raster_ds, classes_tif: Path, names: list[str],
                   pixel_counts: dict[str, int], pixel_area_m2: float | None, seed: int = 0) -> dict:
    """`validation` (OA, κ, per-class F1 with intervals and warnings) and `adjusted_areas` of the written map."""
    truth, units, notes = reference_map(path, class_field, raster_ds, names)
    rows, cols = np.nonzero(truth)
    if len(rows) == 0:
        raise EngineError(f"{shorten(path)}: no validation feature of a model class falls on the raster")
    y0, y1 = max(0, rows.min() - MARGIN), min(truth.shape[0], rows.max() + MARGIN + 1)
    x0, x1 = max(0, cols.min() - MARGIN), min(truth.shape[1], cols.max() + MARGIN + 1)
    mapped = gdal.Open(str(classes_tif)).ReadAsArray(int(x0), int(y0), int(x1 - x0), int(y1 - y0))
    t, u = truth[y0:y1, x0:x1], units[y0:y1, x0:x1]
    keep = (t > 0) & (mapped > 0)
    acc = honest_accuracy(t[keep], mapped[keep], names, u[keep], boundary_shares(mapped, t > 0), seed=seed)
    areas = stratified_areas(confusion_matrix(t[keep], mapped[keep], len(names)),
                             [pixel_counts[n] for n in names], names, pixel_area_m2)
    return {"validation": acc, "adjusted_areas": areas, "warnings": notes + acc["warnings"] + areas["warnings"]}
