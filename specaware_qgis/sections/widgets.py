"""Widgets the dock's sections share: form helpers, layer boxes, the model box, a raster choice that shows
what the engine makes of the raster (sensor, bands, GSD) and which sensor profile to use, and the guard that keeps
the mouse wheel from changing inputs the user has not focused."""
from __future__ import annotations

from typing import Callable

from qgis.core import QgsMapLayerProxyModel, QgsProject
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import QEvent, QObject, Qt, QTimer
from qgis.PyQt.QtWidgets import (QAbstractSpinBox, QApplication, QComboBox, QFileDialog, QFormLayout, QHBoxLayout,
                                 QLabel, QScrollArea, QWidget)

from .. import inputs
from ..inputs import InputError
from ..task_queue import TaskQueue
from .pickers import RasterBox

CLUSTERS = "__clusters__"  # the model box's entry for unsupervised clusters
TASK_ROLE = Qt.UserRole + 1  # a model box item's training task (pixels, cells, change)
LOAD_PROFILE = "__file__"  # the profile box's entry for a profile from a JSON file
SAMPLE_LAYERS = QgsMapLayerProxyModel.PolygonLayer | QgsMapLayerProxyModel.PointLayer


def form(group: QWidget) -> QFormLayout:
    """A form whose fields take the section's whole width and go below their label when the dock is narrow."""
    layout = QFormLayout(group)
    layout.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
    layout.setRowWrapPolicy(QFormLayout.WrapLongRows)
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


class WheelGuard(QObject):
    """Wheel events over a box or spin box that the user has not focused scroll the dock instead of changing the
    value (QgsScrollArea alone only does so for a moment after the dock itself scrolled)."""

    def __init__(self, scroll: QScrollArea):
        super().__init__(scroll)
        self.scroll = scroll
        for w in scroll.widget().findChildren(QWidget):
            if isinstance(w, (QComboBox, QAbstractSpinBox)):
                w.setFocusPolicy(Qt.StrongFocus)  # not Qt.WheelFocus: the wheel alone gives no focus
                w.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Wheel and not obj.hasFocus():
            QApplication.sendEvent(self.scroll.viewport(), event)
            return True
        return False


class ModelBox(QComboBox):
    """The fine-tuned models of some tasks from the engine's model list; optionally a first entry that is no model
    (`first`: its text) and unsupervised clusters last."""

    def __init__(self, tasks: tuple[str, ...], with_clusters: bool = False, first: str | None = None):
        super().__init__()
        self.tasks, self.with_clusters, self.first = tasks, with_clusters, first

    def fill(self, models: list[dict], select: str | None = None) -> None:
        """List the undamaged models of the box's tasks; choose `select` when it is one of them, else keep the
        current choice."""
        keep = self.currentData()
        self.blockSignals(True)  # one currentIndexChanged at the end, when every item knows its task
        self.clear()
        if self.first:
            self.addItem(self.first, None)
        for m in models:
            if not m.get("damaged") and m.get("task", "pixels") in self.tasks:
                miou = f", val mIoU {m['val_miou']:.2f}" if m.get("val_miou") is not None else ""
                self.addItem(f"{m['name']} ({len(m.get('classes') or [])} classes{miou})", m["path"])
                self.setItemData(self.count() - 1, m.get("task", "pixels"), TASK_ROLE)
        if self.with_clusters:
            self.addItem("Unsupervised (K clusters)", CLUSTERS)
        found = [i for i in (self.findData(w) if w is not None else -1 for w in (select, keep)) if i >= 0]
        self.setCurrentIndex(found[0] if found else 0)
        self.blockSignals(False)
        self.currentIndexChanged.emit(self.currentIndex())

    def task(self) -> str | None:
        """The chosen model's training task (pixels, cells, change); None for clusters or no model."""
        return self.currentData(TASK_ROLE)


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
    """A raster box (likely hyperspectral rasters first, the best one chosen), the sensor the engine found in it,
    and the profile box; the sensor is checked in the background whenever the layer, the profile or the engine
    changes."""

    def __init__(self, queue: TaskQueue, project: QgsProject, parent: QObject | None = None,
                 avoid: Callable[[], object] = lambda: None):
        super().__init__(parent)
        self.queue = queue
        self.label = ProfileLabel()
        self.profile = ProfileBox()
        self.pending = False  # a sensor check waits for the event loop
        self.box = RasterBox(project, avoid)
        self.box.layerChanged.connect(lambda _: self.detect_later())
        self.profile.activated.connect(lambda _: self.profile_chosen())
        if self.box.currentLayer() is not None:
            self.detect_later()

    def add_profiles(self, profiles: list[dict]) -> None:
        """The engine's sensor profiles: offered in the profile box, and rasters of their band counts listed
        first."""
        self.profile.add_profiles(profiles)
        self.box.set_known_band_counts({int(p["bands"]) for p in profiles})

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
        asked = (layer.id(), self.profile.param())
        self.queue.start(f"SpecAware: sensor of {layer.name()}", [("info", {"raster": path, "profile": asked[1]})],
                         lambda t: self._answer(asked, t.result), quiet=True,
                         on_error=lambda t: self._answer(asked, None, self._problem(str(t.error))))

    def _answer(self, asked: tuple, info: dict | None, problem: str | None = None) -> None:
        """Show a sensor check's answer unless another layer or profile was chosen since it was asked."""
        if asked == (self.box.currentData(), self.profile.param()):
            self.label.show_info(info, problem)

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
