"""Adding and styling the engine's results as QGIS layers; each styled layer also gets a `.qml` beside its file.

Uses qgis.core only, so the same code styles layers in the plugin, in Processing and in the headless demo.
"""
from __future__ import annotations

from pathlib import Path

from qgis.core import (QgsCategorizedSymbolRenderer, QgsColorRampShader, QgsContrastEnhancement, QgsFillSymbol,
                       QgsMultiBandColorRenderer, QgsPalettedRasterRenderer, QgsProject, QgsRasterBandStats,
                       QgsRasterLayer, QgsRasterShader, QgsRendererCategory, QgsSingleBandPseudoColorRenderer,
                       QgsSingleSymbolRenderer, QgsVectorLayer)
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


def polygon_layer(path, field: str, names: list[str], colors: list[str], name: str = "training polygons",
                  layer_name: str | None = None) -> QgsVectorLayer:
    """Training polygons coloured by class, half transparent with a solid outline."""
    uri = f"{path}|layername={layer_name}" if layer_name else str(path)
    layer = _checked(QgsVectorLayer(uri, name, "ogr"), path)
    categories = []
    for n, c in zip(names, colors):
        q = QColor(c)
        symbol = QgsFillSymbol.createSimple({"color": f"{q.red()},{q.green()},{q.blue()},110", "outline_color": c,
                                             "outline_width": "0.5"})
        categories.append(QgsRendererCategory(n, symbol, n))
    layer.setRenderer(QgsCategorizedSymbolRenderer(field, categories))
    return layer
