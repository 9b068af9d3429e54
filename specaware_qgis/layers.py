"""Adding and styling the engine's results as QGIS layers; each styled layer also gets a `.qml` beside its file.

Uses qgis.core only, so the same code styles layers in the plugin, in Processing and in the headless demo.
"""
from __future__ import annotations

import os
from pathlib import Path

from qgis.core import (QgsCategorizedSymbolRenderer, QgsColorBrewerColorRamp, QgsColorRampShader,
                       QgsContrastEnhancement, QgsEditFormConfig, QgsField, QgsFields, QgsFillSymbol,
                       QgsMarkerSymbol, QgsMultiBandColorRenderer, QgsPalettedRasterRenderer, QgsProject,
                       QgsRasterBandStats, QgsRasterLayer, QgsRasterShader, QgsReferencedRectangle,
                       QgsRendererCategory, QgsSingleBandPseudoColorRenderer, QgsSingleSymbolRenderer,
                       QgsVectorFileWriter, QgsVectorLayer, QgsWkbTypes)
from qgis.PyQt.QtCore import QVariant
from qgis.PyQt.QtGui import QColor

# Viridis at five stops: perceptually uniform and readable by colour-blind users.
CONFIDENCE_RAMP = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"]
# Magma for change magnitude: dark for none, bright for strong change.
MAGNITUDE_RAMP = ["#000004", "#51127c", "#b73779", "#fc8961", "#fcfdbf"]
CHANGE_RED = "#e31a1c"


def _checked(layer, path):
    if not layer.isValid():
        raise RuntimeError(f"QGIS cannot open {path} as a layer")
    return layer


def _save_qml(layer) -> None:
    """The style as the file's default: a `.qml` beside a GeoTIFF, the `layer_styles` table inside a GeoPackage
    (`change.tif` and `change.gpkg` would otherwise share `change.qml`)."""
    source = Path(layer.source().split("|")[0])
    if not source.exists():
        return
    if isinstance(layer, QgsVectorLayer):
        layer.saveStyleToDatabase(layer.name(), "SpecAware style", True, "")
    else:
        layer.saveNamedStyle(str(source.with_suffix(".qml")))


def class_layer(path, names: list[str], colors: list[str], name: str = "classes") -> QgsRasterLayer:
    """classes.tif (ids 1…K, 0 = no data) with one paletted entry per class, labelled with its name."""
    layer = _checked(QgsRasterLayer(str(path), name), path)
    classes = [QgsPalettedRasterRenderer.Class(i + 1, QColor(c), n) for i, (n, c) in enumerate(zip(names, colors))]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    _save_qml(layer)
    return layer


def _ramp_layer(path, name: str, colors: list[str], lo: float, hi: float) -> QgsRasterLayer:
    layer = _checked(QgsRasterLayer(str(path), name), path)
    ramp = QgsColorRampShader(lo, hi)
    ramp.setColorRampType(QgsColorRampShader.Interpolated)
    n = len(colors) - 1
    ramp.setColorRampItemList([QgsColorRampShader.ColorRampItem(lo + (hi - lo) * i / n, QColor(c),
                                                                f"{lo + (hi - lo) * i / n:.3g}")
                               for i, c in enumerate(colors)])
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(lo)
    renderer.setClassificationMax(hi)
    layer.setRenderer(renderer)
    _save_qml(layer)
    return layer


def confidence_layer(path, name: str = "confidence") -> QgsRasterLayer:
    """confidence.tif (0–1) on a viridis ramp."""
    return _ramp_layer(path, name, CONFIDENCE_RAMP, 0.0, 1.0)


def magnitude_layer(path, name: str = "change magnitude") -> QgsRasterLayer:
    """magnitude.tif on a magma ramp over its own min–max."""
    probe = QgsRasterLayer(str(path), name)
    stats = _checked(probe, path).dataProvider().bandStatistics(1, QgsRasterBandStats.Min | QgsRasterBandStats.Max)
    hi = stats.maximumValue if stats.maximumValue > stats.minimumValue else stats.minimumValue + 1.0
    return _ramp_layer(path, name, MAGNITUDE_RAMP, stats.minimumValue, hi)


def change_layer(path, name: str = "change") -> QgsRasterLayer:
    """change.tif (0 no change, 1 change, 255 no data): changed areas red, the rest transparent."""
    layer = _checked(QgsRasterLayer(str(path), name), path)
    unchanged = QColor("#bdbdbd")
    unchanged.setAlpha(0)
    classes = [QgsPalettedRasterRenderer.Class(0, unchanged, "no change"),
               QgsPalettedRasterRenderer.Class(1, QColor(CHANGE_RED), "change")]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    _save_qml(layer)
    return layer


def change_polygons_layer(path, name: str = "change polygons") -> QgsVectorLayer:
    """Change polygons outlined in red with no fill, so the imagery stays visible under them."""
    layer = _checked(QgsVectorLayer(str(path), name, "ogr"), path)
    symbol = QgsFillSymbol.createSimple({"style": "no", "outline_color": CHANGE_RED, "outline_width": "0.6"})
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    _save_qml(layer)
    return layer


def add_group(name: str, layers: list, project: QgsProject | None = None):
    """Add the layers to the project inside a new group at the top of the layer tree (first layer on top)."""
    project = project or QgsProject.instance()
    group = project.layerTreeRoot().insertGroup(0, name)
    for layer in layers:
        project.addMapLayer(layer, False)
        group.addLayer(layer)
    return group


def open_on(project: QgsProject, layer) -> None:
    """The project opens on `layer`: its CRS, and its extent as the default view (a project written without a map
    canvas would otherwise open on an empty canvas at 1:1)."""
    project.setCrs(layer.crs())
    extent = layer.extent()
    project.viewSettings().setDefaultViewExtent(
        QgsReferencedRectangle(extent.buffered(0.03 * max(extent.width(), extent.height())), layer.crs()))


def category_colors(layer, field: str) -> dict[str, str]:
    """Class value → colour from a vector layer's categorized renderer on `field` (empty when it has none)."""
    renderer = layer.renderer() if layer is not None else None
    if not isinstance(renderer, QgsCategorizedSymbolRenderer) or renderer.classAttribute() != field:
        return {}
    return {str(c.value()): c.symbol().color().name() for c in renderer.categories()
            if c.symbol() is not None and str(c.value()) != ""}


def rgb_layer(path, bands: tuple[int, int, int], name: str = "scene") -> QgsRasterLayer:
    """A hyperspectral raster shown as an RGB composite of three 1-based bands, stretched 2–98 %."""
    layer = _checked(QgsRasterLayer(str(path), name), path)
    renderer = QgsMultiBandColorRenderer(layer.dataProvider(), *bands)
    for i, band in enumerate(bands):
        stats = layer.dataProvider().cumulativeCut(band, 0.02, 0.98, sampleSize=250000)
        ce = QgsContrastEnhancement(layer.dataProvider().dataType(band))
        ce.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
        ce.setMinimumValue(stats[0])
        ce.setMaximumValue(stats[1])
        (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement,
         renderer.setBlueContrastEnhancement)[i](ce)
    layer.setRenderer(renderer)
    return layer


def class_color(i: int) -> str:
    """The colour of the i-th class a user adds (ColorBrewer's Dark2, which reads on false-colour imagery)."""
    ramp = QgsColorBrewerColorRamp("Dark2", 8)
    return ramp.color((i % ramp.count() + 0.5) / ramp.count()).name()


def class_symbol(color: str, geometry=QgsWkbTypes.PolygonGeometry):
    """A class's symbol: polygons half transparent with a solid outline, points as dots with a dark rim."""
    if geometry == QgsWkbTypes.PointGeometry:
        return QgsMarkerSymbol.createSimple({"color": color, "outline_color": "#222222", "size": "2.6"})
    q = QColor(color)
    return QgsFillSymbol.createSimple({"color": f"{q.red()},{q.green()},{q.blue()},110", "outline_color": color,
                                       "outline_width": "0.5"})


def categorized(field: str, names: list[str], colors: list[str],
                geometry=QgsWkbTypes.PolygonGeometry) -> QgsCategorizedSymbolRenderer:
    """A renderer with one category (symbol and legend entry) per class value of `field`."""
    return QgsCategorizedSymbolRenderer(field, [QgsRendererCategory(n, class_symbol(c, geometry), n)
                                                for n, c in zip(names, colors)])


def add_category(layer: QgsVectorLayer, field: str, value: str) -> None:
    """Give class `value` its own category in the layer's categorized style on `field` (made when missing); a new
    renderer, so that the map and the legend show it at once."""
    renderer = layer.renderer()
    categories = renderer.categories() if (isinstance(renderer, QgsCategorizedSymbolRenderer) and
                                           renderer.classAttribute() == field) else []
    if any(str(c.value()) == value for c in categories):
        return
    symbol = class_symbol(class_color(len(categories)), layer.geometryType())
    layer.setRenderer(QgsCategorizedSymbolRenderer(field, [*categories, QgsRendererCategory(value, symbol, value)]))
    layer.triggerRepaint()


def polygon_layer(path, field: str, names: list[str], colors: list[str], name: str = "training polygons",
                  layer_name: str | None = None) -> QgsVectorLayer:
    """Training polygons (or classified cells) coloured by class, half transparent with a solid outline."""
    uri = f"{path}|layername={layer_name}" if layer_name else str(path)
    layer = _checked(QgsVectorLayer(uri, name, "ogr"), path)
    layer.setRenderer(categorized(field, names, colors))
    return layer


def new_training_layer(path: Path, crs, points: bool, field: str, name: str) -> QgsVectorLayer:
    """An empty GeoPackage layer of polygons (or points) in `crs` with the text field `field`, styled by class and
    with no attribute form on adding a feature (each new feature takes the field's default: the chosen class).
    Written under a temporary name and renamed, so no half-made file is ever left."""
    fields = QgsFields()
    fields.append(QgsField(field, QVariant.String, "", 64))
    opts = QgsVectorFileWriter.SaveVectorOptions()
    opts.driverName, opts.layerName = "GPKG", path.stem
    tmp = path.with_name(f".part-{path.name}")
    writer = QgsVectorFileWriter.create(str(tmp), fields, QgsWkbTypes.Point if points else QgsWkbTypes.Polygon, crs,
                                        QgsProject.instance().transformContext(), opts)
    error = writer.errorMessage() if writer.hasError() else ""
    del writer  # closes the file
    if error:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"could not create {path}: {error}")
    os.replace(tmp, path)
    layer = _checked(QgsVectorLayer(f"{path}|layername={path.stem}", name, "ogr"), path)
    layer.setRenderer(categorized(field, [], [], layer.geometryType()))
    form = layer.editFormConfig()
    form.setSuppress(QgsEditFormConfig.SuppressOn)
    layer.setEditFormConfig(form)
    return layer


def cells_layer(path, names: list[str], colors: list[str], name: str = "cells") -> QgsVectorLayer:
    """classify-cells' GeoPackage coloured by each cell's class, its style saved inside the file."""
    layer = polygon_layer(path, "class", names, colors, name)
    _save_qml(layer)
    return layer


def export_vectors(src: Path, dest: Path, transform_context) -> None:
    """Save the features of `src` (with their style) in the format of `dest`'s extension (GeoPackage, Shapefile,
    GeoJSON…), written under a temporary name first so `dest` is never half-written."""
    layer = _checked(QgsVectorLayer(str(src), src.stem, "ogr"), src)
    opts = QgsVectorFileWriter.SaveVectorOptions()
    opts.driverName = QgsVectorFileWriter.driverForExtension(dest.suffix) or "GPKG"
    tmp = dest.with_name(f".part-{dest.name}")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    err = QgsVectorFileWriter.writeAsVectorFormatV3(layer, str(tmp), transform_context, opts)
    if err[0] != QgsVectorFileWriter.NoError:
        for part in tmp.parent.glob(f"{tmp.stem}.*"):
            part.unlink()
        raise RuntimeError(f"could not write {dest}: {err[1]}")
    for part in tmp.parent.glob(f"{tmp.stem}.*"):  # a Shapefile is several files
        part.replace(dest.with_suffix(part.suffix))
