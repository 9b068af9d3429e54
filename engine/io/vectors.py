"""Vectors in and out through OGR: a layer's features reprojected onto a raster (repaired, off-raster ones
skipped), burnt onto its grid with `gdal.Rasterize`, and GeoPackage layers written for results."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from osgeo import gdal, ogr, osr

from ..core.errors import EngineError, shorten
from ..core.request import exists

gdal.UseExceptions()
ogr.UseExceptions()


def open_layer(path: str | Path, layer: str | None = None):
    path = str(path)
    if not exists(Path(path), "vector file"):
        raise EngineError(f"vector file {shorten(path)} does not exist; check the path")
    try:
        ds = ogr.Open(path)
    except RuntimeError as e:
        raise EngineError(f"OGR cannot read {shorten(path)}: {e}") from e
    if ds is None or ds.GetLayerCount() == 0:
        raise EngineError(f"{shorten(path)} holds no vector layer")
    lyr = ds.GetLayerByName(layer) if layer else ds.GetLayer(0)
    if lyr is None:
        names = [ds.GetLayer(i).GetName() for i in range(ds.GetLayerCount())]
        raise EngineError(f"{shorten(path)} has no layer {layer!r}; its layers are {', '.join(names)}")
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


def _reproject(geom: ogr.Geometry, transform, path, fid: int, src_srs: osr.SpatialReference) -> None:
    """Transform in place; coordinates that are not valid in the layer's CRS (UTM metres in a layer said to be in
    degrees, say) are an error that names the feature and the CRS."""
    centre = geom.Centroid()
    try:
        failed = geom.Transform(transform) != 0
    except RuntimeError:
        failed = True
    if failed:
        x, y = centre.GetX(), centre.GetY()
        crs = src_srs.GetName() or "undefined"
        raise EngineError(f"{shorten(path)}: feature {fid} has coordinates ({x:.6g}, {y:.6g}) that are not valid in "
                          f"the layer's CRS ({crs}); the layer's CRS is probably wrong or missing: set it (in QGIS: "
                          "Layer Properties › Source › Assigned Coordinate Reference System) and save the layer")


def read_features(path, class_field: str | None, raster_ds, layer: str | None = None,
                  skip_unlabelled: bool = False) -> tuple[list, list[str]]:
    """[(class value, geometry in the raster's CRS)] for features over the raster, and notes on what was fixed.

    Without a class field the value is the feature's FID (zones, parcels). With `skip_unlabelled`, features with
    no class yet (suggested points the analyst has not labelled) are skipped instead of refused.
    """
    ds, lyr = open_layer(path, layer)
    if lyr.GetFeatureCount() == 0:
        raise EngineError(f"{shorten(path)} (layer {lyr.GetName()!r}) has no features; draw polygons or points "
                          "first")
    defn = lyr.GetLayerDefn()
    fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    if class_field is not None and class_field not in fields:
        raise EngineError(f"{shorten(path)} has no field {class_field!r}; its fields are: "
                          f"{', '.join(fields) or '(none)'}")
    is_int = class_field is None or \
        defn.GetFieldDefn(fields.index(class_field)).GetType() in (ogr.OFTInteger, ogr.OFTInteger64)
    src_srs, dst_srs = spatial_ref(lyr.GetSpatialRef()), spatial_ref(raster_ds.GetProjection())
    transform = None
    if src_srs is not None and dst_srs is not None and not src_srs.IsSame(dst_srs):
        transform = osr.CoordinateTransformation(src_srs, dst_srs)
    footprint = raster_footprint(raster_ds)
    out, repaired, outside, empty, unlabelled = [], [], [], [], []
    for feat in lyr:
        fid = feat.GetFID()
        if class_field is None:
            value = fid
        elif skip_unlabelled and (not feat.IsFieldSetAndNotNull(class_field) or
                                  not feat.GetFieldAsString(class_field).strip()):
            unlabelled.append(fid)
            continue
        elif not feat.IsFieldSetAndNotNull(class_field):
            raise EngineError(f"{shorten(path)}: feature {fid} has no value in the class field {class_field!r}; "
                              "fill it in "
                              "or delete the feature")
        else:
            value = feat.GetFieldAsInteger64(class_field) if is_int else feat.GetFieldAsString(class_field).strip()
        if value == "":
            raise EngineError(f"{shorten(path)}: feature {fid} has an empty class name in {class_field!r}")
        geom = feat.GetGeometryRef()
        if geom is None or geom.IsEmpty():
            empty.append(fid)
            continue
        geom = geom.Clone()
        if transform is not None:
            _reproject(geom, transform, path, fid, src_srs)
        if not geom.IsValid():
            fixed = geom.MakeValid()
            if fixed is None or fixed.IsEmpty() or not fixed.IsValid():
                raise EngineError(f"{shorten(path)}: feature {fid} has an invalid geometry that cannot be repaired; "
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
    if unlabelled:
        notes.append(f"skipped {len(unlabelled)} feature(s) of {shorten(path)} not labelled yet (no value in "
                     f"{class_field!r})")
    if not out and skip_unlabelled and unlabelled and not (outside or empty):
        return out, notes
    if not out:
        raise EngineError(f"none of the {len(outside) + len(empty)} features of {shorten(path)} lies over the raster "
                          f"{shorten(raster_ds.GetDescription())}; check that both cover the same area (CRS of the "
                          "raster: "
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


def create_gpkg_layer(path: Path, name: str, srs, geometry_type, fields: list[tuple[str, int]]):
    """(data source, layer) of a new GeoPackage at `path` (inside an OutputSet's scratch folder)."""
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    lyr = ds.CreateLayer(name, srs, geometry_type)
    for field_name, kind in fields:
        lyr.CreateField(ogr.FieldDefn(field_name, kind))
    return ds, lyr
