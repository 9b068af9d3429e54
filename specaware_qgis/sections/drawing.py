"""Drawing training data from the dock: *New training layer* makes a GeoPackage of polygons (or points) in the
raster's CRS with a `class` field and a categorized style, switches editing on and starts QGIS's Add Feature tool;
the class box (*Add class*) sets the class every new feature gets, so no one types in the attribute table."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from qgis.core import Qgis, QgsDefaultValue, QgsExpression, QgsProject, QgsVectorLayer
from qgis.gui import QgsFieldComboBox, QgsMapLayerComboBox
from qgis.PyQt.QtCore import QObject
from qgis.PyQt.QtWidgets import QComboBox, QPushButton

from .. import inputs, layers
from ..inputs import InputError
from .widgets import RasterChoice

CLASS_FIELD = "class"


class DrawingTools(QObject):
    """The New-training-layer button with its geometry box, and the class box with Add class, acting on the Train
    section's training layer and class field."""

    def __init__(self, raster: RasterChoice, layer_box: QgsMapLayerComboBox, field_box: QgsFieldComboBox,
                 folder: Callable[[], Path], project: QgsProject, iface, say: Callable, parent: QObject):
        super().__init__(parent)
        self.raster, self.layer_box, self.field_box = raster, layer_box, field_box
        self.folder, self.project, self.iface, self.say = folder, project, iface, say
        self.geometry_box = QComboBox()
        self.geometry_box.addItem("Polygons", False)
        self.geometry_box.addItem("Points", True)
        self.new_button = QPushButton("New training layer")
        self.new_button.setToolTip("A GeoPackage layer in the raster's CRS with a class field, ready to draw on")
        self.class_box = QComboBox()
        self.class_box.setEditable(True)
        self.class_box.setInsertPolicy(QComboBox.NoInsert)
        self.class_box.lineEdit().setPlaceholderText("type a class name")
        self.class_box.setToolTip("The class each new polygon or point gets")
        self.add_button = QPushButton("Add class")
        self.new_button.clicked.connect(lambda: self.new_layer())
        self.add_button.clicked.connect(lambda: self.add_class())
        self.class_box.lineEdit().returnPressed.connect(lambda: self.add_class())
        self.class_box.activated.connect(lambda _: self.class_chosen())
        layer_box.layerChanged.connect(lambda _: self.refresh_classes())
        field_box.fieldChanged.connect(lambda _: self.refresh_classes())

    def layer(self) -> QgsVectorLayer | None:
        return self.layer_box.currentLayer()

    def new_layer(self) -> QgsVectorLayer | None:
        """Create the layer next to the results, choose it for training, start editing and the Add Feature tool."""
        points = bool(self.geometry_box.currentData())
        try:
            raster = self.raster.box.currentLayer()
            if raster is None:
                raise InputError("no raster chosen: pick the raster you will draw on in the Classify section first")
            folder = inputs.run_folder(self.folder(), "training", raster.name())
            path = folder / ("points.gpkg" if points else "polygons.gpkg")
            layer = layers.new_training_layer(path, raster.crs(), points, CLASS_FIELD,
                                              f"{raster.name()} training {'points' if points else 'polygons'}")
        except (InputError, RuntimeError) as e:
            self.say(str(e), Qgis.Warning)
            return None
        for i in range(self.class_box.count()):  # classes added before carry over to the new layer
            layers.add_category(layer, CLASS_FIELD, self.class_box.itemText(i))
        self.project.addMapLayer(layer)
        self.layer_box.setLayer(layer)
        self.field_box.setField(CLASS_FIELD)
        layer.startEditing()
        if self.iface is not None:
            self.iface.setActiveLayer(layer)
            self.iface.actionAddFeature().trigger()
        self.class_chosen()
        what = "points" if points else "polygons (right-click ends one)"
        self.say(f"New training layer {path}: add a class, choose it, then click on the map to draw {what}. "
                 "Fine-tune saves the edits.", Qgis.Info, duration=15)
        return layer

    def classes(self, layer: QgsVectorLayer, field: str) -> list[str]:
        """The classes of `field`: its categorized style's values, then any other values in the layer."""
        names = list(layers.category_colors(layer, field))
        idx = layer.fields().indexOf(field)
        values = sorted(str(v) for v in layer.uniqueValues(idx) if v is not None and str(v).strip()) if idx >= 0 else []
        return names + [v for v in values if v not in names]

    def refresh_classes(self) -> None:
        """List the chosen training layer's classes, keeping the chosen class."""
        layer, field = self.layer(), self.field_box.currentField()
        if layer is None or not field:
            return
        keep = self.class_box.currentText()
        self.class_box.clear()
        self.class_box.addItems(self.classes(layer, field))
        self.class_box.setCurrentIndex(max(self.class_box.findText(keep), 0) if self.class_box.count() else -1)
        self.class_chosen()

    def add_class(self) -> str | None:
        """Add the typed class to the box and to the layer's style, and choose it for the next features."""
        name = self.class_box.currentText().strip()
        layer, field = self.layer(), self.field_box.currentField()
        if not name:
            self.say("type a class name in the class box first", Qgis.Warning)
            return None
        if layer is None or not field or layer.fields().indexOf(field) < 0:
            self.say("no training layer with a class field: press New training layer, or choose a layer and its "
                     "class field", Qgis.Warning)
            return None
        layers.add_category(layer, field, name)
        if self.class_box.findText(name) < 0:
            self.class_box.addItem(name)
        self.class_box.setCurrentIndex(self.class_box.findText(name))
        self.class_chosen()
        return name

    def class_chosen(self) -> None:
        """The chosen class becomes the class field's default: every feature drawn next gets it."""
        layer, field, name = self.layer(), self.field_box.currentField(), self.class_box.currentText().strip()
        if layer is None or not field or layer.fields().indexOf(field) < 0:
            return
        idx = layer.fields().indexOf(field)
        expression = QgsExpression.quotedValue(name) if name else ""
        if layer.defaultValueDefinition(idx).expression() == expression:
            return
        layer.setDefaultValueDefinition(idx, QgsDefaultValue(expression))
        if self.field_box.currentField() != field:  # the field box lost its choice when the layer's fields changed
            self.field_box.blockSignals(True)
            self.field_box.setField(field)
            self.field_box.blockSignals(False)
