"""The SpecAware dock: Classify, Train and Change sections, engine status, and results added as styled layers."""
from __future__ import annotations

import json
import time
from pathlib import Path

from qgis.core import (Qgis, QgsApplication, QgsMapLayerProxyModel, QgsProject, QgsRasterLayer, QgsTask,
                       QgsVectorFileWriter, QgsVectorLayer)
from qgis.gui import QgsCollapsibleGroupBox, QgsDockWidget, QgsFieldComboBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, QTimer, QUrl
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import (QApplication, QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                                 QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton, QScrollArea, QSpinBox,
                                 QVBoxLayout, QWidget)

from . import inputs, layers, settings
from .inputs import InputError
from .engine_process import Engine
from .tasks import EngineTask
from .weights import WeightsTask

CLUSTERS = "__clusters__"
SAMPLE_LAYERS = QgsMapLayerProxyModel.PolygonLayer | QgsMapLayerProxyModel.PointLayer
LOAD_PROFILE = "__file__"
CHANGE_MODES = [("unsupervised", "Unsupervised (feature distance + spectral angle)"),
                ("supervised", "Supervised (train on change / no-change polygons)"),
                ("fromto", "From–to (classify both dates with a model)")]


def _form(group: QWidget) -> QFormLayout:
    form = QFormLayout(group)
    form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
    return form


def _row(*widgets) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    for x in widgets:
        lay.addWidget(x)
    return w


class ProfileLabel(QLabel):
    """What the engine's `info` job made of a raster: sensor, bands, wavelength range, GSD, level."""

    def __init__(self):
        super().__init__("—")
        self.setWordWrap(True)
        self.info: dict | None = None
        self.problem: str | None = None

    def show_info(self, info: dict | None, problem: str | None = None) -> None:
        self.info, self.problem = info, problem
        if problem:
            self.setText(f"<span style='color:#b00020'>{problem}</span>")
        elif info:
            wr = info.get("wavelength_range_nm") or [0, 0]
            gsd = f"{info['gsd_m']:g} m" if info.get("gsd_m") else "unknown GSD"
            self.setText(f"<b>{info['sensor_name']}</b> ({info['sensor']}), level {info.get('level') or '?'} · "
                         f"{info['bands_used']} of {info['bands']} bands, {wr[0]:.0f}–{wr[1]:.0f} nm · {gsd}")
        else:
            self.setText("—")


class SpecAwareDock(QgsDockWidget):
    """The analyst's panel. Every engine call is an EngineTask; the GUI thread only validates and styles."""

    def __init__(self, message_bar, project: QgsProject | None = None, engine: Engine | None = None, parent=None):
        super().__init__("SpecAware", parent)
        self.setObjectName("SpecAwareDock")
        self.bar = message_bar
        self.project = project or QgsProject.instance()
        self.engine = engine or Engine.shared()
        self.tasks: list[QgsTask] = []
        self.last_change: dict | None = None
        self.profile_files: dict[str, str] = {}
        self._pending: set = set()  # sensor checks waiting for the event loop
        self.closing = False
        self.device_text = "CPU"  # until the engine check says otherwise
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.addWidget(self._classify_section())
        lay.addWidget(self._train_section())
        lay.addWidget(self._change_section())
        lay.addWidget(self._settings_section())
        lay.addStretch(1)
        for box in body.findChildren(QComboBox):  # long layer and profile names must not widen the dock
            box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(12)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(body)
        outer = QWidget()
        olay = QVBoxLayout(outer)
        olay.setContentsMargins(2, 2, 2, 2)
        olay.addWidget(scroll, 1)
        olay.addWidget(self._status_line())
        self.setWidget(outer)
        self.refresh_engine()

    # -- construction --------------------------------------------------------------------------------------
    @staticmethod
    def _layer_box(filters=QgsMapLayerProxyModel.RasterLayer) -> QgsMapLayerComboBox:
        """A layer box of the project's layers, starting empty (nothing is chosen for the user)."""
        box = QgsMapLayerComboBox()
        box.setFilters(filters)
        box.setAllowEmptyLayer(True)
        box.setLayer(None)
        return box

    def _profile_box(self) -> QComboBox:
        box = QComboBox()
        box.addItem("Detect from the raster's metadata", None)
        box.addItem("Load a profile from a JSON file…", LOAD_PROFILE)
        return box

    def _classify_section(self) -> QWidget:
        g = QgsCollapsibleGroupBox("Classify")
        form = _form(g)
        self.raster_box = self._layer_box()
        self.profile_label = ProfileLabel()
        self.profile_box = self._profile_box()
        self.model_box = QComboBox()
        self.clusters_spin = QSpinBox()
        self.clusters_spin.setRange(2, 64)
        self.clusters_spin.setValue(6)
        self.out_widget = QgsFileWidget()
        self.out_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.out_widget.setFilePath(str(settings.output_dir()))
        self.classify_button = QPushButton("Classify")
        form.addRow("Raster", self.raster_box)
        form.addRow("Sensor", self.profile_label)
        form.addRow("Profile", self.profile_box)
        form.addRow("Model", self.model_box)
        form.addRow("Clusters (K)", self.clusters_spin)
        form.addRow("Output folder", self.out_widget)
        form.addRow(self.classify_button)
        self.raster_box.layerChanged.connect(lambda _: self.detect_later(self.raster_box, self.profile_label,
                                                                         self.profile_box))
        self.profile_box.activated.connect(lambda _: self.profile_chosen(self.raster_box, self.profile_label,
                                                                         self.profile_box))
        self.model_box.currentIndexChanged.connect(
            lambda _: self.clusters_spin.setEnabled(self.model_box.currentData() == CLUSTERS))
        self.classify_button.clicked.connect(self.classify)
        return g

    def _train_section(self) -> QWidget:
        g = QgsCollapsibleGroupBox("Train (fine-tune on polygons of the raster above)")
        form = _form(g)
        self.polygons_box = self._layer_box(SAMPLE_LAYERS)
        self.field_box = QgsFieldComboBox()
        self.field_box.setAllowEmptyFieldName(True)
        self.polygons_box.layerChanged.connect(self._polygons_changed)
        self.val_box = self._layer_box(SAMPLE_LAYERS)
        self.name_edit = QLineEdit(time.strftime("model-%Y%m%d"))
        self.preset_box = QComboBox()
        self.preset_box.addItems(["tiny", "small", "base"])
        self.head_box = QComboBox()
        self.head_box.addItems(["light", "upernet"])
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 1000)
        self.epochs_spin.setValue(40)
        self.adapt_check = QCheckBox("Adapt to these scenes first (MAE on the raster)")
        self.adapt_minutes = QDoubleSpinBox()
        self.adapt_minutes.setRange(0.1, 600.0)
        self.adapt_minutes.setValue(5.0)
        self.adapt_minutes.setSuffix(" min")
        self.adapt_minutes.setEnabled(False)
        self.adapt_check.toggled.connect(self.adapt_minutes.setEnabled)
        adv = QgsCollapsibleGroupBox("Advanced")
        adv.setCollapsed(True)
        af = _form(adv)
        self.backbone_mode_box = QComboBox()
        self.backbone_mode_box.addItems(["frozen", "last-2", "full"])
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
        af.addRow("Backbone", self.backbone_mode_box)
        af.addRow("Validation share", self.val_fraction_spin)
        af.addRow("Learning rate", self.lr_spin)
        af.addRow("Windows per epoch", self.windows_spin)
        af.addRow("Seed", self.seed_spin)
        self.finetune_button = QPushButton("Fine-tune")
        form.addRow("Training layer", self.polygons_box)
        form.addRow("Class field", self.field_box)
        form.addRow("Validation layer", self.val_box)
        form.addRow("Model name", self.name_edit)
        form.addRow("Preset", self.preset_box)
        form.addRow("Head", self.head_box)
        form.addRow("Epochs", self.epochs_spin)
        form.addRow(_row(self.adapt_check, self.adapt_minutes))
        form.addRow(adv)
        form.addRow(self.finetune_button)
        self.finetune_button.clicked.connect(self.finetune)
        return g

    def _change_section(self) -> QWidget:
        g = QgsCollapsibleGroupBox("Change")
        form = _form(g)
        self.before_box, self.after_box = self._layer_box(), self._layer_box()
        self.before_label, self.after_label = ProfileLabel(), ProfileLabel()
        self.before_profile, self.after_profile = self._profile_box(), self._profile_box()
        for box, label, prof in ((self.before_box, self.before_label, self.before_profile),
                                 (self.after_box, self.after_label, self.after_profile)):
            box.layerChanged.connect(lambda _, b=box, lab=label, p=prof: self.detect_later(b, lab, p))
            prof.activated.connect(lambda _, b=box, lab=label, p=prof: self.profile_chosen(b, lab, p))
        self.mode_box = QComboBox()
        for key, text in CHANGE_MODES:
            self.mode_box.addItem(text, key)
        self.change_polygons_box = self._layer_box(SAMPLE_LAYERS)
        self.change_field_box = QgsFieldComboBox()
        self.change_field_box.setAllowEmptyFieldName(True)
        self.change_polygons_box.layerChanged.connect(self.change_field_box.setLayer)
        self.fromto_model_box = QComboBox()
        self.otsu_check = QCheckBox("Otsu")
        self.otsu_check.setChecked(True)
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setDecimals(4)
        self.threshold_spin.setRange(0.0, 1e6)
        self.threshold_spin.setEnabled(False)
        self.otsu_check.toggled.connect(lambda on: self.threshold_spin.setEnabled(not on))
        self.min_area_spin = QDoubleSpinBox()
        self.min_area_spin.setRange(0.0, 1e9)
        self.min_area_spin.setSuffix(" m²")
        self.detect_button = QPushButton("Detect changes")
        self.export_button = QPushButton("Export change polygons…")
        self.export_button.setEnabled(False)
        form.addRow("Before", self.before_box)
        form.addRow("", self.before_label)
        form.addRow("Before profile", self.before_profile)
        form.addRow("After", self.after_box)
        form.addRow("", self.after_label)
        form.addRow("After profile", self.after_profile)
        form.addRow("Mode", self.mode_box)
        form.addRow("Change samples", self.change_polygons_box)
        form.addRow("Change field", self.change_field_box)
        form.addRow("Classification model", self.fromto_model_box)
        form.addRow("Threshold", _row(self.otsu_check, self.threshold_spin))
        form.addRow("Minimum mapping unit", self.min_area_spin)
        form.addRow(_row(self.detect_button, self.export_button))
        self.mode_box.currentIndexChanged.connect(self._mode_changed)
        self._mode_changed()
        self.detect_button.clicked.connect(self.detect_changes)
        self.export_button.clicked.connect(lambda: self.export_change_polygons())
        return g

    def _settings_section(self) -> QWidget:
        g = QgsCollapsibleGroupBox("Engine and weights")
        g.setCollapsed(True)
        form = _form(g)
        self.python_widget = QgsFileWidget()
        self.python_widget.setFilePath(settings.get("engine_python"))
        self.python_widget.fileChanged.connect(self._python_changed)
        self.create_env_button = QPushButton("Create engine environment")
        self.create_env_button.clicked.connect(self.create_environment)
        self.device_box = QComboBox()
        self.device_box.addItems(["auto", "cuda", "cpu"])
        self.device_box.setCurrentText(settings.get("device") or "auto")
        self.device_box.currentTextChanged.connect(lambda d: (settings.put("device", d), self.engine.shutdown()))
        self.checkpoint_widget = QgsFileWidget()
        self.checkpoint_widget.setFilter("PyTorch checkpoint (*.pth *.pt)")
        self.checkpoint_widget.setFilePath(settings.get("checkpoint"))
        self.checkpoint_widget.fileChanged.connect(lambda p: self.get_weights(p) if p else settings.put("checkpoint", ""))
        self.weights_button = QPushButton("Get SpecAware-Base weights")
        self.weights_button.clicked.connect(self.get_weights)
        self.url_edit = QLineEdit(settings.get("weights_url"))
        self.url_edit.editingFinished.connect(lambda: settings.put("weights_url", self.url_edit.text().strip()))
        form.addRow("Engine Python", self.python_widget)
        form.addRow(self.create_env_button)
        form.addRow("Device", self.device_box)
        form.addRow("Checkpoint", self.checkpoint_widget)
        form.addRow(self.weights_button)
        form.addRow("Weights address", self.url_edit)
        return g

    def _status_line(self) -> QWidget:
        self.status_label = QLabel("Engine: looking for a Python with PyTorch…")
        self.status_label.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.diagnostics_button = QPushButton("Diagnostics")
        self.diagnostics_button.setToolTip("Copy QGIS, GDAL, torch, CUDA and engine versions for a bug report")
        self.diagnostics_button.clicked.connect(self.diagnostics)
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.status_label)
        lay.addWidget(_row(self.progress, self.cancel_button, self.diagnostics_button))
        return w

    # -- small reactions -----------------------------------------------------------------------------------
    def _polygons_changed(self, layer) -> None:
        self.field_box.setLayer(layer)
        if layer is not None:
            renderer = layer.renderer()
            field = getattr(renderer, "classAttribute", lambda: "")()
            if field and layer.fields().indexOf(field) >= 0:
                self.field_box.setField(field)

    def _mode_changed(self) -> None:
        mode = self.mode_box.currentData()
        for w in (self.change_polygons_box, self.change_field_box):
            w.setEnabled(mode == "supervised")
        self.fromto_model_box.setEnabled(mode == "fromto")

    def _python_changed(self, path: str) -> None:
        settings.put("engine_python", path)
        self.engine.environment = None
        self.refresh_engine()

    def say(self, text: str, level=Qgis.Info, report: str | None = None, duration: int = 8) -> None:
        """A message-bar line; with `report`, an 'Open report' button opens the HTML report."""
        item = self.bar.createMessage("SpecAware", text)
        if report:
            button = QPushButton("Open report")
            button.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(report)))
            item.layout().addWidget(button)
        self.bar.pushWidget(item, level, 0 if level == Qgis.Critical else duration)

    # -- engine state and task plumbing --------------------------------------------------------------------
    def refresh_engine(self) -> None:
        """Find the engine environment and list models and profiles, all in the background."""
        self.start("SpecAware: engine check", [("diagnostics", {}), ("models", {"action": "list"}),
                                               ("profiles", {})], self._engine_ready, quiet=True,
                   on_error=lambda t: self._no_engine(str(t.error)))

    def _engine_ready(self, task: EngineTask) -> None:
        diag, models, profiles = task.results  # asked of the quick worker, which always runs on the CPU
        gpu = diag.get("cuda_device") if settings.get("device") != "cpu" else None
        self.device_text = f"CUDA: {gpu}" if gpu else "CPU"
        self.status_label.setText(f"Engine: {self.engine.environment.message}. Device: {self.device_text}. Idle.")
        self.create_env_button.setVisible(False)
        self.fill_models(models["models"])
        for box in (self.profile_box, self.before_profile, self.after_profile):
            for p in profiles["profiles"]:
                if box.findData(p["key"]) < 0:
                    box.insertItem(box.count() - 1, f"{p['name']} ({p['bands']} bands)", p["key"])

    def fill_models(self, models: list[dict], select: str | None = None) -> None:
        for box, with_clusters in ((self.model_box, True), (self.fromto_model_box, False)):
            keep = select or box.currentData()
            box.clear()
            for m in models:
                if not m.get("damaged"):
                    miou = f", val mIoU {m['val_miou']:.2f}" if m.get("val_miou") is not None else ""
                    box.addItem(f"{m['name']} ({len(m.get('classes') or [])} classes{miou})", m["path"])
            if with_clusters:
                box.addItem("Unsupervised (K clusters)", CLUSTERS)
            i = box.findData(keep)
            box.setCurrentIndex(i if i >= 0 else 0)

    def start(self, description: str, steps, on_success, quiet: bool = False, folder: Path | None = None,
              on_error=None) -> EngineTask:
        """Queue an engine task; the engine runs one job at a time, so a second task waits its turn, visibly."""
        busy = [t.description() for t in self._visible()]
        task = EngineTask(description, steps, lambda t: self._done(t, on_success, on_error), self.engine, quiet,
                          folder)
        task.message.connect(lambda text, t=task: self._progress(t, text))
        task.progressChanged.connect(lambda v, t=task: self._progress(t))
        self.tasks.append(task)
        if busy and not quiet:
            self.say(f"{description} is queued: the engine runs one job at a time and is busy with {busy[0]}.")
        if not quiet:
            self.progress.setVisible(True)
            self.progress.setValue(0)
            self.cancel_button.setEnabled(True)
            self.status_label.setText(f"{description}: waiting for the engine…")
        QgsApplication.taskManager().addTask(task)
        return task

    def _progress(self, task: EngineTask, text: str | None = None) -> None:
        if task is not self._current():
            return
        self.progress.setValue(int(task.progress()))
        if text:
            self.status_label.setText(f"{task.description()}: {text}")

    def _visible(self) -> list[EngineTask]:
        """The engine jobs the user started, oldest first (not the quiet checks, downloads or installs)."""
        return [t for t in self.tasks if isinstance(t, EngineTask) and not t.quiet]

    def _current(self) -> EngineTask | None:
        return next(iter(self._visible()), None)

    def _done(self, task: EngineTask, on_success, on_error=None) -> None:
        if task in self.tasks:
            self.tasks.remove(task)
        if self.closing:  # the plugin was unloaded while the task ran: no widget is left to update
            return
        if task.error is None:
            try:
                on_success(task)
            except Exception as e:  # noqa: BLE001 - styling must not take the dock down
                self.say(f"{task.description()} finished but its results could not be added: {e}", Qgis.Critical)
            for w in task.warnings:
                self.say(w, Qgis.Warning)
        else:
            if task.folder is not None and task.folder.is_dir() and not any(task.folder.iterdir()):
                task.folder.rmdir()  # nothing half-written stays behind
            if on_error is not None:
                on_error(task)
            elif task.error.cancelled:
                self.say(f"{task.description()}: {task.error}", Qgis.Info)
            else:
                self.say(f"{task.description()} failed: {task.error}", Qgis.Critical)
        current = self._current()
        if current is not None:
            self.status_label.setText(f"{current.description()}: {current.last_message or 'running'}")
        elif not task.quiet:
            self.progress.setVisible(False)
            self.cancel_button.setEnabled(False)
            device = (self.engine.main.device_name if self.engine.main else None) or self.device_text
            self.status_label.setText(f"Engine: {device}. Idle.")

    def _no_engine(self, message: str) -> None:
        self.status_label.setText(f"<span style='color:#b00020'>{message}</span>")
        self.create_env_button.setVisible(True)

    def cancel(self) -> None:
        for task in self._visible():
            task.cancel()

    # -- profiles --------------------------------------------------------------------------------------------
    def profile_param(self, box: QComboBox) -> str | None:
        data = box.currentData()
        if data == LOAD_PROFILE:
            return self.profile_files.get(str(id(box)))
        return data

    def detect_later(self, raster_box, label: ProfileLabel, profile_box) -> None:
        """Check the sensor once the event loop is back: while a project is cleared, a layer box briefly passes
        through layers that are being deleted, and those must not be touched."""
        self._pending.add((raster_box, label, profile_box))
        QTimer.singleShot(0, self._detect_pending)

    def _detect_pending(self) -> None:
        pending, self._pending = self._pending, set()
        for args in pending:
            self.detect_profile(*args)

    def detect_profile(self, raster_box, label: ProfileLabel, profile_box) -> None:
        layer = raster_box.currentLayer()
        if layer is None:
            label.show_info(None)
            return
        try:
            path = inputs.raster_path(layer)
        except InputError as e:
            label.show_info(None, str(e))
            return
        label.setText("detecting the sensor…")
        label.problem = None
        params = {"raster": path, "profile": self.profile_param(profile_box)}
        self.start(f"SpecAware: sensor of {layer.name()}", [("info", params)],
                   lambda t: label.show_info(t.result), quiet=True,
                   on_error=lambda t: label.show_info(None, self._profile_problem(str(t.error))))

    @staticmethod
    def _profile_problem(message: str) -> str:
        if "wavelength" in message.lower():
            return f"{message} — choose a sensor profile for this raster in the Profile box."
        return message

    def profile_chosen(self, raster_box, label, profile_box) -> None:
        if profile_box.currentData() == LOAD_PROFILE:
            path, _ = QFileDialog.getOpenFileName(self, "Sensor profile", "", "Sensor profile (*.json)")
            if not path:
                profile_box.setCurrentIndex(0)
                return
            self.profile_files[str(id(profile_box))] = path
        self.detect_profile(raster_box, label, profile_box)

    def _raster_ready(self, box, label: ProfileLabel, what: str) -> str:
        path = inputs.raster_path(box.currentLayer(), what)
        if label.problem:
            raise InputError(f"{box.currentLayer().name()}: {label.problem}")
        return path

    # -- the three workflows ---------------------------------------------------------------------------------
    def classify(self) -> EngineTask | None:
        try:
            raster = self._raster_ready(self.raster_box, self.profile_label, "raster to classify")
            model = self.model_box.currentData()
            if model is None:
                raise InputError("no model chosen: fine-tune one in the Train section or choose unsupervised")
            folder = inputs.run_folder(Path(self.out_widget.filePath() or settings.output_dir()), "classify",
                                       self.raster_box.currentLayer().name())
        except InputError as e:
            self.say(str(e), Qgis.Warning)
            return None
        settings.put("output_dir", self.out_widget.filePath())
        params = {"raster": raster, "out": str(folder), "profile": self.profile_param(self.profile_box)}
        if model == CLUSTERS:
            params["clusters"] = self.clusters_spin.value()
        else:
            params["model"] = model
        name = self.raster_box.currentLayer().name()
        return self.start(f"SpecAware: classify {name}", [("classify", params)],
                          lambda t: self._classified(t, name), folder=folder)

    def _classified(self, task: EngineTask, name: str) -> None:
        r = task.result
        out = Path(r["outputs"][0]).parent if r.get("outputs") else Path(r["report"]).parent
        names, colors = r["classes"]["names"], r["classes"]["colors"]
        layers.add_group(f"SpecAware classes — {name} ({out.name})",
                         [layers.class_layer(out / "classes.tif", names, colors, f"{name} classes"),
                          layers.confidence_layer(out / "confidence.tif", f"{name} confidence")], self.project)
        self.say(f"Classified {name} into {out}", Qgis.Success, r.get("report_html"))

    def finetune(self) -> EngineTask | None:
        try:
            raster = self._raster_ready(self.raster_box, self.profile_label, "raster to train on")
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
        except InputError as e:
            self.say(str(e), Qgis.Warning)
            return None
        colors = layers.category_colors(poly, field)
        params = {"raster": raster, "polygons": polygons, "layer": layer_name, "class_field": field, "out": name,
                  "preset": self.preset_box.currentText(), "head": self.head_box.currentText(),
                  "epochs": self.epochs_spin.value(), "backbone_mode": self.backbone_mode_box.currentText(),
                  "val_fraction": self.val_fraction_spin.value(), "lr": self.lr_spin.value(),
                  "windows_per_epoch": self.windows_spin.value(), "seed": self.seed_spin.value(),
                  "val_polygons": val_path, "colors": colors or None,
                  "profile": self.profile_param(self.profile_box)}
        steps = [("finetune", params), ("models", {"action": "list"})]
        if self.adapt_check.isChecked():  # scene-adaptive MAE first; fine-tuning starts from its backbone
            adapted = str(settings.weights_dir() / f"adapted-{name}.pth")
            steps.insert(0, ("adapt", {"raster": raster, "out": adapted, "minutes": self.adapt_minutes.value(),
                                       "preset": params["preset"], "profile": params["profile"]}))
            steps[1] = ("finetune", lambda done: {**params, "backbone": done[0]["backbone"]})
        return self.start(f"SpecAware: fine-tune {name}", steps, self._trained)

    def _trained(self, task: EngineTask) -> None:
        trained, models = task.results[-2:]
        self.fill_models(models["models"], select=trained["bundle"])
        i = self.model_box.findData(trained["bundle"])
        if i >= 0:
            self.model_box.setCurrentIndex(i)
        v = trained.get("validation") or {}
        score = f": validation OA {v['oa']:.1%}, κ {v['kappa']:.3f}" if v.get("oa") is not None else ""
        self.say(f"Model {trained['name']} trained{score}", Qgis.Success, trained.get("report"))

    def detect_changes(self) -> EngineTask | None:
        mode = self.mode_box.currentData()
        try:
            before = self._raster_ready(self.before_box, self.before_label, "'before' raster")
            after = self._raster_ready(self.after_box, self.after_label, "'after' raster")
            if before == after:
                raise InputError("the 'before' and 'after' rasters are the same file: choose two dates")
            folder = inputs.run_folder(Path(self.out_widget.filePath() or settings.output_dir()), "change",
                                       self.after_box.currentLayer().name())
            steps = []
            params = {"before": before, "after": after, "out": str(folder),
                      "threshold": "otsu" if self.otsu_check.isChecked() else self.threshold_spin.value(),
                      "min_area": self.min_area_spin.value()}
            if mode == "supervised":
                poly = self.change_polygons_box.currentLayer()
                polygons, layer_name = inputs.vector_source(poly, "change sample layer")
                field = self.change_field_box.currentField()
                inputs.class_values(poly, field)
                bundle = f"change-{folder.name}"
                steps.append(("finetune", {"task": "change", "raster": before, "after": after, "polygons": polygons,
                                           "layer": layer_name, "class_field": field, "out": bundle,
                                           "preset": self.preset_box.currentText(),
                                           "epochs": self.epochs_spin.value()}))
                steps.append(("change", lambda done: {**params, "model": done[0]["bundle"]}))
            else:
                if mode == "fromto":
                    params["model"] = self.fromto_model_box.currentData()
                    if not params["model"]:
                        raise InputError("from–to needs a classification model: fine-tune one in the Train section")
                steps.append(("change", params))
        except InputError as e:
            self.say(str(e), Qgis.Warning)
            return None
        return self.start(f"SpecAware: change {self.before_box.currentLayer().name()} → "
                          f"{self.after_box.currentLayer().name()}", steps, self._changed, folder=folder)

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
        layer = QgsVectorLayer(str(src), "change polygons", "ogr")  # already styled; the project holds it open
        opts = QgsVectorFileWriter.SaveVectorOptions()
        opts.driverName = QgsVectorFileWriter.driverForExtension(Path(path).suffix) or "GPKG"
        tmp = Path(path).with_name(f".part-{Path(path).name}")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        err = QgsVectorFileWriter.writeAsVectorFormatV3(layer, str(tmp), self.project.transformContext(), opts)
        if err[0] != QgsVectorFileWriter.NoError:
            self.say(f"could not write {path}: {err[1]}", Qgis.Critical)
            return None
        for sibling in tmp.parent.glob(f"{tmp.stem}.*"):  # a Shapefile is several files
            sibling.replace(Path(path).with_suffix(sibling.suffix))
        self.say(f"change polygons exported to {path}", Qgis.Success)
        return path

    # -- engine environment, weights, diagnostics --------------------------------------------------------------
    def create_environment(self) -> None:
        from .environment import create_managed_environment

        class CreateEnv(QgsTask):
            def __init__(self, dock):
                super().__init__("SpecAware: create engine environment", QgsTask.CanCancel)
                self.dock, self.error, self.python = dock, None, None

            def run(self):
                try:
                    self.python = create_managed_environment(lambda f, m: self.setProgress(100 * f),
                                                             self.isCanceled)
                    return True
                except Exception as e:  # noqa: BLE001
                    self.error = e
                    return False

            def finished(self, ok):
                if self.dock.closing:
                    return
                if ok:
                    self.dock.engine.environment = None
                    self.dock.refresh_engine()
                else:
                    self.dock.say(f"could not create the engine environment: {self.error}", Qgis.Critical)
        task = CreateEnv(self)
        self.tasks.append(task)
        task.taskCompleted.connect(lambda: self.tasks.remove(task))
        task.taskTerminated.connect(lambda: self.tasks.remove(task))
        QgsApplication.taskManager().addTask(task)

    def get_weights(self, path: str | None = None) -> QgsTask:
        """Download the official weights (resumable) or check a file the user has; then select them."""
        task = WeightsTask(self.url_edit.text().strip() or settings.WEIGHTS_URL, settings.weights_dir(), self.engine,
                           path)
        task.on_done = self._weights_done
        self.tasks.append(task)
        QgsApplication.taskManager().addTask(task)
        return task

    def _weights_done(self, task) -> None:
        if task in self.tasks:
            self.tasks.remove(task)
        if self.closing:
            return
        if task.error:
            self.say(task.error, Qgis.Critical)
            return
        settings.put("checkpoint", task.path)
        self.checkpoint_widget.blockSignals(True)
        self.checkpoint_widget.setFilePath(task.path)
        self.checkpoint_widget.blockSignals(False)
        s = task.summary
        self.say(f"SpecAware weights ready: {task.path} (E={s['embed_dim']}, depth {s['depth']}, "
                 f"{s['parameters'] / 1e6:.1f} M parameters)", Qgis.Success)

    def diagnostics(self) -> EngineTask:
        def copy(task):
            from osgeo import gdal
            d = task.result
            text = json.dumps({"qgis": Qgis.QGIS_VERSION, "gdal (QGIS)": gdal.__version__,
                               "engine environment": self.engine.environment.message, **d}, indent=1)
            QApplication.clipboard().setText(text)
            self.say("diagnostics copied to the clipboard", Qgis.Success)
        return self.start("SpecAware: diagnostics", [("diagnostics", {})], copy, quiet=True)

    def cleanup(self) -> None:
        """Cancel what runs; called by the plugin's unload."""
        self.closing = True
        for task in list(self.tasks):
            task.cancel()
