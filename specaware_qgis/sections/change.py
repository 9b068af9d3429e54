"""The dock's Change section: two dates, unsupervised / supervised / from–to change, the method, the threshold
(a significance test at a p-value, Otsu, or a magnitude) and the minimum mapping unit; the result is added as a
styled group and its polygons can be exported."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from qgis.core import Qgis, QgsProject, QgsRasterLayer
from qgis.gui import QgsCollapsibleGroupBox, QgsFieldComboBox
from qgis.PyQt.QtWidgets import QComboBox, QDoubleSpinBox, QFileDialog, QPushButton

from .. import inputs, layers, workflows
from ..inputs import InputError
from ..task_queue import TaskQueue
from ..tasks import EngineTask
from ..vocabulary import CHANGE_METHODS, THRESHOLD_MODES
from .train import TrainSection
from .widgets import SAMPLE_LAYERS, ModelBox, RasterChoice, form, layer_box, row

CHANGE_MODES = [("unsupervised", "Unsupervised (significant change)"),
                ("supervised", "Supervised (train on change / no-change polygons)"),
                ("fromto", "From–to (classify both dates with a model)")]
METHOD_LABELS = {"specaware": "SpecAware (any two sensors)", "irmad": "IR-MAD (shared bands)",
                 "cva": "CVA (shared bands)"}
THRESHOLD_LABELS = {"significance": "Significance test", "otsu": "Otsu (two modes only)"}


class ChangeSection(QgsCollapsibleGroupBox):
    """Change between two dates; supervised change trains with the Train section's preset and epochs."""

    def __init__(self, queue: TaskQueue, say: Callable, project: QgsProject, output_root: Callable[[], Path],
                 train: TrainSection):
        super().__init__("Change")
        self.queue, self.say, self.project = queue, say, project
        self.output_root, self.train = output_root, train
        self.last_change: dict | None = None
        self.before = RasterChoice(queue, project, self)
        self.after = RasterChoice(queue, project, self, avoid=self.before.box.currentLayer)
        self.mode_box = QComboBox()
        for key, text in CHANGE_MODES:
            self.mode_box.addItem(text, key)
        self.change_polygons_box = layer_box(SAMPLE_LAYERS)
        self.change_field_box = QgsFieldComboBox()
        self.change_field_box.setAllowEmptyFieldName(True)
        self.change_polygons_box.layerChanged.connect(self.change_field_box.setLayer)
        self.change_model_box = ModelBox((workflows.CHANGE_TASK,), first="New: train on the change samples")
        self.fromto_model_box = ModelBox(("pixels",))
        self.method_box = QComboBox()
        for key in CHANGE_METHODS:
            self.method_box.addItem(METHOD_LABELS.get(key, key), key)
        self.method_box.setToolTip("specaware reads each date's own bands (any two sensors); irmad and cva read the "
                                   "bands both dates share")
        self.threshold_box = QComboBox()
        for key in THRESHOLD_MODES:
            self.threshold_box.addItem(THRESHOLD_LABELS.get(key, key), key)
        self.threshold_box.addItem("Magnitude above…", None)
        self.p_value_spin = QDoubleSpinBox()
        self.p_value_spin.setDecimals(6)
        self.p_value_spin.setRange(1e-6, 0.5)
        self.p_value_spin.setSingleStep(0.001)
        self.p_value_spin.setValue(0.001)
        self.p_value_spin.setPrefix("p < ")
        self.p_value_spin.setToolTip("a pixel has changed when a difference this large would occur with this "
                                     "probability without change")
        self.magnitude_spin = QDoubleSpinBox()
        self.magnitude_spin.setRange(0.0, 30.0)
        self.magnitude_spin.setValue(3.0)
        self.magnitude_spin.setToolTip("magnitude = −log10 p: 3 means p = 0.001")
        self.threshold_box.currentIndexChanged.connect(self._threshold_changed)
        self._threshold_changed()
        self.min_area_spin = QDoubleSpinBox()
        self.min_area_spin.setRange(0.0, 1e9)
        self.min_area_spin.setSuffix(" m²")
        self.detect_button = QPushButton("Detect changes")
        self.export_button = QPushButton("Export change polygons…")
        self.export_button.setEnabled(False)
        layout = form(self)
        for when, choice in (("Before", self.before), ("After", self.after)):
            layout.addRow(when, choice.box)
            layout.addRow("", choice.label)
            layout.addRow(f"{when} profile", choice.profile)
        layout.addRow("Mode", self.mode_box)
        layout.addRow("Change model", self.change_model_box)
        layout.addRow("Change samples", self.change_polygons_box)
        layout.addRow("Change field", self.change_field_box)
        layout.addRow("Classification model", self.fromto_model_box)
        layout.addRow("Method", self.method_box)
        layout.addRow("Threshold", self.threshold_box)
        layout.addRow("", row(self.p_value_spin, self.magnitude_spin))  # the one the threshold uses
        layout.addRow("Minimum mapping unit", self.min_area_spin)
        layout.addRow(self.detect_button)
        layout.addRow(self.export_button)
        self.mode_box.currentIndexChanged.connect(self._mode_changed)
        self.change_model_box.currentIndexChanged.connect(self._mode_changed)
        self._mode_changed()
        self.detect_button.clicked.connect(self.detect_changes)
        self.export_button.clicked.connect(lambda: self.export_change_polygons())

    def _threshold_changed(self) -> None:
        mode = self.threshold_box.currentData()
        self.p_value_spin.setVisible(mode == "significance")
        self.magnitude_spin.setVisible(mode is None)

    def threshold(self) -> str:
        mode = self.threshold_box.currentData()
        return mode if mode is not None else f"{self.magnitude_spin.value():g}"

    def _mode_changed(self) -> None:
        mode = self.mode_box.currentData()
        self.change_model_box.setEnabled(mode == "supervised")
        for w in (self.change_polygons_box, self.change_field_box):  # samples train a new change model
            w.setEnabled(mode == "supervised" and self.change_model_box.currentData() is None)
        self.fromto_model_box.setEnabled(mode == "fromto")

    def detect_changes(self) -> EngineTask | None:
        mode = self.mode_box.currentData()
        try:
            before = self.before.ready_path("'before' raster")
            after = self.after.ready_path("'after' raster")
            if before == after:
                raise InputError("the 'before' and 'after' rasters are the same file: choose two dates")
            folder = inputs.run_folder(self.output_root(), "change", self.after.layer_name())
            model = samples = None
            if mode == "supervised":
                model = self.change_model_box.currentData()  # a change model trained before (Train › Task)
                samples = None if model else self._samples()
            elif mode == "fromto":
                model = self.fromto_model_box.currentData()
                if not model:
                    raise InputError("from–to needs a classification model: fine-tune one in the Train section")
        except InputError as e:
            self.say(str(e), Qgis.Warning)
            return None
        steps = workflows.change(before, after, str(folder), self.threshold(), self.min_area_spin.value(), model,
                                 samples, self.method_box.currentData(), self.p_value_spin.value())
        return self.queue.start(f"SpecAware: change {self.before.layer_name()} → {self.after.layer_name()}", steps,
                                self._changed, folder=folder)

    def _samples(self) -> dict:
        """The change / no-change polygons for training a change model, with the Train section's preset and epochs."""
        poly = self.change_polygons_box.currentLayer()
        polygons, layer_name = inputs.vector_source(poly, "change sample layer")
        field = self.change_field_box.currentField()
        inputs.class_values(poly, field)
        return {"polygons": polygons, "layer": layer_name, "class_field": field,
                "preset": self.train.preset_box.currentText(), "epochs": self.train.epochs_spin.value()}

    def _changed(self, task: EngineTask) -> None:
        r = task.result
        out = Path(r["outputs"][0]).parent
        group = [layers.change_polygons_layer(out / "change.gpkg"), layers.change_layer(out / "change.tif"),
                 layers.magnitude_layer(out / "magnitude.tif")]
        if (out / "fromto.tif").exists():
            group.insert(2, QgsRasterLayer(str(out / "fromto.tif"), "from → to"))
        layers.add_group(f"SpecAware change ({out.name})", group, self.project)
        self.last_change = r
        self.export_button.setEnabled(True)
        self.say(f"{r['changed_area_ha']:g} ha changed ({r['polygons']['count']} polygons); outputs in {out}",
                 Qgis.Success)

    def export_change_polygons(self, path: str | None = None) -> str | None:
        """Save the last change polygons to a file the user picks (GeoPackage, Shapefile, GeoJSON…)."""
        if not self.last_change:
            self.say("no change map yet: run Detect changes first", Qgis.Warning)
            return None
        src = Path(self.last_change["outputs"][0]).parent / "change.gpkg"
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export change polygons", str(src.with_name("changes.gpkg")),
                                                  "GeoPackage (*.gpkg);;ESRI Shapefile (*.shp);;GeoJSON (*.geojson)")
            if not path:
                return None
        try:
            layers.export_vectors(src, Path(path), self.project.transformContext())
        except RuntimeError as e:
            self.say(str(e), Qgis.Critical)
            return None
        self.say(f"change polygons exported to {path}", Qgis.Success)
        return path
