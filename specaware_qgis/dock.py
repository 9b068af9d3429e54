"""The SpecAware dock: the Classify, Train, Change and Engine-and-weights sections, the status line (progress,
Cancel, Diagnostics) and the message bar. The sections do the work; the dock wires them together."""
from __future__ import annotations

import json

from osgeo import gdal
from qgis.core import Qgis, QgsProject
from qgis.gui import QgsDockWidget, QgsScrollArea
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import QApplication, QComboBox, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from . import settings
from .engine_process import Engine
from .sections.change import ChangeSection
from .sections.classify import ClassifySection
from .sections.engine_and_weights import EngineSection
from .sections.train import TrainSection
from .sections.widgets import WheelGuard, row
from .task_queue import TaskQueue
from .tasks import EngineTask


MIN_BOX_CHARS = 8  # a box shows at least this many characters and elides the rest: the dock fits 360 px


class SpecAwareDock(QgsDockWidget):
    """The analyst's panel. Every engine call is a task in `queue`; the GUI thread only validates and styles."""

    def __init__(self, message_bar, project: QgsProject | None = None, engine: Engine | None = None, parent=None,
                 iface=None):
        super().__init__("SpecAware", parent)
        self.setObjectName("SpecAwareDock")
        self.bar = message_bar
        self.project = project or QgsProject.instance()
        self.engine = engine or Engine.shared()
        self.device_text = "CPU"  # until the engine check says otherwise
        self.queue = TaskQueue(self.engine, self.say)
        self.classify_section = ClassifySection(self.queue, self.say, self.project)
        self.train_section = TrainSection(self.queue, self.say, self.classify_section.raster, self.fill_models,
                                          self.project, self.classify_section.output_root, iface)
        self.change_section = ChangeSection(self.queue, self.say, self.project, self.classify_section.output_root,
                                            self.train_section)
        self.train_section.dates = (self.change_section.before, self.change_section.after)
        self.engine_section = EngineSection(self.queue, self.say, self.engine, self.refresh_engine)
        body = QWidget()
        layout = QVBoxLayout(body)
        for section in (self.classify_section, self.train_section, self.change_section, self.engine_section):
            layout.addWidget(section)
        layout.addStretch(1)
        for box in body.findChildren(QComboBox):  # long layer and profile names are elided, never widen the dock
            box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(MIN_BOX_CHARS)
        scroll = QgsScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setVerticalOnly(True)
        scroll.setWidget(body)
        self.wheel_guard = WheelGuard(scroll)
        outer = QWidget()
        olay = QVBoxLayout(outer)
        olay.setContentsMargins(2, 2, 2, 2)
        olay.addWidget(scroll, 1)
        olay.addWidget(self._status_line())
        self.setWidget(outer)
        self._name_widgets()
        self.queue.started.connect(self._task_started)
        self.queue.progressed.connect(self._task_progressed)
        self.queue.ended.connect(self._task_ended)
        self.refresh_engine()

    def _name_widgets(self) -> None:
        """Object names for the dock's inputs: QGIS's interface customisation, accessibility tools and the
        desktop test find them by name."""
        c, t, ch, d = self.classify_section, self.train_section, self.change_section, self.train_section.drawing
        for name, w in {"raster": c.raster.box, "sensor": c.raster.label, "model": c.model_box,
                        "outputFolder": c.out_widget, "classify": c.classify_button, "task": t.task_box,
                        "trainingLayer": t.polygons_box, "newTrainingLayer": d.new_button, "geometry": d.geometry_box,
                        "classField": t.field_box, "drawClass": d.class_box, "addClass": d.add_button,
                        "modelName": t.name_edit, "head": t.head_box, "epochs": t.epochs_spin,
                        "finetune": t.finetune_button, "before": ch.before.box, "after": ch.after.box,
                        "mode": ch.mode_box, "detect": ch.detect_button, "export": ch.export_button,
                        "status": self.status_label}.items():
            w.setObjectName(f"specaware_{name}")

    def _status_line(self) -> QWidget:
        self.status_label = QLabel("Engine: looking for a Python with PyTorch…")
        self.status_label.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.queue.cancel)
        self.diagnostics_button = QPushButton("Diagnostics")
        self.diagnostics_button.setToolTip("Copy QGIS, GDAL, torch, CUDA and engine versions for a bug report")
        self.diagnostics_button.clicked.connect(self.diagnostics)
        w = QWidget()
        layout = QVBoxLayout(w)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.status_label)
        layout.addWidget(row(self.progress, self.cancel_button, self.diagnostics_button))
        return w

    def say(self, text: str, level=Qgis.Info, report: str | None = None, duration: int = 8) -> None:
        """A message-bar line; with `report`, an 'Open report' button opens the HTML report."""
        item = self.bar.createMessage("SpecAware", text)
        if report:
            button = QPushButton("Open report")
            button.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(report)))
            item.layout().addWidget(button)
        self.bar.pushWidget(item, level, 0 if level == Qgis.Critical else duration)

    # -- the status line follows the engine jobs the user started ------------------------------------------------
    def _task_started(self, task: EngineTask) -> None:
        self.progress.setVisible(True)
        self.progress.setValue(0)
        self.cancel_button.setEnabled(True)
        self.status_label.setText(f"{task.description()}: waiting for the engine…")

    def _task_progressed(self, task: EngineTask, text: str) -> None:
        self.progress.setValue(int(task.progress()))
        if text:
            self.status_label.setText(f"{task.description()}: {text}")

    def _task_ended(self, task: EngineTask) -> None:
        current = self.queue.current()
        if current is not None:
            self.status_label.setText(f"{current.description()}: {current.last_message or 'running'}")
        elif not task.quiet:
            self.progress.setVisible(False)
            self.cancel_button.setEnabled(False)
            device = (self.engine.main.device_name if self.engine.main else None) or self.device_text
            self.status_label.setText(f"Engine: {device}. Idle.")

    # -- the engine check feeds every section ------------------------------------------------------------------
    def refresh_engine(self) -> None:
        """Find the engine environment and list models and profiles, all in the background."""
        self.queue.start("SpecAware: engine check", [("diagnostics", {}), ("models", {"action": "list"}),
                                                     ("profiles", {})], self._engine_ready, quiet=True,
                         on_error=lambda t: self._no_engine(str(t.error)))

    def _engine_ready(self, task: EngineTask) -> None:
        diag, models, profiles = task.results  # asked of the quick worker, which always runs on the CPU
        gpu = diag.get("cuda_device") if settings.get("device") != "cpu" else None
        self.device_text = f"CUDA: {gpu}" if gpu else "CPU"
        self.status_label.setText(f"Engine: {self.engine.environment.message}. Device: {self.device_text}. Idle.")
        self.engine_section.create_env_button.setVisible(False)
        self.fill_models(models["models"])
        for choice in (self.classify_section.raster, self.change_section.before, self.change_section.after):
            choice.add_profiles(profiles["profiles"])
            choice.detect_later()  # what a sensor check said before (no engine, another engine) is out of date

    def _no_engine(self, message: str) -> None:
        self.status_label.setText(f"<span style='color:#b00020'>{message}</span>")
        self.engine_section.create_env_button.setVisible(True)

    def fill_models(self, models: list[dict], select: str | None = None) -> None:
        """The engine's model list in Classify's and Change's model boxes, `select` chosen where it fits."""
        for box in (self.classify_section.model_box, self.change_section.change_model_box,
                    self.change_section.fromto_model_box):
            box.fill(models, select)

    def diagnostics(self) -> EngineTask:
        """Copy QGIS, GDAL, torch, CUDA and engine versions to the clipboard for a bug report."""
        def copy(task: EngineTask) -> None:
            text = json.dumps({"qgis": Qgis.QGIS_VERSION, "gdal (QGIS)": gdal.__version__,
                               "engine environment": self.engine.environment.message, **task.result}, indent=1)
            QApplication.clipboard().setText(text)
            self.say("diagnostics copied to the clipboard", Qgis.Success)
        return self.queue.start("SpecAware: diagnostics", [("diagnostics", {})], copy, quiet=True)

    def cleanup(self) -> None:
        """Cancel what runs; called by the plugin's unload."""
        self.queue.cancel_all()
