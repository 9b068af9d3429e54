"""Grid-cell and parcel classification: a classification bundle's per-pixel class probabilities, streamed over
the raster and averaged within each cell of a regular grid or each user polygon, written as a GeoPackage with
the class, its confidence and every class probability."""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr

from .classify import bundle_classifier
from .errors import EngineError
from .infer import stream_predictions, torch_model_fn
from .raster import RasterSource, check_writable
from .runtime import Runtime
from .samples import rasterize, read_features, spatial_ref


def _field_name(name: str) -> str:
    return "p_" + re.sub(r"[^0-9A-Za-z_]", "_", name)[:50]


def classify_cells(raster: str, model: str, out: str, cell_size: int | None = None, zones: str | None = None,
                   profile=None, sensor=None, level=None, runtime: Runtime | None = None, progress=None,
                   cancel=None) -> dict:
    """Write `out` (.gpkg): one feature per grid cell or zone with class, confidence and p_<class> fields."""
    if (cell_size is None) == (zones is None):
        raise EngineError("give either --cell-size PX or --zones VECTOR")
    if cell_size is not None and cell_size < 1:
        raise EngineError(f"--cell-size {cell_size}: give a cell size of at least 1 px")
    out_path = Path(out)
    if out_path.suffix.lower() != ".gpkg":
        raise EngineError(f"--out {out}: the cells are written as a GeoPackage; give a path ending in .gpkg")
    check_writable(out_path.parent)
    t0 = time.perf_counter()
    runtime = runtime or Runtime("cpu")
    source = RasterSource.open(raster, profile, sensor, level)
    ds = source.ds
    forward, names, _, tile, facts = bundle_classifier(model, source, raster, runtime)
    K, W, H = len(names), source.width, source.height

    if cell_size is not None:
        ncols, nrows = -(-W // cell_size), -(-H // cell_size)
        n = ncols * nrows
        col_of = np.arange(W) // cell_size

        def cell_ids(y, h):
            return ((np.arange(y, y + h) // cell_size)[:, None] * ncols + col_of[None, :]).ravel()
        zone_feats, notes = None, []
    else:
        zone_feats, notes = read_features(zones, None, ds)  # reprojected, repaired, those off the raster skipped
        ids = rasterize(zone_feats, ds, list(range(1, len(zone_feats) + 1)))
        n = len(zone_feats) + 1

        def cell_ids(y, h):
            return ids[y:y + h].ravel().astype(np.int64)

    sums = np.zeros((n, K))
    counts = np.zeros(n, np.int64)

    def on_rows(y, scores, valid):
        c = cell_ids(y, scores.shape[1])
        keep = valid.ravel() if zone_feats is None else valid.ravel() & (c > 0)
        np.add.at(sums, c[keep], scores.reshape(K, -1)[:, keep].T)
        np.add.at(counts, c[keep], 1)

    stream_predictions(source, torch_model_fn(forward, runtime.device), K, on_rows, tile,
                       tile // 4, progress=progress, cancel=cancel)
    probs = sums / np.maximum(counts, 1)[:, None]
    gt = ds.GetGeoTransform()
    tmp = out_path.with_name(f".{out_path.name}.tmp.gpkg")
    if tmp.exists():
        tmp.unlink()
    ods = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp))
    olyr = ods.CreateLayer("cells", spatial_ref(ds.GetProjection()), ogr.wkbPolygon if zone_feats is None else
                           ogr.wkbUnknown)
    fields = [("cell", ogr.OFTInteger64), ("class", ogr.OFTString), ("confidence", ogr.OFTReal),
              ("valid_pixels", ogr.OFTInteger64)] + [(_field_name(nm), ogr.OFTReal) for nm in names]
    for name, kind in fields:
        olyr.CreateField(ogr.FieldDefn(name, kind))
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
    ods = None
    tmp.replace(out_path)
    cells = slice(1, None) if zone_feats is not None else slice(None)  # id 0 of the zone raster is "no zone"
    top, empty = probs[cells].argmax(1), counts[cells] == 0
    warnings_out = list(notes)
    if empty.any():
        warnings_out.append(f"{int(empty.sum())} cell(s) hold no valid pixel; their class is empty")
    return {"out": str(out_path), "cells": written, "cells_without_valid_pixels": int(empty.sum()),
            "cells_per_class": {name: int(((top == k) & ~empty).sum()) for k, name in enumerate(names)},
            "model": facts["model"], "device": runtime.device_name,
            "method": "mean of the bundle's per-pixel class probabilities within each cell",
            "seconds": round(time.perf_counter() - t0, 2), "warnings": warnings_out}
