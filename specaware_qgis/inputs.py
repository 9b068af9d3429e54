"""QGIS layers as engine inputs: file paths, never pixels. A layer that is not file-backed is written to a
temporary file first."""
from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

from qgis.core import (QgsProject, QgsRasterFileWriter, QgsRasterLayer, QgsRasterPipe, QgsVectorFileWriter,
                       QgsVectorLayer)

VECTOR_SUFFIXES = {".gpkg", ".shp", ".geojson", ".json", ".sqlite", ".kml", ".gml", ".fgb"}


class InputError(ValueError):
    """A choice in the dock or an algorithm that the engine cannot use; the message says what to change."""


def _scratch(suffix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix="specaware-input-")) / f"layer{suffix}"


def raster_file(layer: QgsRasterLayer) -> str | None:
    """The GDAL file behind a raster layer; None when it is not a plain file."""
    path = layer.source().split("|")[0]
    return path if layer.providerType() == "gdal" and Path(path).is_file() else None


def vector_file(layer: QgsVectorLayer) -> tuple[str, str | None] | None:
    """(file, layer name inside it) behind a vector layer; None when it is not a plain file read whole (memory,
    database, a subset)."""
    parts = layer.source().split("|")
    path = Path(parts[0])
    name = next((p.split("=", 1)[1] for p in parts[1:] if p.startswith("layername=")), None)
    if layer.providerType() == "ogr" and path.is_file() and path.suffix.lower() in VECTOR_SUFFIXES and \
            not layer.subsetString():
        return str(path), name
    return None


def raster_path(layer: QgsRasterLayer | None, what: str = "raster") -> str:
    """The GDAL file behind a raster layer, or a temporary GeoTIFF copy of it."""
    if layer is None:
        raise InputError(f"no {what} chosen: pick a raster layer")
    if (path := raster_file(layer)) is not None:
        return path
    out = _scratch(".tif")
    pipe = QgsRasterPipe()
    pipe.set(layer.dataProvider().clone())
    writer = QgsRasterFileWriter(str(out))
    err = writer.writeRaster(pipe, layer.width(), layer.height(), layer.extent(), layer.crs(),
                             QgsProject.instance().transformContext())
    if err != QgsRasterFileWriter.NoError:
        raise InputError(f"layer {layer.name()!r} is not a file and could not be saved as GeoTIFF (error {err}); "
                         "export it to a file first")
    return str(out)


def vector_source(layer: QgsVectorLayer | None, what: str = "polygon layer") -> tuple[str, str | None]:
    """(file, layer name inside it) for a vector layer; memory and database layers are saved to a GeoPackage.
    Edits not yet saved (features just drawn) are saved first, so the engine reads what the map shows."""
    if layer is None:
        raise InputError(f"no {what} chosen: pick a vector layer")
    if layer.isEditable() and layer.isModified() and not layer.commitChanges(False):
        raise InputError(f"the edits of layer {layer.name()!r} could not be saved ({'; '.join(layer.commitErrors())})"
                         "; save or discard them with Layer › Toggle Editing")
    if (found := vector_file(layer)) is not None:
        return found
    out = _scratch(".gpkg")
    opts = QgsVectorFileWriter.SaveVectorOptions()
    opts.driverName = "GPKG"
    opts.layerName = "layer"
    err = QgsVectorFileWriter.writeAsVectorFormatV3(layer, str(out), QgsProject.instance().transformContext(),
                                                    opts)
    if err[0] != QgsVectorFileWriter.NoError:
        raise InputError(f"layer {layer.name()!r} could not be saved for the engine ({err[1]}); save it to a "
                         "GeoPackage first")
    return str(out), "layer"


def class_values(layer: QgsVectorLayer, field: str) -> list[str]:
    """The non-empty class values of `field`; an error that names the layer and field when there are none."""
    if not field:
        raise InputError(f"no class field chosen for layer {layer.name()!r}: pick the field that holds the class")
    idx = layer.fields().indexOf(field)
    if idx < 0:
        raise InputError(f"layer {layer.name()!r} has no field {field!r}")
    values = sorted({str(v) for v in layer.uniqueValues(idx) if v is not None and str(v).strip() not in ("", "NULL")})
    if not values:
        raise InputError(f"the class field {field!r} of layer {layer.name()!r} is empty: give every training "
                         "polygon a class")
    return values


def run_folder(root: Path, kind: str, name: str) -> Path:
    """A new, writable output folder for one run: ROOT/kind-name-YYYYmmdd-HHMMSS (-2, -3… for runs started in the
    same second, so no run writes into another's folder)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:40] or "layer"
    stem = Path(root) / f"{kind}-{safe}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            folder = stem if n == 1 else stem.with_name(f"{stem.name}-{n}")
            try:
                folder.mkdir()
                break
            except FileExistsError:
                continue
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise InputError(f"cannot write to the output folder {root} ({e.strerror}); choose another folder") from e
    return folder


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write through a temp file in the same folder and rename, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
