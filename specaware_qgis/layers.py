"""Adding and styling the engine's results as QGIS layers; each styled layer also gets a `.qml` beside its file.

Uses qgis.core only, so the same code styles layers in the plugin, in Processing and in the headless demo.
"""
from __future__ import annotations

from pathlib import Path

from qgis.core import (QgsCategorizedSymbolRenderer, QgsColorRampShader, QgsContrastEnhancement, QgsFillSymbol,
                       QgsMultiBandColorRenderer, QgsPalettedRasterRenderer, QgsRasterLayer, QgsRasterShader,
                       QgsRendererCategory, QgsSingleBandPseudoColorRenderer, QgsVectorLayer)
from qgis.PyQt.QtGui import QColor

# Viridis at five stops: perceptually uniform and readable by colour-blind users.
CONFIDENCE_RAMP = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"]


def _checked(layer, path):
    if not layer.isValid():
        raise RuntimeError(f"QGIS cannot open {path} as a layer")
    return layer


def _save_qml(layer) -> None:
    source = Path(layer.source().split("|")[0])
    if source.exists():
        layer.saveNamedStyle(str(source.with_suffix(".qml")))


def class_layer(path, names: list[str], colors: list[str], name: str = "classes") -> QgsRasterLayer:
    """classes.tif (ids 1…K, 0 = no data) with one paletted entry per class, labelled with its name."""
    layer = _checked(QgsRasterLayer(str(path), name), path)
    classes = [QgsPalettedRasterRenderer.Class(i + 1, QColor(c), n) for i, (n, c) in enumerate(zip(names, colors))]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    _save_qml(layer)
    return layer


def confidence_layer(path, name: str = "confidence") -> QgsRasterLayer:
    """confidence.tif (0–1) on a viridis ramp."""
    layer = _checked(QgsRasterLayer(str(path), name), path)
    ramp = QgsColorRampShader(0.0, 1.0)
    ramp.setColorRampType(QgsColorRampShader.Interpolated)
    n = len(CONFIDENCE_RAMP) - 1
    ramp.setColorRampItemList([QgsColorRampShader.ColorRampItem(i / n, QColor(c), f"{i / n:.2f}")
                               for i, c in enumerate(CONFIDENCE_RAMP)])
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(1.0)
    layer.setRenderer(renderer)
    _save_qml(layer)
    return layer


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
