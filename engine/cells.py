"""Grid-cell and parcel classification, written as a GeoPackage with the class, its confidence and every class
probability per cell. With a cell model (`finetune --task cells`, the pooled-token head) each cell is read in a
window around it and classified as a whole; with a land-cover bundle the per-pixel probabilities are averaged
over each cell. This module also trains the cell model."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from osgeo import gdal, ogr

from .bundles import load_bundle
from .classify import bundle_classifier
from .errors import EngineError
from .infer import stream_predictions, torch_model_fn
from .raster import RasterSource, check_writable
from .runtime import Runtime
from .samples import LabelSet, rasterize, read_features, spatial_ref

CELL_WINDOW = 32  # px read around each cell; a larger cell is covered by several windows


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
    W, H = source.width, source.height
    if cell_size is not None:
        ncols, nrows = -(-W // cell_size), -(-H // cell_size)
        n, zone_feats, notes, ids = ncols * nrows, None, [], None
    else:
        zone_feats, notes = read_features(zones, None, ds)  # reprojected, repaired, those off the raster skipped
        ids = rasterize(zone_feats, ds, list(range(1, len(zone_feats) + 1)))
        n = len(zone_feats) + 1  # id 0 of the zone raster is "no zone"
    bundle = load_bundle(model)
    if bundle.meta.get("task") == "cells":
        probs, counts, names, facts = _pooled_cells(bundle, source, raster, runtime, cell_size, ids, n,
                                                    progress, cancel)
    else:
        probs, counts, names, facts = _averaged_pixels(model, source, raster, runtime, cell_size, ids, n,
                                                       progress, cancel)
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
            "model": facts["model"], "device": runtime.device_name, "method": facts["method"],
            "seconds": round(time.perf_counter() - t0, 2), "warnings": warnings_out}


def _averaged_pixels(model, source, raster, runtime, cell_size, ids, n, progress, cancel):
    """A land-cover bundle's per-pixel probabilities, streamed and averaged within each cell."""
    forward, names, _, tile, facts = bundle_classifier(model, source, raster, runtime)
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

    stream_predictions(source, torch_model_fn(forward, runtime.device), K, on_rows, tile,
                       tile // 4, progress=progress, cancel=cancel)
    facts["method"] = "mean of the bundle's per-pixel class probabilities within each cell"
    return sums / np.maximum(counts, 1)[:, None], counts, names, facts


def _pooled_cells(bundle, source, raster, runtime, cell_size, ids, n, progress, cancel):
    """A cell model (pooled-token head): each cell classified as a whole from windows around it."""
    from .classify import bundle_network
    from .model.segmenter import SpectralInput
    net = bundle_network(bundle, source, raster, runtime)
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


# --- the cell model: samples, training, inference ---------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One labelled polygon as a training sample: its window, which id raster marks it, its class, its split."""

    x0: int
    y0: int
    polygon: int
    validation_layer: bool
    label: int  # 1…K
    val: bool


def window_size(source: RasterSource, k: int, size: int = CELL_WINDOW) -> int:
    """The cell window: `size` px, smaller on a small raster, a multiple of the patch size."""
    return max(k, min(size, source.width // k * k, source.height // k * k))


def polygon_boxes(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel bounding boxes [n+1, 4] (x0, y0, x1, y1; empty ids have x0 ≥ x1) and one pixel [n+1, 2] of ids 1…n."""
    H, W = ids.shape
    box = np.array([[W, H, 0, 0]] * (n + 1), np.int64)
    ys, xs = np.nonzero(ids)
    v = ids[ys, xs].astype(np.int64)
    np.minimum.at(box[:, 0], v, xs)
    np.minimum.at(box[:, 1], v, ys)
    np.maximum.at(box[:, 2], v, xs + 1)
    np.maximum.at(box[:, 3], v, ys + 1)
    pixel = np.zeros((n + 1, 2), np.int64)
    first = np.unique(v, return_index=True)
    pixel[first[0]] = np.stack([ys[first[1]], xs[first[1]]], axis=1)
    return box, pixel


def centred(box, S: int, W: int, H: int) -> tuple[int, int]:
    cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
    return int(np.clip(cx - S // 2, 0, W - S)), int(np.clip(cy - S // 2, 0, H - S))


def labelled_cells(labels: LabelSet, S: int) -> list[Cell]:
    """Every labelled polygon of the training (and validation) layer, in a window centred on it."""
    cells = []
    for ids, val_layer in ((labels.polygon_ids, False), (labels.val_polygon_ids, True)):
        if ids is None:
            continue
        H, W = ids.shape
        n = int(ids.max())
        boxes, pixels = polygon_boxes(ids, n)
        for p in range(1, n + 1):
            if boxes[p, 0] >= boxes[p, 2]:
                continue
            y, x = pixels[p]
            train_id, val_id = int(labels.train[y, x]), int(labels.val[y, x])
            label, val = (val_id, True) if val_layer or not train_id else (train_id, False)
            if label:
                cells.append(Cell(*centred(boxes[p], S, W, H), p, val_layer, label, val))
    return cells


def read_cells(source: RasterSource, labels: LabelSet, cells: list[Cell], S: int, flip: int = 0):
    """Model input [B, C, S, S] and cell masks [B, S, S] for a batch of cells (one dihedral transform)."""
    from .train import dihedral
    xs, ms = [], []
    for c in cells:
        values, valid = source.read(c.x0, c.y0, S, S)
        ids = labels.val_polygon_ids if c.validation_layer else labels.polygon_ids
        mask = (ids[c.y0:c.y0 + S, c.x0:c.x0 + S] == c.polygon) & valid
        xs.append(dihedral(values, flip))
        ms.append(dihedral(mask.astype(np.float32), flip))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ms))


def train_cells(model, source: RasterSource, labels: LabelSet, train, device, progress=None, cancel=None):
    """Fit the pooled-token head (and, unless frozen, the encoder) on labelled cells; best epoch by validation
    accuracy. A frozen encoder's pooled features are computed once, so training is quick on a CPU."""
    from .errors import Cancelled
    from .metrics import score
    from .model.segmenter import SpectralInput
    from .train import TrainResult
    t0 = time.perf_counter()
    progress = progress or (lambda f, m: None)
    names = labels.scheme.names
    S = window_size(source, model.cfg.patch_size, train.window if train.window != 64 else CELL_WINDOW)
    cells = labelled_cells(labels, S)
    fit, held = [c for c in cells if not c.val], [c for c in cells if c.val]
    if len({c.label for c in fit}) < 2:
        raise EngineError("cell training needs labelled cells of at least two classes on the raster")
    spec = SpectralInput.from_source(source)
    model.set_trainable(train.backbone_mode)
    model.to(device)
    frozen = train.backbone_mode == "frozen"
    rng = np.random.default_rng(train.seed)
    torch.manual_seed(train.seed)

    def pooled(batch, flip=0, grad=False):
        x, m = read_cells(source, labels, batch, S, flip)
        with torch.set_grad_enabled(grad):
            return model.pool(model.encode(x.to(device), spec), m.to(device))

    cache = {}
    if frozen:
        model.eval()
        for i in range(0, len(cells), train.batch_size):
            if cancel and cancel():
                raise Cancelled("cancelled by the user")
            batch = cells[i:i + train.batch_size]
            for c, v in zip(batch, pooled(batch)):
                cache[c] = v.detach()
            progress(0.3 * (i + len(batch)) / len(cells), f"features of {i + len(batch)} of {len(cells)} cells")
    counts = np.bincount([c.label for c in fit], minlength=len(names) + 1)[1:].astype(float)
    weight = torch.tensor(np.where(counts > 0, 1 / np.sqrt(np.maximum(counts, 1)), 0.0), dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=(weight / weight[weight > 0].mean()).to(device))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)

    def predict(batch_cells):
        model.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(batch_cells), train.batch_size):
                b = batch_cells[i:i + train.batch_size]
                feats = torch.stack([cache[c] for c in b]) if frozen else pooled(b)
                out.append(model.classify(feats).argmax(1).cpu() + 1)
        return torch.cat(out).numpy() if out else np.zeros(0, int)

    history, best, best_state, stale = [], (-1.0, 0), None, 0
    for epoch in range(train.epochs):
        model.train()
        order = rng.permutation(len(fit))
        losses = []
        for i in range(0, len(order), train.batch_size):
            if cancel and cancel():
                raise Cancelled("cancelled by the user")
            batch = [fit[j] for j in order[i:i + train.batch_size]]
            feats = torch.stack([cache[c] for c in batch]) if frozen else pooled(batch, int(rng.integers(8)), True)
            target = torch.tensor([c.label - 1 for c in batch], device=device)
            loss = loss_fn(model.classify(feats), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        row = {"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 5)}
        if held:
            row["val_oa"] = round(float((predict(held) == np.array([c.label for c in held])).mean()), 4)
        history.append(row)
        key = (row.get("val_oa", 0.0), -row["loss"])
        if key > best:
            best, best_state, stale = key, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, 0
        else:
            stale += 1
        progress(0.3 + 0.7 * (epoch + 1) / train.epochs if frozen else (epoch + 1) / train.epochs,
                 f"epoch {epoch + 1}/{train.epochs} · loss {row['loss']:.4f}"
                 + (f" · val OA {row['val_oa']:.3f}" if held else ""))
        if stale >= train.patience:
            break
    model.load_state_dict(best_state)
    validation = None
    if held:
        validation = score(np.array([c.label for c in held]), predict(held), names)
        validation["cells"] = len(held)
    best_epoch = max(range(len(history)), key=lambda i: (history[i].get("val_oa", 0.0), -history[i]["loss"])) + 1
    return TrainResult(best_state, history, best_epoch, validation, stale >= train.patience,
                       time.perf_counter() - t0, train.batch_size), S


def pooled_cell_probabilities(net, source: RasterSource, spec, boxes_and_masks, S: int, device, batch: int,
                              progress=None, cancel=None):
    """Class probabilities per cell: each cell is covered by S×S windows; their pooled features are combined
    with the number of cell pixels each window holds as weights."""
    from .errors import Cancelled
    jobs = []  # (cell index, x0, y0) for every window over every cell
    for i, (box, _) in enumerate(boxes_and_masks):
        x0, y0, x1, y1 = box
        for wy in range(y0, max(y0 + 1, y1 - S // 2), S):
            for wx in range(x0, max(x0 + 1, x1 - S // 2), S):
                cx, cy = centred((wx, wy, min(wx + S, x1), min(wy + S, y1)), S, source.width, source.height)
                jobs.append((i, cx, cy))
    n = len(boxes_and_masks)
    sums = None
    weights = np.zeros(n)
    for j in range(0, len(jobs), batch):
        if cancel and cancel():
            raise Cancelled("cancelled by the user")
        part = jobs[j:j + batch]
        xs, ms = [], []
        for i, cx, cy in part:
            values, valid = source.read(cx, cy, S, S)
            xs.append(values)
            ms.append(boxes_and_masks[i][1](cx, cy, S) & valid)
        m = torch.from_numpy(np.stack(ms).astype(np.float32))
        with torch.inference_mode():
            feats = net.pool(net.encode(torch.from_numpy(np.stack(xs)).to(device), spec), m.to(device)).cpu()
        w = m.sum((1, 2)).numpy()
        if sums is None:
            sums = np.zeros((n, feats.shape[1]))
        for (i, _, _), f, wk in zip(part, feats.numpy(), w):
            sums[i] += f * wk
            weights[i] += wk
        if progress:
            progress(min(1.0, (j + len(part)) / len(jobs)), f"{j + len(part)} of {len(jobs)} cell windows")
    pooled = torch.from_numpy(sums / np.maximum(weights, 1)[:, None]).float()
    with torch.inference_mode():
        probs = net.classify(pooled.to(device)).softmax(1).cpu().numpy()
    return probs, weights
