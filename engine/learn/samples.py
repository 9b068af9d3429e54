"""Training data from polygons: reproject, repair, rasterise onto the raster grid, split by polygon, sample windows.

Labels are rasterised with `gdal.Rasterize` into two grids the size of the raster: the class id (0 = unlabelled)
and the polygon number, so that train and validation can be split by polygon and never share one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..core.errors import EngineError, shorten
from ..core.progress import CancelFn, ProgressFn, check_cancel, no_progress
from ..io.colors import hex_to_rgb, palette
from ..io.tiling import TileGrid
from ..io.vectors import rasterize, read_features

MIN_LABELLED_PIXELS = 10


def class_key(value):
    """What identifies a class value: text without case or surrounding spaces ("Road", "road ", "ROAD" are one)."""
    return value.strip().casefold() if isinstance(value, str) else value


def merge_spellings(values: list) -> tuple[list, list[str]]:
    """Class values that differ only in case or surrounding spaces ("Road", "road ", "ROAD") as one class, named
    by its most frequent spelling; and a note for each merge."""
    groups: dict = {}
    for v in values:
        groups.setdefault(class_key(v), []).append(v)
    canonical, notes = {}, []
    for key, members in groups.items():
        spellings = sorted(set(members), key=lambda m: (-members.count(m), str(m)))
        for m in spellings:
            canonical[m] = spellings[0]
        if len(spellings) > 1:
            notes.append(f"class values {', '.join(repr(m) for m in spellings)} differ only in case or spaces; "
                         f"they are merged into one class {spellings[0]!r}")
    return [canonical[v] for v in values], notes


@dataclass
class ClassScheme:
    """Class names in id order (ids are 1…K; 0 is no data) with one #rrggbb colour each."""

    names: list[str]
    colors: list[str]

    @classmethod
    def from_values(cls, values, colors: dict[str, str] | None = None) -> "ClassScheme":
        names = [str(v) for v in sorted(set(values), key=lambda v: (isinstance(v, str), v))]
        colors = colors or {}
        return cls(names, [colors.get(n) or c for n, c in zip(names, palette(len(names)))])

    @property
    def rgb(self) -> list[tuple[int, int, int]]:
        return [hex_to_rgb(c) for c in self.colors]

    def to_dict(self) -> dict:
        return {"names": self.names, "colors": self.colors}


@dataclass
class LabelSet:
    """Rasterised training labels on the raster grid and the train/validation split by polygon."""

    train: np.ndarray  # [H, W] uint16 class ids, 0 = not used for training
    val: np.ndarray  # [H, W] uint16 class ids, 0 = not used for validation
    scheme: ClassScheme
    notes: list[str] = field(default_factory=list)
    unvalidated: list[str] = field(default_factory=list)
    polygons: dict[str, dict[str, int]] = field(default_factory=dict)  # class → {"train": n, "val": n}
    polygon_ids: np.ndarray | None = None  # [H, W] which training-layer feature (1…n) covers each pixel
    val_polygon_ids: np.ndarray | None = None  # the same for a separate validation layer

    def val_units(self) -> np.ndarray:
        """[H, W] the validation polygon of each validation pixel (0 elsewhere): the sampling units of the
        accuracy's confidence intervals."""
        ids = self.val_polygon_ids if self.val_polygon_ids is not None else self.polygon_ids
        if ids is None:
            return (self.val > 0).astype(np.int64) * (np.arange(self.val.size).reshape(self.val.shape) + 1)
        return np.where(self.val > 0, ids, 0)

    def check_data(self, source, raster_name: str, tile: int = 256) -> None:
        """Refuse a class whose every labelled pixel is no-data in `source` (anything with `width`, `height` and
        `read(x, y, w, h) → (values, valid)`): it would be trained on nothing and never be predicted."""
        labelled = (self.train > 0) | (self.val > 0)
        grid = TileGrid(source.width, source.height, tile)

        def validity(x0: int, y0: int) -> tuple[np.ndarray, np.ndarray]:  # reads only the labels' bounding box
            x, y, w, h = grid.window(x0, y0)
            rows, cols = np.nonzero(labelled[y:y + h, x:x + w])
            r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            valid = np.zeros((h, w), bool)
            valid[r0:r1, c0:c1] = source.read(int(x + c0), int(y + r0), int(c1 - c0), int(r1 - r0))[1]
            return np.zeros((0, h, w), np.float32), valid
        train, val = labelled_pixels(self, grid, validity, 0)
        with_data = set(np.concatenate([train.y, val.y]).tolist())
        counts = sum(np.bincount(part.ravel(), minlength=len(self.scheme.names) + 1) for part in (self.train, self.val))
        empty = [f"{name!r} ({counts[i]} px)" for i, name in enumerate(self.scheme.names, 1)
                 if counts[i] and i not in with_data]
        if empty:
            raise EngineError(f"{raster_name}: every labelled pixel of class {', '.join(empty)} is no-data in the "
                              "raster; draw its polygons where the raster has data, or check the raster's no-data "
                              "value")

    def split_method(self, val_fraction: float, layer: str | None) -> str:
        """How the validation pixels were chosen, in words, for reports."""
        if layer:
            return f"an independent validation layer ({layer}); pixels also used for training are left out"
        if not (self.val > 0).any():
            return "none: no polygons were held out, so the report has no independent accuracy"
        return (f"{round(100 * val_fraction)} % of each class's polygons held out at random (seeded), whole "
                "polygons, so no held-out pixel has a training pixel of its own polygon beside it")

    def summary(self) -> dict:
        return {"classes": self.scheme.names, "train_pixels": _per_class(self.train, self.scheme),
                "val_pixels": _per_class(self.val, self.scheme), "polygons": self.polygons,
                "unvalidated_classes": self.unvalidated, "notes": self.notes}


def _per_class(labels: np.ndarray, scheme: ClassScheme) -> dict[str, int]:
    counts = np.bincount(labels.ravel(), minlength=len(scheme.names) + 1)
    return {n: int(counts[i + 1]) for i, n in enumerate(scheme.names)}


def load_labels(raster_ds, polygons, class_field: str, layer: str | None = None, val_polygons=None,
                val_fraction: float = 0.3, seed: int = 0, colors: dict[str, str] | None = None,
                samples=None) -> LabelSet:
    """Labels from a vector layer (and `samples`, more labelled points or polygons such as `suggest`'s once
    labelled), split by polygon (seeded, stratified by class) or by a separate layer."""
    feats, notes = read_features(polygons, class_field, raster_ds, layer)
    if samples:
        more, more_notes = read_features(samples, class_field, raster_ds, skip_unlabelled=True)
        feats, notes = feats + more, notes + more_notes
    val_feats = []
    if val_polygons:
        val_feats, val_notes = read_features(val_polygons, class_field, raster_ds)
        notes += [f"validation layer: {n}" for n in val_notes]
    merged, merge_notes = merge_spellings([v for v, _ in feats + val_feats])
    notes += merge_notes
    feats = [(v, g) for v, (_, g) in zip(merged[:len(feats)], feats)]
    val_feats = [(v, g) for v, (_, g) in zip(merged[len(feats):], val_feats)]
    scheme = ClassScheme.from_values([v for v, _ in feats + val_feats], colors)
    if len(scheme.names) < 2:
        raise EngineError(f"{shorten(polygons)}: the field {class_field!r} holds a single class ({scheme.names[0]!r}); "
                          "draw polygons for at least two classes")
    cid = {n: i + 1 for i, n in enumerate(scheme.names)}
    ids = [cid[str(v)] for v, _ in feats]
    polygon_no = rasterize(feats, raster_ds, list(range(1, len(feats) + 1)))
    class_of_polygon = np.array([0, *ids], np.uint16)
    labels = class_of_polygon[polygon_no]
    total = int((labels > 0).sum())
    if total < MIN_LABELLED_PIXELS:
        raise EngineError(f"{shorten(polygons)}: only {total} labelled pixel(s) fall on the raster; at least "
                          f"{MIN_LABELLED_PIXELS} are needed. Draw larger polygons or more of them")
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(feats) + 1, bool)
    unvalidated, counts = [], {}
    if val_feats:
        vid = [cid[str(v)] for v, _ in val_feats]
        val_no = rasterize(val_feats, raster_ds, list(range(1, len(val_feats) + 1)))
        val = np.array([0, *vid], np.uint16)[val_no]
        val[labels > 0] = 0  # a pixel used for training never counts as validation
        train = labels
        for name in scheme.names:
            counts[name] = {"train": ids.count(cid[name]), "val": vid.count(cid[name])}
            if counts[name]["val"] == 0:
                unvalidated.append(name)
    else:
        for name in scheme.names:
            members = [i + 1 for i, c in enumerate(ids) if c == cid[name]]
            n_val = 0
            if val_fraction > 0 and len(members) >= 2:  # at least one held out, at least one kept
                n_val = min(max(int(round(len(members) * val_fraction)), 1), len(members) - 1)
            for m in rng.permutation(members)[:n_val]:
                is_val[m] = True
            counts[name] = {"train": len(members) - n_val, "val": n_val}
            if n_val == 0:
                unvalidated.append(name)
        val_pixel = is_val[polygon_no]
        train = np.where(val_pixel, 0, labels).astype(np.uint16)
        val = np.where(val_pixel, labels, 0).astype(np.uint16)
    missing = [n for n in scheme.names if not (train == cid[n]).any()]
    if missing:
        raise EngineError(f"class(es) {', '.join(missing)} have no training pixel on the raster (their polygons are "
                          "too small or outside it); draw larger polygons")
    if unvalidated:
        notes.append(f"class(es) {', '.join(unvalidated)} have a single polygon: they are trained but not validated")
    return LabelSet(train, val, scheme, notes, unvalidated, counts, polygon_no, val_no if val_feats else None)


class WindowSampler:
    """Class-balanced windows: pick a class uniformly, then one of its labelled pixels, and centre a window on it.

    Windows are clipped to lie inside the raster when it is at least one window large.
    """

    def __init__(self, labels: np.ndarray, window: int, seed: int = 0):
        self.window = window
        self.H, self.W = labels.shape
        self.by_class = [np.flatnonzero(labels.ravel() == c) for c in range(1, int(labels.max()) + 1)]
        self.by_class = [ix for ix in self.by_class if len(ix)]
        self.rng = np.random.default_rng(seed)

    def origin(self, flat_index: int) -> tuple[int, int]:
        y, x = divmod(int(flat_index), self.W)
        half = self.window // 2
        x0 = min(max(x - half, 0), max(self.W - self.window, 0))
        y0 = min(max(y - half, 0), max(self.H - self.window, 0))
        return x0, y0

    def sample(self, n: int) -> list[tuple[int, int]]:
        out = []
        for _ in range(n):
            pixels = self.by_class[self.rng.integers(len(self.by_class))]
            out.append(self.origin(pixels[self.rng.integers(len(pixels))]))
        return out


def change_class(scheme: ClassScheme, polygons, class_field: str) -> str:
    """The class of a change model's labels that means "change" (`change`, `changed` or 1)."""
    names = scheme.names
    found = [n for n in names if n.strip().lower() in ("change", "changed", "1")]
    if len(found) != 1 or len(names) != 2:
        raise EngineError(f"{shorten(polygons)}: a change model needs two classes in {class_field!r}, one of them "
                          f"'change' (or 1) and the other no change; found {', '.join(names)}")
    return found[0]


@dataclass
class LabelledPixels:
    """One part's labelled pixels (train or validation) and the tiles (x0, y0) that hold them."""

    x: np.ndarray  # [n, F] features
    y: np.ndarray  # [n] classes 1…K
    units: np.ndarray  # [n] each validation pixel's polygon, the sampling unit of its intervals (0 when training)
    tiles: list[tuple[int, int]]


TileFeatures = Callable[[int, int], tuple[np.ndarray, np.ndarray]]  # (x0, y0) → ([F, h, w], [h, w] valid)


def labelled_pixels(labels: LabelSet, grid: TileGrid, features: TileFeatures, feature_count: int,
                    cancel: CancelFn | None = None, progress: ProgressFn | None = None,
                    ) -> tuple[LabelledPixels, LabelledPixels]:
    """(train, validation) pixels of `labels`, their features computed by `features` tile by tile, only in the
    tiles that hold labels; each pixel once (the last row and column of tiles overlap the ones before)."""
    progress = progress or no_progress
    any_label = (labels.train > 0) | (labels.val > 0)
    tiles = [(x0, y0) for y0 in grid.rows for x0 in grid.columns
             if any_label[y0:y0 + grid.tile, x0:x0 + grid.tile].any()]
    seen = np.zeros(any_label.shape, bool)
    val_units = labels.val_units()
    parts = {name: {"x": [], "y": [], "units": [], "tiles": []} for name in ("train", "val")}
    for i, (x0, y0) in enumerate(tiles):
        x, y, w, h = grid.window(x0, y0)
        fresh = ~seen[y:y + h, x:x + w]
        if (any_label[y:y + h, x:x + w] & fresh).any():
            check_cancel(cancel, "reading the labelled pixels")
            f, valid = features(x0, y0)
            for name, lab in (("train", labels.train), ("val", labels.val)):
                t = lab[y:y + h, x:x + w]
                keep = (t > 0) & valid & fresh
                if keep.any():
                    part = parts[name]
                    part["x"].append(f[:, keep].T)
                    part["y"].append(t[keep].astype(np.int64))
                    part["units"].append(val_units[y:y + h, x:x + w][keep])
                    part["tiles"].append((x0, y0))
            seen[y:y + h, x:x + w] = True
        progress((i + 1) / len(tiles), f"features of labelled pixels: {i + 1}/{len(tiles)} tiles")

    def stacked(part: dict) -> LabelledPixels:
        if not part["x"]:
            return LabelledPixels(np.zeros((0, feature_count), np.float32), np.zeros(0, np.int64),
                                  np.zeros(0, np.int64), [])
        return LabelledPixels(np.concatenate(part["x"]), np.concatenate(part["y"]), np.concatenate(part["units"]),
                              part["tiles"])
    return stacked(parts["train"]), stacked(parts["val"])
