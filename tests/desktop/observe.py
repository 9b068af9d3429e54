"""Runs inside the real QGIS desktop app (`qgis --code`) during the end-to-end test, and only watches: four times a
second it writes what an analyst would see (windows, menus and popups with their screen positions, the dock's
inputs, the map canvas, layers, message-bar texts) to the JSON file named by SPECAWARE_E2E_STATUS, so that the
test can aim its X mouse clicks and keystrokes and check their effect. It drives nothing.

At the test's request (a `command` file beside the status) it unloads the plugin and reports what is left of it,
then quits QGIS without questions: harness work after the analyst's session, not part of it.
"""
import json
import os
import time
import traceback
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsProject
from qgis.gui import QgsScrollArea
from qgis.PyQt.QtCore import QPoint, QRect, QTimer
from qgis.PyQt.QtWidgets import (QAbstractItemView, QAbstractSpinBox, QAction, QApplication, QComboBox, QDockWidget,
                                 QFileDialog, QLabel, QLineEdit, QMenu, QPushButton, QWidget)
from qgis.utils import iface, unloadPlugin

STATUS = Path(os.environ["SPECAWARE_E2E_STATUS"])
COMMAND = STATUS.with_name("command")
messages: list[str] = []  # every message-bar text shown, in order
logged: list[str] = []  # warnings and errors in QGIS's message log (Python errors among them)
state = {"errors": []}


def rect(widget: QWidget, part=None, clip: QRect | None = None) -> list[int] | None:
    """A shown widget (or `part` of it, a QRect in its coordinates) on the screen, cut to `clip` (a screen
    rectangle: the dock's scrolled view): [x, y, w, h], or None when nothing of it is on screen."""
    if widget is None or not widget.isVisible():
        return None
    r = widget.rect() if part is None else part
    on_screen = QRect(widget.mapToGlobal(r.topLeft()), r.size())
    if clip is not None:
        on_screen = on_screen.intersected(clip)
    if on_screen.isEmpty():
        return None
    return [on_screen.x(), on_screen.y(), on_screen.width(), on_screen.height()]


def text_of(w: QWidget) -> str:
    if isinstance(w, QComboBox):
        return w.currentText()
    if isinstance(w, QAbstractSpinBox):
        return w.text()
    if isinstance(w, (QLabel, QLineEdit, QPushButton)):
        return w.text()
    line = w.findChild(QLineEdit)
    return line.text() if line is not None else ""


def dock_state() -> dict | None:
    dock = iface.mainWindow().findChild(QDockWidget, "SpecAwareDock")
    if dock is None or not dock.isVisible():
        return None
    scroll = dock.findChild(QgsScrollArea)
    body, bar, view = scroll.widget(), scroll.verticalScrollBar(), scroll.viewport()
    in_view = QRect(view.mapToGlobal(QPoint(0, 0)), view.size())
    widgets = {}
    for w in dock.findChildren(QWidget):
        if w.objectName().startswith("specaware_"):
            inside = body.isAncestorOf(w)
            entry = {"rect": rect(w, clip=in_view if inside else None), "text": text_of(w), "enabled": w.isEnabled(),
                     "y": w.mapTo(body, QPoint(0, 0)).y() if inside else None}
            if isinstance(w, QComboBox):
                entry["items"] = [w.itemText(i) for i in range(w.count())]
                if w.isEditable():
                    entry["edit_rect"] = rect(w.lineEdit(), clip=in_view)
            widgets[w.objectName()[len("specaware_"):]] = entry
    return {"rect": rect(dock), "widgets": widgets, "tasks": len(dock.queue.tasks),
            "scroll": {"value": bar.value(), "max": bar.maximum(), "view": rect(view)}}


def popup_state() -> dict | None:
    """An open menu or a combo box's list: its entries and where they are."""
    popup = QApplication.activePopupWidget()
    if popup is None:
        return None
    if isinstance(popup, QMenu):
        return {"kind": "menu", "title": popup.title(),
                "items": {a.text().replace("&", ""): rect(popup, popup.actionGeometry(a))
                          for a in popup.actions() if not a.isSeparator()}}
    view = popup.findChild(QAbstractItemView)
    if view is None:
        return {"kind": type(popup).__name__, "items": {}}
    model = view.model()
    items = {}
    for row in range(model.rowCount()):
        index = model.index(row, view.modelColumn() if hasattr(view, "modelColumn") else 0)
        items[str(model.data(index))] = rect(view.viewport(), view.visualRect(index))
    return {"kind": "list", "items": items}


def modal_state() -> dict | None:
    modal = QApplication.activeModalWidget()
    if modal is None:
        return None
    out = {"title": modal.windowTitle(), "class": type(modal).__name__, "rect": rect(modal)}
    if isinstance(modal, QFileDialog):
        name = modal.findChild(QLineEdit, "fileNameEdit")
        out.update(file_name=name.text() if name else None, file_name_rect=rect(name) if name else None)
    return out


def canvas_state() -> dict:
    canvas = iface.mapCanvas()
    e = canvas.extent()
    tool = canvas.mapTool()
    return {"rect": rect(canvas), "extent": [e.xMinimum(), e.yMinimum(), e.xMaximum(), e.yMaximum()],
            "units_per_pixel": canvas.mapUnitsPerPixel(), "scale": canvas.scale(), "crs": canvas.mapSettings()
            .destinationCrs().authid(), "tool": type(tool).__name__ if tool else None,
            "size": [canvas.width(), canvas.height()], "drawing": canvas.isDrawing()}


def layers_state() -> list[dict]:
    out = []
    root = QgsProject.instance().layerTreeRoot()
    for layer in QgsProject.instance().mapLayers().values():
        node = root.findLayer(layer.id())
        entry = {"name": layer.name(), "source": layer.source(), "visible": bool(node and node.isVisible())}
        if hasattr(layer, "featureCount"):
            entry.update(features=layer.featureCount(), editable=layer.isEditable(),
                         classes=sorted({str(f[layer.fields().indexOf("class")]) for f in layer.getFeatures()})
                         if layer.fields().indexOf("class") >= 0 else None)
        out.append(entry)
    return out


def menubar_state() -> dict:
    bar = iface.mainWindow().menuBar()
    return {a.text().replace("&", ""): rect(bar, bar.actionGeometry(a)) for a in bar.actions() if a.isVisible()}


def write() -> None:
    window = iface.mainWindow()
    state.update(time=time.time(), window={"title": window.windowTitle(), "rect": rect(window)},
                 menubar=menubar_state(), popup=popup_state(), modal=modal_state(), canvas=canvas_state(),
                 layers=layers_state(), dock=dock_state(), messages=messages, log=logged,
                 bar=[i.text() for i in iface.messageBar().items()])
    tmp = STATUS.with_suffix(".part")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(STATUS)


def leftovers() -> dict:
    """What is left of the plugin after unloading: no action, dock, menu entry or provider may remain."""
    window = iface.mainWindow()
    return {"actions": [a.text() for a in window.findChildren(QAction) if a.objectName() == "SpecAwareAction"],
            "docks": [w.objectName() for w in window.findChildren(QDockWidget) if w.objectName() == "SpecAwareDock"],
            "menus": [a.text() for a in iface.rasterMenu().actions() if "SpecAware" in a.text()],
            "provider": QgsApplication.processingRegistry().providerById("specaware") is not None}


def obey() -> None:
    command = COMMAND.read_text().strip() if COMMAND.exists() else ""
    if command == "unload" and "unloaded" not in state:
        unloadPlugin("specaware_qgis")
        state["unloaded"] = "pending"
    elif command == "unload" and state["unloaded"] == "pending":  # a tick later: deleteLater has run
        state["unloaded"] = leftovers()
    elif command == "quit":
        QgsProject.instance().setDirty(False)  # no "save the project?" question
        QgsApplication.exit(0)


def tick() -> None:
    try:
        obey()
        write()
    except Exception:  # noqa: BLE001 - the test reads the failure from the status file
        state["errors"].append(traceback.format_exc())
    QTimer.singleShot(250, tick)


iface.messageBar().widgetAdded.connect(lambda _: messages.append(iface.messageBar().currentItem().text()))
QgsApplication.messageLog().messageReceived.connect(
    lambda text, tag, level: logged.append(f"{tag}: {text}") if level >= Qgis.Warning else None)
QTimer.singleShot(500, tick)
