"""`classify-cells`: grid cells or parcels classified into a GeoPackage with the class, its confidence and every
class probability per cell. With a cell model (`finetune --task cells`, the pooled-token head) each cell is read
in a window around it and classified as a whole; with a land-cover bundle the per-pixel probabilities are
averaged over each cell."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr

from ..core.errors import EngineError
from ..core.progress import CancelFn, ProgressFn
from ..core.request import param
from ..core.runtime import Runtime
from ..io.raster import RasterSource
from ..io.stream import stream_predictions
from ..io.vectors import create_gpkg_layer, rasterize, read_features, spatial_ref
from ..io.writers import OutputSet
from ..learn.cells import pooled_cell_probabilities, polygon_boxes, window_size
from ..model.bundles import load_bundle
from ..model.segmenter import SpectralInput
from .classify import bundle_classifier, bundle_network
from .options import SensorChoice


@dataclass(kw_only=True)
class CellsRequest(SensorChoice):
    job = "classify-cells"
    summary = "classify grid cells or parcels into a GeoPackage"
    computes = True
    raster: str = param(help="the raster to classify", kind="raster")
    model: str = param(help="a cell model (finetune --task cells) or a land-cover model", kind="model")
    cell_size: int | None = param(None, "square grid cells of this many pixels", lo=1, hi=100000)
    zones: str | None = param(None, "polygons to classify (parcels, fields), any CRS", kind="vector")
    out: str = param(help="output .gpkg", kind="out-file")
    overwrite: bool = param(False, "replace the output file if it exists (never done otherwise)")

    def check(self) -> None:
        if (self.cell_size is None) == (self.zones is None):
            raise EngineError("give either a cell size in pixels or a zones layer, not both")
        if Path(self.out).suffix.lower() != ".gpkg":
            raise EngineError(f"out {self.out}: the cells are written as a GeoPackage; give a path ending in .gpkg")

    def output_paths(self) -> list[Path]:
        return [Path(self.out)]


def _field_name(name: str) -> str:
    return "p_" + re.sub(r"[^0-9A-Za-z_]", "_", name)[:50]


def classify_cells(req: CellsRequest, runtime: Runtime | None = None, progress: ProgressFn | None = None,
                   cancel: CancelFn | None = None) -> dict:
    """Write `req.out` (.gpkg): one feature per grid cell or zone with class, confidence and p_<class> fields."""
    t0 = time.perf_counter()
    runtime = runtime or Runtime("cpu")
    cell_size, zones = req.cell_size, req.zones
    source = RasterSource.open(req.raster, req.profile, req.sensor, req.level)
    ds = source.ds
    W, H = source.width, source.height
    if cell_size is not None:
        ncols, nrows = -(-W // cell_size), -(-H // cell_size)
        n, zone_feats, notes, ids = ncols * nrows, None, [], None
    else:
        zone_feats, notes = read_features(zones, None, ds)  # reprojected, repaired, those off the raster skipped
        ids = rasterize(zone_feats, ds, list(range(1, len(zone_feats) + 1)))
        n = len(zone_feats) + 1  # id 0 of the zone raster is "no zone"
    bundle = load_bundle(req.model)
    if bundle.meta.get("task") == "cells":
        probs, counts, names, facts = _pooled_cells(bundle, source, runtime, cell_size, ids, n, progress, cancel)
    else:
        probs, counts, names, facts = _averaged_pixels(bundle, source, runtime, cell_size, ids, n, progress, cancel)
    gt = ds.GetGeoTransform()
    out_path = Path(req.out)
    outputs = OutputSet(out_path.parent, [out_path.name])
    fields = [("cell", ogr.OFTInteger64), ("class", ogr.OFTString), ("confidence", ogr.OFTReal),
              ("valid_pixels", ogr.OFTInteger64)] + [(_field_name(nm), ogr.OFTReal) for nm in names]
    with outputs, outputs.guard(out_path.name) as path:
        ods, olyr = create_gpkg_layer(path, "cells", spatial_ref(ds.GetProjection()),
                                      ogr.wkbPolygon if zone_feats is None else ogr.wkbUnknown, fields)
        written = _write_cells(olyr, n, zone_feats, cell_size, W, H, gt, counts, probs, names)
        del olyr, ods  # closes the GeoPackage
        outputs.commit()
    cells = slice(1, None) if zone_feats is not None else slice(None)  # id 0 of the zone raster is "no zone"
    top, empty = probs[cells].argmax(1), counts[cells] == 0
    warnings_out = list(notes)
    if empty.any():
        warnings_out.append(f"{int(empty.sum())} cell(s) hold no valid pixel; their class is empty")
    return {"out": str(out_path), "cells": written, "cells_without_valid_pixels": int(empty.sum()),
            "cells_per_class": {name: int(((top == k) & ~empty).sum()) for k, name in enumerate(names)},
            "model": facts["model"], "device": runtime.device_name, "method": facts["method"],
            "classes": {k: bundle.meta["classes"][k] for k in ("names", "colors")},  # for the caller's style
            "seconds": round(time.perf_counter() - t0, 2), "warnings": warnings_out}


def _write_cells(olyr, n, zone_feats, cell_size, W, H, gt, counts, probs, names) -> int:
    """One feature per grid cell (or zone) with its class, confidence and class probabilities."""
    ncols = -(-W // cell_size) if cell_size else 0
    written = 0
    olyr.StartTransaction()
    for i in range(n):
        if zone_feats is not None and i == 0:
            continue
        if cell_size is not None:
            r, c = divmod(i, ncols)
            x0, y0 = c * cell_size, r * cell_size
            x1, y1 = min(W, x0 + cell_size), min(H, y0 + cell_size)
            ring = ogr.Geometry(ogr.wkbLinearRing)
            for px, py in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)):
                ring.AddPoint_2D(*gdal.ApplyGeoTransform(gt, px, py))
            geom = ogr.Geometry(ogr.wkbPolygon)
            geom.AddGeometry(ring)
            ident = i
        else:
            ident, geom = zone_feats[i - 1]
        f = ogr.Feature(olyr.GetLayerDefn())
        f.SetGeometry(geom)
        f.SetField("cell", int(ident))
        f.SetField("valid_pixels", int(counts[i]))
        if counts[i]:
            f.SetField("class", names[int(probs[i].argmax())])
            f.SetField("confidence", round(float(probs[i].max()), 5))
            for nm, p in zip(names, probs[i]):
                f.SetField(_field_name(nm), round(float(p), 5))
        olyr.CreateFeature(f)
        written += 1
    olyr.CommitTransaction()
    return written


def _averaged_pixels(bundle, source, runtime, cell_size, ids, n, progress: ProgressFn | None,
                     cancel: CancelFn | None):
    """A land-cover bundle's per-pixel probabilities, streamed and averaged within each cell."""
    forward, names, _, tile, facts = bundle_classifier(bundle, source, runtime)
    K, W = len(names), source.width
    if cell_size is not None:
        ncols, col_of = -(-W // cell_size), np.arange(W) // cell_size

        def cell_ids(y, h):
            return ((np.arange(y, y + h) // cell_size)[:, None] * ncols + col_of[None, :]).ravel()
    else:
        def cell_ids(y, h):
            return ids[y:y + h].ravel().astype(np.int64)
    sums, counts = np.zeros((n, K)), np.zeros(n, np.int64)

    def on_rows(y, scores, valid):
        c = cell_ids(y, scores.shape[1])
        keep = valid.ravel() if ids is None else valid.ravel() & (c > 0)
        np.add.at(sums, c[keep], scores.reshape(K, -1)[:, keep].T)
        np.add.at(counts, c[keep], 1)

    stream_predictions(source, runtime.model_fn(forward), K, on_rows, tile,
                       tile // 4, progress=progress, cancel=cancel)
    facts["method"] = "mean of the bundle's per-pixel class probabilities within each cell"
    return sums / np.maximum(counts, 1)[:, None], counts, names, facts


def _pooled_cells(bundle, source, runtime, cell_size, ids, n, progress: ProgressFn | None,
                  cancel: CancelFn | None):
    """A cell model (pooled-token head): each cell classified as a whole from windows around it."""
    net = bundle_network(bundle, source, runtime)
    S = min(bundle.meta["tile"], window_size(source, net.cfg.patch_size))
    W, H = source.width, source.height
    if cell_size is not None:
        ncols = -(-W // cell_size)
        cells = []
        for i in range(n):
            r, c = divmod(i, ncols)
            box = (c * cell_size, r * cell_size, min(W, (c + 1) * cell_size), min(H, (r + 1) * cell_size))

            def mask(cx, cy, S, box=box):
                m = np.zeros((S, S), bool)
                m[max(0, box[1] - cy):max(0, box[3] - cy), max(0, box[0] - cx):max(0, box[2] - cx)] = True
                return m
            cells.append((box, mask))
    else:
        boxes, _ = polygon_boxes(ids, n - 1)
        cells = [((0, 0, 1, 1), lambda cx, cy, S: np.zeros((S, S), bool))]  # id 0: no zone
        for i in range(1, n):
            cells.append((tuple(boxes[i]) if boxes[i, 0] < boxes[i, 2] else (0, 0, 1, 1),
                          lambda cx, cy, S, i=i: ids[cy:cy + S, cx:cx + S] == i))
    probs, weights = pooled_cell_probabilities(net, source, SpectralInput.from_source(source), cells, S,
                                               runtime.device, 16, progress, cancel)
    facts = {"model": str(bundle.path), "backbone": bundle.meta.get("backbone"), "head": "pooled",
             "method": f"pooled-token cell model, {S} px windows around each cell"}
    return probs, weights.astype(np.int64), bundle.meta["classes"]["names"], facts
