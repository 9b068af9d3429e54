"""Training data from polygons: reproject, repair, rasterise onto the raster grid, split by polygon, sample windows.

Labels are rasterised with `gdal.Rasterize` into two grids the size of the raster: the class id (0 = unlabelled)
and the polygon number, so that train and validation can be split by polygon and never share one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr, osr

from .errors import EngineError

gdal.UseExceptions()
ogr.UseExceptions()
MIN_LABELLED_PIXELS = 10
# A fixed palette of distinguishable colours (Tableau 10, then Paul Tol's muted set).
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#332288", "#88ccee", "#44aa99", "#117733", "#999933", "#ddcc77", "#cc6677", "#882255",
           "#aa4499", "#dddddd"]


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    if len(c) != 6:
        raise EngineError(f"colour {color!r} is not #rrggbb")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


@dataclass
class ClassScheme:
    """Class names in id order (ids are 1…K; 0 is no data) with one #rrggbb colour each."""

    names: list[str]
    colors: list[str]

    @classmethod
    def from_values(cls, values, colors: dict[str, str] | None = None) -> "ClassScheme":
        names = [str(v) for v in sorted(set(values), key=lambda v: (isinstance(v, str), v))]
        colors = colors or {}
        return cls(names, [colors.get(n) or PALETTE[i % len(PALETTE)] for i, n in enumerate(names)])

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

    def summary(self) -> dict:
        return {"classes": self.scheme.names, "train_pixels": _per_class(self.train, self.scheme),
                "val_pixels": _per_class(self.val, self.scheme), "polygons": self.polygons,
                "unvalidated_classes": self.unvalidated, "notes": self.notes}


def _per_class(labels: np.ndarray, scheme: ClassScheme) -> dict[str, int]:
    counts = np.bincount(labels.ravel(), minlength=len(scheme.names) + 1)
    return {n: int(counts[i + 1]) for i, n in enumerate(scheme.names)}


def open_layer(path: str | Path, layer: str | None = None):
    path = str(path)
    if not Path(path).exists():
        raise EngineError(f"vector file {path} does not exist")
    try:
        ds = ogr.Open(path)
    except RuntimeError as e:
        raise EngineError(f"OGR cannot read {path}: {e}") from e
    if ds is None or ds.GetLayerCount() == 0:
        raise EngineError(f"{path} holds no vector layer")
    lyr = ds.GetLayerByName(layer) if layer else ds.GetLayer(0)
    if lyr is None:
        names = [ds.GetLayer(i).GetName() for i in range(ds.GetLayerCount())]
        raise EngineError(f"{path} has no layer {layer!r}; its layers are {', '.join(names)}")
    return ds, lyr


def raster_footprint(raster_ds) -> ogr.Geometry:
    """The raster's outline in its CRS, rotation included."""
    gt = raster_ds.GetGeoTransform()
    W, H = raster_ds.RasterXSize, raster_ds.RasterYSize
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for px, py in [(0, 0), (W, 0), (W, H), (0, H), (0, 0)]:
        ring.AddPoint_2D(gt[0] + px * gt[1] + py * gt[2], gt[3] + px * gt[4] + py * gt[5])
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    return poly


def spatial_ref(wkt_or_srs) -> osr.SpatialReference | None:
    """An SRS in x/y (easting, northing or lon, lat) axis order, or None for no CRS."""
    if not wkt_or_srs:
        return None
    srs = wkt_or_srs if isinstance(wkt_or_srs, osr.SpatialReference) else osr.SpatialReference(wkt=wkt_or_srs)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def read_features(path, class_field: str | None, raster_ds, layer: str | None = None) -> tuple[list, list[str]]:
    """[(class value, geometry in the raster's CRS)] for features over the raster, and notes on what was fixed.

    Without a class field the value is the feature's FID (zones, parcels).
    """
    ds, lyr = open_layer(path, layer)
    defn = lyr.GetLayerDefn()
    fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    if class_field is not None and class_field not in fields:
        raise EngineError(f"{path} has no field {class_field!r}; its fields are: {', '.join(fields) or '(none)'}")
    is_int = class_field is None or \
        defn.GetFieldDefn(fields.index(class_field)).GetType() in (ogr.OFTInteger, ogr.OFTInteger64)
    src_srs, dst_srs = spatial_ref(lyr.GetSpatialRef()), spatial_ref(raster_ds.GetProjection())
    transform = None
    if src_srs is not None and dst_srs is not None and not src_srs.IsSame(dst_srs):
        transform = osr.CoordinateTransformation(src_srs, dst_srs)
    footprint = raster_footprint(raster_ds)
    out, repaired, outside, empty = [], [], [], []
    for feat in lyr:
        fid = feat.GetFID()
        if class_field is None:
            value = fid
        elif not feat.IsFieldSetAndNotNull(class_field):
            raise EngineError(f"{path}: feature {fid} has no value in the class field {class_field!r}; fill it in "
                              "or delete the feature")
        else:
            value = feat.GetFieldAsInteger64(class_field) if is_int else feat.GetFieldAsString(class_field).strip()
        if value == "":
            raise EngineError(f"{path}: feature {fid} has an empty class name in {class_field!r}")
        geom = feat.GetGeometryRef()
        if geom is None or geom.IsEmpty():
            empty.append(fid)
            continue
        geom = geom.Clone()
        if transform is not None:
            geom.Transform(transform)
        if not geom.IsValid():
            fixed = geom.MakeValid()
            if fixed is None or fixed.IsEmpty() or not fixed.IsValid():
                raise EngineError(f"{path}: feature {fid} has an invalid geometry that cannot be repaired; "
                                  "redraw it")
            geom = fixed
            repaired.append(fid)
        if not geom.Intersects(footprint):
            outside.append(fid)
            continue
        out.append((value, geom))
    notes = []
    if repaired:
        notes.append(f"repaired {len(repaired)} invalid geometr{'y' if len(repaired) == 1 else 'ies'} "
                     f"(self-intersections) with MakeValid: features {repaired[:10]}")
    if outside:
        notes.append(f"skipped {len(outside)} feature(s) outside the raster: {outside[:10]}")
    if empty:
        notes.append(f"skipped {len(empty)} feature(s) without geometry: {empty[:10]}")
    if not out:
        raise EngineError(f"none of the {len(outside) + len(empty)} features of {path} lies over the raster "
                          f"{raster_ds.GetDescription()}; check that both cover the same area (CRS of the raster: "
                          f"{dst_srs.GetName() if dst_srs else 'none'})")
    return out, notes


def rasterize(features: list, raster_ds, burn: list[int], dtype=gdal.GDT_UInt32) -> np.ndarray:
    """Burn one value per geometry onto the raster's grid (rotation included); later features win."""
    W, H = raster_ds.RasterXSize, raster_ds.RasterYSize
    mem = gdal.GetDriverByName("MEM").Create("", W, H, 1, dtype)
    mem.SetGeoTransform(raster_ds.GetGeoTransform())
    mem.SetProjection(raster_ds.GetProjection())
    vds = gdal.GetDriverByName("Memory").Create("", 0, 0, 0, gdal.GDT_Unknown)
    lyr = vds.CreateLayer("labels", spatial_ref(raster_ds.GetProjection()))
    lyr.CreateField(ogr.FieldDefn("burn", ogr.OFTInteger64))
    for (_, geom), value in zip(features, burn):
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetGeometry(geom)
        f.SetField("burn", int(value))
        lyr.CreateFeature(f)
    gdal.Rasterize(mem, vds, layers=["labels"], attribute="burn")
    return mem.ReadAsArray()


def load_labels(raster_ds, polygons, class_field: str, layer: str | None = None, val_polygons=None,
                val_fraction: float = 0.3, seed: int = 0, colors: dict[str, str] | None = None) -> LabelSet:
    """Labels from a vector layer, split by polygon (seeded, stratified by class) or by a separate layer."""
    feats, notes = read_features(polygons, class_field, raster_ds, layer)
    val_feats = []
    if val_polygons:
        val_feats, val_notes = read_features(val_polygons, class_field, raster_ds)
        notes += [f"validation layer: {n}" for n in val_notes]
    scheme = ClassScheme.from_values([v for v, _ in feats + val_feats], colors)
    if len(scheme.names) < 2:
        raise EngineError(f"{polygons}: the field {class_field!r} holds a single class ({scheme.names[0]!r}); "
                          "draw polygons for at least two classes")
    cid = {n: i + 1 for i, n in enumerate(scheme.names)}
    ids = [cid[str(v)] for v, _ in feats]
    polygon_no = rasterize(feats, raster_ds, list(range(1, len(feats) + 1)))
    class_of_polygon = np.array([0, *ids], np.uint16)
    labels = class_of_polygon[polygon_no]
    total = int((labels > 0).sum())
    if total < MIN_LABELLED_PIXELS:
        raise EngineError(f"{polygons}: only {total} labelled pixel(s) fall on the raster; at least "
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
