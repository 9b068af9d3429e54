"""Widgets the dock's sections share: form helpers, layer boxes, the model box, and a raster choice that shows
what the engine makes of the raster (sensor, bands, GSD) and which sensor profile to use."""
from __future__ import annotations

from qgis.core import QgsMapLayerProxyModel
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import QObject, QTimer
from qgis.PyQt.QtWidgets import QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QWidget

from .. import inputs
from ..inputs import InputError
from ..task_queue import TaskQueue

CLUSTERS = "__clusters__"  # the model box's entry for unsupervised clusters
LOAD_PROFILE = "__file__"  # the profile box's entry for a profile from a JSON file
SAMPLE_LAYERS = QgsMapLayerProxyModel.PolygonLayer | QgsMapLayerProxyModel.PointLayer


def form(group: QWidget) -> QFormLayout:
    """A form whose fields take the section's whole width."""
    layout = QFormLayout(group)
    layout.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
    return layout


def row(*widgets) -> QWidget:
    """Widgets side by side in one form row."""
    w = QWidget()
    layout = QHBoxLayout(w)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return w


def layer_box(filters=QgsMapLayerProxyModel.RasterLayer) -> QgsMapLayerComboBox:
    """A layer box of the project's layers, starting empty (nothing is chosen for the user)."""
    box = QgsMapLayerComboBox()
    box.setFilters(filters)
    box.setAllowEmptyLayer(True)
    box.setLayer(None)
    return box


def choice_box(words: list[str]) -> QComboBox:
    """A box of the engine's words (a list from resources/vocabulary.json), the first one chosen."""
    box = QComboBox()
    box.addItems(words)
    return box


class ModelBox(QComboBox):
    """The fine-tuned models from the engine's model list, optionally with unsupervised clusters last."""

    def __init__(self, with_clusters: bool = False):
        super().__init__()
        self.with_clusters = with_clusters

    def fill(self, models: list[dict], select: str | None = None) -> None:
        """List the undamaged models; keep the current one selected unless `select` names another."""
        keep = select or self.currentData()
        self.clear()
        for m in models:
            if not m.get("damaged"):
                miou = f", val mIoU {m['val_miou']:.2f}" if m.get("val_miou") is not None else ""
                self.addItem(f"{m['name']} ({len(m.get('classes') or [])} classes{miou})", m["path"])
        if self.with_clusters:
            self.addItem("Unsupervised (K clusters)", CLUSTERS)
        i = self.findData(keep)
        self.setCurrentIndex(i if i >= 0 else 0)


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


class ProfileBox(QComboBox):
    """The sensor profile for a raster: from its metadata, a known sensor, or a JSON file the user picks."""

    def __init__(self):
        super().__init__()
        self.file: str | None = None  # the JSON file behind LOAD_PROFILE
        self.addItem("Detect from the raster's metadata", None)
        self.addItem("Load a profile from a JSON file…", LOAD_PROFILE)

    def add_profiles(self, profiles: list[dict]) -> None:
        """The engine's known sensors, before the JSON-file entry."""
        for p in profiles:
            if self.findData(p["key"]) < 0:
                self.insertItem(self.count() - 1, f"{p['name']} ({p['bands']} bands)", p["key"])

    def param(self) -> str | None:
        """The engine's `profile` parameter: a sensor key, a JSON file, or None for the raster's metadata."""
        return self.file if self.currentData() == LOAD_PROFILE else self.currentData()


class RasterChoice(QObject):
    """A raster layer box, the sensor the engine found in it, and the profile box; the sensor is checked in the
    background whenever the layer or the profile changes."""

    def __init__(self, queue: TaskQueue, parent: QObject | None = None):
        super().__init__(parent)
        self.queue = queue
        self.box = layer_box()
        self.label = ProfileLabel()
        self.profile = ProfileBox()
        self.pending = False  # a sensor check waits for the event loop
        self.box.layerChanged.connect(lambda _: self.detect_later())
        self.profile.activated.connect(lambda _: self.profile_chosen())

    def detect_later(self) -> None:
        """Check the sensor once the event loop is back: while a project is cleared, a layer box briefly passes
        through layers that are being deleted, and those must not be touched."""
        if not self.pending:
            self.pending = True
            QTimer.singleShot(0, self._detect_pending)

    def _detect_pending(self) -> None:
        if self.pending:
            self.pending = False
            self.detect()

    def detect(self) -> None:
        """Ask the engine what it makes of the chosen raster with the chosen profile (a quiet background check)."""
        layer = self.box.currentLayer()
        if layer is None:
            self.label.show_info(None)
            return
        try:
            path = inputs.raster_path(layer)
        except InputError as e:
            self.label.show_info(None, str(e))
            return
        self.label.setText("detecting the sensor…")
        self.label.problem = None
        self.queue.start(f"SpecAware: sensor of {layer.name()}", [("info", {"raster": path,
                                                                               "profile": self.profile.param()})],
                         lambda t: self.label.show_info(t.result), quiet=True,
                         on_error=lambda t: self.label.show_info(None, self._problem(str(t.error))))

    @staticmethod
    def _problem(message: str) -> str:
        if "wavelength" in message.lower():
            return f"{message} — choose a sensor profile for this raster in the Profile box."
        return message

    def profile_chosen(self) -> None:
        if self.profile.currentData() == LOAD_PROFILE:
            path, _ = QFileDialog.getOpenFileName(self.profile, "Sensor profile", "", "Sensor profile (*.json)")
            if not path:
                self.profile.setCurrentIndex(0)
                return
            self.profile.file = path
        self.detect()

    def layer_name(self) -> str:
        return self.box.currentLayer().name()

    def ready_path(self, what: str) -> str:
        """The chosen raster's file for the engine; InputError when none is chosen or its sensor is unusable."""
        path = inputs.raster_path(self.box.currentLayer(), what)
        if self.label.problem:
            raise InputError(f"{self.layer_name()}: {self.label.problem}")
        return path
