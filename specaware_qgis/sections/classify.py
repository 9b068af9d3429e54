"""The dock's Classify section: the raster (also the one Train uses), its sensor, a land-cover model, a cell model
or K clusters, the output folder; the result is added as a styled group."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from qgis.core import Qgis, QgsProject
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget
from qgis.PyQt.QtWidgets import QPushButton, QSpinBox

from .. import inputs, layers, settings, vocabulary, workflows
from ..inputs import InputError
from ..task_queue import TaskQueue
from ..tasks import EngineTask
from .widgets import CLUSTERS, ModelBox, RasterChoice, form



class ClassifySection(QgsCollapsibleGroupBox):
    """Classify a raster with a fine-tuned model, into grid cells with a cell model, or into unsupervised
    clusters."""

    def __init__(self, queue: TaskQueue, say: Callable, project: QgsProject):
        super().__init__("Classify")
        self.queue, self.say, self.project = queue, say, project
        self.raster = RasterChoice(queue, project, self)
        self.model_box = ModelBox(tuple(vocabulary.SCENE_TASKS), with_clusters=True)
        self.clusters_spin = QSpinBox()
        self.clusters_spin.setRange(2, 64)
        self.clusters_spin.setValue(6)
        self.cell_spin = QSpinBox()
        self.cell_spin.setRange(1, 100000)
        self.cell_spin.setValue(32)
        self.cell_spin.setSuffix(" px")
        self.out_widget = QgsFileWidget()
        self.out_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.out_widget.setFilePath(str(settings.output_dir()))
        self.classify_button = QPushButton("Classify")
        layout = form(self)
        layout.addRow("Raster", self.raster.box)
        layout.addRow("Sensor", self.raster.label)
        layout.addRow("Profile", self.raster.profile)
        layout.addRow("Model", self.model_box)
        layout.addRow("Clusters (K)", self.clusters_spin)
        layout.addRow("Cell size", self.cell_spin)
        layout.addRow("Output folder", self.out_widget)
        layout.addRow(self.classify_button)
        self.model_box.currentIndexChanged.connect(lambda _: self._model_changed())
        self._model_changed()
        self.classify_button.clicked.connect(self.classify)

    def _model_changed(self) -> None:
        self.clusters_spin.setEnabled(self.model_box.currentData() == CLUSTERS)
        self.cell_spin.setEnabled(self.model_box.task() == "cells")

    def output_root(self) -> Path:
        """The folder every run's output folder goes into (Classify's and Change's)."""
        return Path(self.out_widget.filePath() or settings.output_dir())

    def classify(self) -> EngineTask | None:
        try:
            raster = self.raster.ready_path("raster to classify")
            model = self.model_box.currentData()
            if model is None:
                raise InputError("no model chosen: fine-tune one in the Train section or choose unsupervised")
            folder = inputs.run_folder(self.output_root(), "classify", self.raster.layer_name())
        except InputError as e:
            self.say(str(e), Qgis.Warning)
            return None
        settings.put("output_dir", self.out_widget.filePath())
        name, profile = self.raster.layer_name(), self.raster.profile.param()
        if self.model_box.task() == "cells":
            steps = workflows.classify_cells(raster, str(folder / "cells.gpkg"), model, self.cell_spin.value(),
                                             profile=profile)
            return self.queue.start(f"SpecAware: classify cells of {name}", steps,
                                    lambda t: self._cells_classified(t, name), folder=folder)
        clusters = model == CLUSTERS
        steps = workflows.classify(raster, str(folder), model=None if clusters else model,
                                   clusters=self.clusters_spin.value() if clusters else None, profile=profile)
        return self.queue.start(f"SpecAware: classify {name}", steps, lambda t: self._classified(t, name),
                                folder=folder)

    def _classified(self, task: EngineTask, name: str) -> None:
        r = task.result
        out = Path(r["outputs"][0]).parent if r.get("outputs") else Path(r["report"]).parent
        names, colors = r["classes"]["names"], r["classes"]["colors"]
        layers.add_group(f"SpecAware classes — {name} ({out.name})",
                         [layers.class_layer(out / "classes.tif", names, colors, f"{name} classes"),
                          layers.confidence_layer(out / "confidence.tif", f"{name} confidence")], self.project)
        self.say(f"Classified {name} into {out}", Qgis.Success, r.get("report_html"))

    def _cells_classified(self, task: EngineTask, name: str) -> None:
        cells = task.result
        names, colors = cells["classes"]["names"], cells["classes"]["colors"]
        out = Path(cells["out"])
        layers.add_group(f"SpecAware cells — {name} ({out.parent.name})",
                         [layers.cells_layer(out, names, colors, f"{name} cells")], self.project)
        self.say(f"Classified {cells['cells']} cells of {name} into {out}", Qgis.Success)
