"""The dock's Train section: fine-tune a land-cover, grid-cell or change model on polygons (or points), drawn here
or chosen from the project, optionally adapting to the scene first; the new model is then listed and selected. It
also suggests where to label next: points where the model hesitates, which the analyst labels and trains again with."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from qgis.core import Qgis, QgsMapLayerProxyModel, QgsProject, QgsVectorLayer
from qgis.gui import QgsCollapsibleGroupBox, QgsFieldComboBox
from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QPushButton, QSpinBox

from .. import inputs, layers, settings, vocabulary, workflows
from ..inputs import InputError
from ..task_queue import TaskQueue
from ..tasks import EngineTask
from .drawing import DrawingTools
from .widgets import SAMPLE_LAYERS, RasterChoice, choice_box, form, layer_box, row


class TrainSection(QgsCollapsibleGroupBox):
    """Fine-tuning; `on_trained(models, bundle)` hears of the new model with the engine's model list. Land cover
    and cells train on the Classify raster, change samples on the Change section's two dates (`dates`)."""

    def __init__(self, queue: TaskQueue, say: Callable, raster: RasterChoice,
                 on_trained: Callable[[list[dict], str], None], project: QgsProject, folder: Callable[[], Path],
                 iface=None):
        super().__init__("Train")
        self.setToolTip("Fine-tune SpecAware on training polygons or points of the raster above")
        self.queue, self.say, self.raster, self.on_trained = queue, say, raster, on_trained
        self.project, self.output_root = project, folder
        self.dates: tuple[RasterChoice, RasterChoice] | None = None  # Change's before and after, set by the dock
        self.task_box = QComboBox()
        for task in vocabulary.TASKS:
            self.task_box.addItem(vocabulary.TASK_LABELS.get(task, task), task)
        self.polygons_box = layer_box(SAMPLE_LAYERS)
        self.field_box = QgsFieldComboBox()
        self.field_box.setAllowEmptyFieldName(True)
        self.polygons_box.layerChanged.connect(self._polygons_changed)
        self.drawing = DrawingTools(raster, self.polygons_box, self.field_box, folder, project, iface, say, self)
        self.val_box = layer_box(SAMPLE_LAYERS)
        self.name_edit = QLineEdit(time.strftime("model-%Y%m%d"))
        self.preset_box = choice_box(vocabulary.PRESETS)
        self.head_box = choice_box(vocabulary.HEADS)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 1000)
        self.epochs_spin.setValue(40)
        self.adapt_check = QCheckBox("Adapt first")
        self.adapt_check.setToolTip("Adapt the encoder to these scenes first: minutes of masked-autoencoder "
                                    "training on the raster itself")
        self.adapt_minutes = QDoubleSpinBox()
        self.adapt_minutes.setRange(0.1, 600.0)
        self.adapt_minutes.setValue(5.0)
        self.adapt_minutes.setSuffix(" min")
        self.adapt_minutes.setEnabled(False)
        self.adapt_check.toggled.connect(self.adapt_minutes.setEnabled)
        self.finetune_button = QPushButton("Fine-tune")
        self.samples_box = layer_box(QgsMapLayerProxyModel.PointLayer)
        self.suggest_spin = QSpinBox()
        self.suggest_spin.setRange(1, 1000)
        self.suggest_spin.setValue(20)
        self.suggest_spin.setSuffix(" points")
        self.suggest_button = QPushButton("Suggest where to label next")
        self.suggest_button.setToolTip("Points where the model named above hesitates most, spread over the raster "
                                       "and its classes: label them, then fine-tune again")
        d = self.drawing
        layout = form(self)
        layout.addRow("Task", self.task_box)
        layout.addRow("Training layer", self.polygons_box)
        layout.addRow(d.new_button)
        layout.addRow("Geometry", d.geometry_box)
        layout.addRow("Class field", self.field_box)
        layout.addRow("Draw class", row(d.class_box, d.add_button))
        layout.addRow("Validation layer", self.val_box)
        layout.addRow("Model name", self.name_edit)
        layout.addRow("Preset", self.preset_box)
        layout.addRow("Head", self.head_box)
        layout.addRow("Epochs", self.epochs_spin)
        layout.addRow(row(self.adapt_check, self.adapt_minutes))
        layout.addRow("Labelled suggestions", self.samples_box)
        layout.addRow(self._advanced())
        layout.addRow(self.finetune_button)
        layout.addRow("Suggest", self.suggest_spin)
        layout.addRow(self.suggest_button)
        self.task_box.currentIndexChanged.connect(
            lambda _: self.head_box.setEnabled(self.task_box.currentData() == "pixels"))  # the others have their own
        self.finetune_button.clicked.connect(self.finetune)
        self.suggest_button.clicked.connect(self.suggest)

    def _advanced(self) -> QgsCollapsibleGroupBox:
        group = QgsCollapsibleGroupBox("Advanced")
        group.setCollapsed(True)
        self.backbone_mode_box = choice_box(vocabulary.BACKBONE_MODES)
        self.val_fraction_spin = QDoubleSpinBox()
        self.val_fraction_spin.setRange(0.0, 0.9)
        self.val_fraction_spin.setSingleStep(0.05)
        self.val_fraction_spin.setValue(0.3)
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setDecimals(5)
        self.lr_spin.setRange(1e-5, 1.0)
        self.lr_spin.setValue(1e-3)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2 ** 31 - 1)
        self.windows_spin = QSpinBox()
        self.windows_spin.setRange(8, 100000)
        self.windows_spin.setValue(64)
        layout = form(group)
        layout.addRow("Backbone", self.backbone_mode_box)
        layout.addRow("Validation share", self.val_fraction_spin)
        layout.addRow("Learning rate", self.lr_spin)
        layout.addRow("Windows per epoch", self.windows_spin)
        layout.addRow("Seed", self.seed_spin)
        return group

    def _polygons_changed(self, layer) -> None:
        """Offer the layer's fields; the field its categorized style is drawn by is likely the class."""
        self.field_box.setLayer(layer)
        if layer is not None:
            field = getattr(layer.renderer(), "classAttribute", lambda: "")()
            if field and layer.fields().indexOf(field) >= 0:
                self.field_box.setField(field)

    def _rasters(self, task: str) -> tuple[str, str | None, str | None]:
        """(raster, second date, profile) of the task: the Classify raster, or Change's before and after."""
        if task != workflows.CHANGE_TASK:
            return self.raster.ready_path("raster to train on"), None, self.raster.profile.param()
        before, after = self.dates
        first = before.ready_path("'before' raster (Change section) for change samples")
        second = after.ready_path("'after' raster (Change section) for change samples")
        if first == second:
            raise InputError("change samples need two dates: choose different Before and After rasters in the "
                             "Change section")
        return first, second, before.profile.param()

    def finetune(self) -> EngineTask | None:
        task = self.task_box.currentData()
        try:
            raster, after, profile = self._rasters(task)
            poly = self.polygons_box.currentLayer()
            polygons, layer_name = inputs.vector_source(poly, "training layer")
            field = self.field_box.currentField()
            values = inputs.class_values(poly, field)
            if len(values) < 2:
                raise InputError(f"the class field {field!r} of {poly.name()!r} holds one class ({values[0]}); "
                                 "training needs at least two")
            name = self.name_edit.text().strip()
            if not name:
                raise InputError("no model name: type a name for the new model")
            val = self.val_box.currentLayer()
            val_path = inputs.vector_source(val, "validation layer")[0] if val is not None else None
            more = self.samples_box.currentLayer()
            samples = inputs.vector_source(more, "labelled suggestions")[0] if more is not None else None
        except InputError as e:
            self.say(str(e), Qgis.Warning)
            return None
        params = {"raster": raster, "polygons": polygons, "layer": layer_name, "class_field": field, "out": name,
                  "task": task, "after": after, "preset": self.preset_box.currentText(),
                  "head": self.head_box.currentText() if task == "pixels" else None,  # the others have their own
                  "epochs": self.epochs_spin.value(),
                  "backbone_mode": self.backbone_mode_box.currentText(),
                  "val_fraction": self.val_fraction_spin.value(), "lr": self.lr_spin.value(),
                  "windows_per_epoch": self.windows_spin.value(), "seed": self.seed_spin.value(),
                  "val_polygons": val_path, "samples": samples, "colors": layers.category_colors(poly, field) or None,
                  "profile": profile}
        adapt = self.adapt_minutes.value() if self.adapt_check.isChecked() else 0.0
        steps = workflows.finetune(params, settings.weights_dir(), adapt, list_models=True)
        return self.queue.start(f"SpecAware: fine-tune {name}", steps, lambda t: self._trained(t, task))

    def _trained(self, task: EngineTask, kind: str) -> None:
        trained, models = task.results[-2:]
        self.on_trained(models["models"], trained["bundle"])
        v = trained.get("validation") or {}
        ci = (v.get("intervals") or {}).get("oa") or [None, None]
        within = f" (95 % interval {ci[0]:.0%}–{ci[1]:.0%})" if ci[0] is not None else ""
        score = f": validation OA {v['oa']:.1%}{within}, κ {v['kappa']:.3f}" if v.get("oa") is not None else ""
        use = {"cells": " Classify now labels grid cells with it.",
               workflows.CHANGE_TASK: " Change › Supervised now maps change with it."}.get(kind, "")
        self.say(f"Model {trained['name']} trained{score}.{use}", Qgis.Success, trained.get("report"))

    def suggest(self) -> EngineTask | None:
        """Ask the engine where the model named above hesitates most (away from what it was trained on); the points
        come back as an editable layer."""
        try:
            raster = self.raster.ready_path("raster to suggest points on")
            model = self.name_edit.text().strip()
            if not model:
                raise InputError("no model name: type the name of the model to suggest points with")
            folder = inputs.run_folder(self.output_root(), "suggest", self.raster.layer_name())
        except InputError as e:
            self.say(str(e), Qgis.Warning)
            return None
        out = str(folder / "suggestions.gpkg")
        steps = workflows.suggest(raster, model, self.suggest_spin.value(), out, profile=self.raster.profile.param())
        return self.queue.start(f"SpecAware: suggest where to label ({model})", steps, self._suggested, folder=folder)

    def _suggested(self, task: EngineTask) -> None:
        r = task.result
        layer = QgsVectorLayer(r["out"], f"label next — {Path(r['out']).parent.name}", "ogr")
        self.project.addMapLayer(layer)
        self.samples_box.setLayer(layer)
        self.say(f"{r['points']} points to label: fill in their {r['class_field']!r} field (leave a point empty to "
                 "skip it), then Fine-tune again: they are its labelled suggestions", Qgis.Success)
