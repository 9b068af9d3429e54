"""`suggest`: where to label next. The model classifies the raster; the pixels where it hesitates most (the
smallest margin between its two most probable classes) are proposed as points, spread over the scene and over
the predicted classes, away from what is labelled already. The analyst labels them and fine-tunes again with
them (`finetune --samples`)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import ogr

from ..core.errors import EngineError, shorten
from ..core.progress import CancelFn, ProgressFn, no_progress
from ..core.request import param
from ..core.runtime import Runtime
from ..io.raster import RasterSource
from ..io.stream import stream_predictions
from ..io.vectors import create_gpkg_layer, rasterize, read_features, spatial_ref
from ..io.writers import OutputSet
from ..model.bundles import load_bundle
from .classify import bundle_classifier, stream_overlap
from .options import SensorChoice

CANDIDATES_PER_POINT = 16  # grid cells per wanted point, each keeping its most uncertain pixel of every class
KEEP_AWAY_PX = 2  # from labelled pixels


@dataclass(kw_only=True)
class SuggestRequest(SensorChoice):
    job = "suggest"
    summary = "where to label next: the most informative unlabelled pixels as points (.gpkg)"
    computes = True
    raster: str = param(help="the raster being mapped", kind="raster")
    model: str = param(help="model name or bundle folder")
    count: int = param(20, "how many points to suggest", lo=1, hi=10000)
    out: str = param(help="output .gpkg of points", kind="out-file")
    overwrite: bool = param(False, "replace the output file if it exists (never done otherwise)")
    polygons: str | None = param(None, "labels drawn already (points are kept away from them); default: the model's "
                                       "training layer and samples when it was trained on this raster", kind="vector")

    def check(self) -> None:
        if Path(self.out).suffix.lower() != ".gpkg":
            raise EngineError(f"out {self.out}: the points are written as a GeoPackage; give a path ending in .gpkg")

    def output_paths(self) -> list[Path]:
        return [Path(self.out)]


def neighbourhood(a: np.ndarray) -> list[np.ndarray]:
    """The nine 3×3-neighbour views of a [h, W] array, edges replicated."""
    p = np.pad(a, 1, mode="edge")
    h, w = a.shape
    return [p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]


class Candidates:
    """The smallest-margin pixel of every (grid cell, predicted class), gathered row block by row block."""

    def __init__(self, width: int, height: int, classes: int, count: int):
        self.cell = max(1, int(math.sqrt(width * height / (count * CANDIDATES_PER_POINT))))
        self.columns = -(-width // self.cell)
        n = self.columns * -(-height // self.cell) * classes
        self.classes = classes
        self.margin = np.full(n, np.inf)
        self.where = np.zeros((n, 2), np.int64)
        self.scores = np.zeros((n, 3))  # confidence, predicted class, runner-up class

    def add(self, y0: int, probs: np.ndarray, usable: np.ndarray) -> None:
        """probs [K, h, W] of rows y0…; usable [h, W]: valid and not labelled.

        A pixel's margin is the mean over its 3×3 neighbourhood, and only pixels whose neighbours share their
        predicted class count: the centre of an area the model is unsure about stands for many pixels, while a
        lone mixed pixel on a boundary is hard to label and teaches the model to blur."""
        runner_up, predicted = np.argsort(probs, axis=0, kind="stable")[-2:]  # one sort gives both classes
        top2 = np.take_along_axis(probs, np.stack([runner_up, predicted]), axis=0)
        margin = sum(neighbourhood(top2[1] - top2[0])) / 9
        uniform = np.logical_and.reduce([n == predicted for n in neighbourhood(predicted)])
        ys, xs = np.nonzero(usable & uniform)
        if len(ys) == 0:
            return
        best, second = predicted[ys, xs], runner_up[ys, xs]
        key = (((y0 + ys) // self.cell) * self.columns + xs // self.cell) * self.classes + best
        m = margin[ys, xs]
        first = np.lexsort((m, key))  # by key, smallest margin first
        k_sorted = key[first]
        lead = first[np.r_[True, k_sorted[1:] != k_sorted[:-1]]]
        better = m[lead] < self.margin[key[lead]]
        lead = lead[better]
        self.margin[key[lead]] = m[lead]
        self.where[key[lead]] = np.stack([xs[lead], y0 + ys[lead]], axis=1)
        self.scores[key[lead]] = np.stack([top2[1][ys[lead], xs[lead]], best[lead], second[lead]], axis=1)

    def choose(self, count: int, width: int, height: int) -> list[int]:
        """Candidate indices: lowest margin first, taking the classes in turn, at least a spacing apart (halved
        until enough points are found)."""
        found = np.flatnonzero(np.isfinite(self.margin))
        by_class = [found[self.scores[found, 1] == c] for c in range(self.classes)]
        by_class = [ix[np.argsort(self.margin[ix])] for ix in by_class if len(ix)]
        chosen: list[int] = []
        spacing = max(1.0, 0.5 * math.sqrt(width * height / count))  # more points than pixels: 1 px apart
        while len(chosen) < min(count, len(found)) and spacing >= 0.5:
            pointers = [0] * len(by_class)
            placed = True
            while len(chosen) < count and placed:
                placed = False
                for c, ix in enumerate(by_class):
                    while pointers[c] < len(ix):
                        i = ix[pointers[c]]
                        pointers[c] += 1
                        if i in chosen:
                            continue
                        picked = self.where[chosen] if chosen else np.zeros((0, 2))
                        if len(picked) == 0 or np.hypot(*(picked - self.where[i]).T).min() >= spacing:
                            chosen.append(int(i))
                            placed = True
                            break
                    if len(chosen) >= count:
                        break
            spacing /= 2
        return chosen[:count]


def labelled_mask(req: SuggestRequest, bundle, source: RasterSource) -> tuple[np.ndarray | None, list[str]]:
    """[H, W] True near pixels labelled already (the given layer, else the model's own training layer and samples
    when it was trained on this raster), and those layers' paths."""
    training = bundle.meta.get("training", {})
    layers = [req.polygons] if req.polygons else []
    if not layers and Path(training.get("raster", "")).resolve() == Path(req.raster).resolve():
        layers = [p for p in (training.get("polygons"), training.get("samples")) if p and Path(p).is_file()]
    if not layers:
        return None, []
    feats = [f for layer in layers for f in read_features(layer, None, source.ds)[0]]
    mask = np.pad(rasterize(feats, source.ds, [1] * len(feats)) > 0, KEEP_AWAY_PX)
    H, W = source.height, source.width
    side = 2 * KEEP_AWAY_PX + 1
    return np.logical_or.reduce([mask[dy:dy + H, dx:dx + W] for dy in range(side) for dx in range(side)]), layers


def suggest(req: SuggestRequest, runtime: Runtime | None = None, progress: ProgressFn | None = None,
            cancel: CancelFn | None = None) -> dict:
    """Write `req.out`: `req.count` points with an empty class field to fill in, most informative first."""
    t0 = time.perf_counter()
    runtime = runtime or Runtime("cpu")
    progress = progress or no_progress
    bundle = load_bundle(req.model)
    source = RasterSource.open(req.raster, req.profile, req.sensor, req.level)
    forward, names, _, tile, facts = bundle_classifier(bundle, source, runtime)
    taken, layers = labelled_mask(req, bundle, source)
    cands = Candidates(source.width, source.height, len(names), req.count)

    def on_rows(y, probs, valid):
        usable = valid if taken is None else valid & ~taken[y:y + probs.shape[1]]
        cands.add(y, probs, usable)

    stream_predictions(source, runtime.model_fn(forward), len(names), on_rows, tile,
                       stream_overlap(facts["head"], tile),
                       progress=lambda f, m: progress(0.95 * f, f"classifying: {m}"), cancel=cancel)
    chosen = cands.choose(req.count, source.width, source.height)
    if not chosen:
        raise EngineError(f"{shorten(req.raster)} has no valid unlabelled pixel to suggest")
    field = bundle.meta.get("training", {}).get("class_field") or "class"
    out_path = Path(req.out)
    gt = source.ds.GetGeoTransform()
    with OutputSet(out_path.parent, [out_path.name]) as outputs:
        ds, lyr = create_gpkg_layer(outputs.path(out_path.name), "suggestions", spatial_ref(source.ds.GetProjection()),
                                    ogr.wkbPoint, [(field, ogr.OFTString), ("rank", ogr.OFTInteger),
                                                   ("predicted", ogr.OFTString), ("runner_up", ogr.OFTString),
                                                   ("margin", ogr.OFTReal), ("confidence", ogr.OFTReal)])
        for rank, i in enumerate(chosen, 1):
            (x, y), (conf, best, second) = cands.where[i], cands.scores[i]
            f = ogr.Feature(lyr.GetLayerDefn())
            f.SetField("rank", rank)
            f.SetField("predicted", names[int(best)])
            f.SetField("runner_up", names[int(second)])
            f.SetField("margin", round(float(cands.margin[i]), 4))
            f.SetField("confidence", round(float(conf), 4))
            point = ogr.Geometry(ogr.wkbPoint)  # the pixel's centre, rotated grids included
            px, py = x + 0.5, y + 0.5
            point.AddPoint_2D(gt[0] + px * gt[1] + py * gt[2], gt[3] + px * gt[4] + py * gt[5])
            f.SetGeometry(point)
            lyr.CreateFeature(f)
        del ds  # closes the GeoPackage before it is moved into place
        outputs.commit()
    progress(1.0, f"{len(chosen)} points to label")
    per_class = {n: sum(1 for i in chosen if names[int(cands.scores[i, 1])] == n) for n in names}
    return {"out": str(outputs.final(out_path.name)), "points": len(chosen), "class_field": field,
            "per_predicted_class": per_class, "median_margin": round(float(np.median(cands.margin[chosen])), 4),
            "kept_away_from": layers, "seconds": round(time.perf_counter() - t0, 2),
            "warnings": [] if len(chosen) == req.count else
            [f"only {len(chosen)} of {req.count} points could be placed: the raster has few unlabelled pixels"]}
