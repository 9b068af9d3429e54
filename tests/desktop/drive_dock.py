"""Runs inside the real QGIS desktop app (`qgis --code`): drives the SpecAware dock like an analyst would.

Fine-tune on the project's polygons, classify the scene, check the styled result, then wait for the test to
take its screenshot, unload the plugin, check it left nothing behind, and quit. Progress goes to the JSON
file named by SPECAWARE_E2E_STATUS.
"""
import json
import os
import time
import traceback
from pathlib import Path

from qgis.core import QgsApplication, QgsPalettedRasterRenderer, QgsProject
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QAction, QDockWidget
from qgis.utils import iface, plugins, unloadPlugin

STATUS = Path(os.environ["SPECAWARE_E2E_STATUS"])
SHOT_TAKEN = STATUS.with_name("screenshot.done")
state = {"stage": "started", "log": []}
handles = {}  # live objects, kept out of the JSON status
steps = []


def report(stage: str, **facts) -> None:
    state.update(facts, stage=stage)
    state["log"].append(f"{time.strftime('%H:%M:%S')} {stage}")
    tmp = STATUS.with_suffix(".part")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(STATUS)


def layer(name):
    found = QgsProject.instance().mapLayersByName(name)
    if not found:
        raise RuntimeError(f"the project has no layer {name!r}")
    return found[0]


def bar_text() -> str:
    """What the message bar says now, for a failure report."""
    return " | ".join(i.text() for i in iface.messageBar().items())


def click(button) -> None:
    QTest.mouseClick(button, Qt.LeftButton)


def open_dock():
    iface.mainWindow().setGeometry(0, 0, 1600, 1000)  # Xvfb has no window manager to maximise it
    plugin = plugins["specaware_qgis"]
    plugin.action.trigger()  # the toolbar button
    handles["plugin"] = plugin
    report("dock open")
    return True


def dock():
    return handles["plugin"].dock


def engine_ready():
    d = dock()
    if d.queue.tasks:
        return False
    d.classify_section.raster.box.setLayer(layer("scene"))
    d.train_section.polygons_box.setLayer(layer("training polygons"))
    report("engine ready", status=d.status_label.text())
    return True


def start_finetune():
    d = dock()
    sensor, train = d.classify_section.raster.label, d.train_section
    if sensor.info is None:
        if sensor.problem:
            raise RuntimeError(sensor.problem)
        return False
    train.field_box.setField("class")
    train.name_edit.setText("e2e-demo")
    train.epochs_spin.setValue(int(os.environ.get("SPECAWARE_E2E_EPOCHS", "5")))
    d.classify_section.out_widget.setFilePath(os.environ["SPECAWARE_E2E_OUT"])
    click(train.finetune_button)
    if not d.queue.tasks:
        raise RuntimeError("Fine-tune started nothing: " + bar_text())
    report("fine-tuning", sensor=sensor.text())
    return True


def start_classify():
    d = dock()
    if d.queue.tasks:
        return False
    classify = d.classify_section
    if not classify.model_box.currentText().startswith("e2e-demo"):
        raise RuntimeError(f"the new model is not selected: {classify.model_box.currentText()!r}; messages: "
                           + bar_text())
    click(classify.classify_button)
    report("classifying", model=classify.model_box.currentText())
    return True


def check_result():
    d = dock()
    if d.queue.tasks:
        return False
    root = QgsProject.instance().layerTreeRoot()
    group = next(g for g in root.children() if g.name().startswith("SpecAware classes"))
    for other in root.children():  # the screenshot shows the class map; the change layers stay listed
        if other.name().startswith("SpecAware change"):
            other.setItemVisibilityChecked(False)
    classes = group.children()[0].layer()
    renderer = classes.renderer()
    if not isinstance(renderer, QgsPalettedRasterRenderer):
        raise RuntimeError(f"the class layer has a {renderer.type()} renderer")
    iface.setActiveLayer(classes)
    iface.mapCanvas().setExtent(classes.extent())
    iface.mapCanvas().refresh()
    report("ready for screenshot", group=group.name(), layer=classes.name(), source=classes.source(),
           classes=[[c.value, c.label, c.color.name()] for c in renderer.classes()],
           messages=[i.text() for i in iface.messageBar().items()])
    return True


def start_change():
    """The Change section: the scene against a second date, unsupervised, then the change polygons exported."""
    d = dock()
    if d.queue.tasks:
        return False
    change = d.change_section
    change.before.box.setLayer(layer("scene"))
    change.after.box.setLayer(layer("scene (second date)"))
    if change.before.label.info is None or change.after.label.info is None:
        return False
    change.mode_box.setCurrentIndex(change.mode_box.findData("unsupervised"))
    change.min_area_spin.setValue(50.0)
    click(change.detect_button)
    if not d.queue.tasks:
        raise RuntimeError("Detect changes started nothing: " + bar_text())
    report("detecting changes")
    return True


def export_change():
    d = dock()
    if d.queue.tasks:
        return False
    change = d.change_section
    if not change.export_button.isEnabled():
        raise RuntimeError("no change result: " + bar_text())
    path = change.export_change_polygons(os.environ["SPECAWARE_E2E_OUT"] + "/exported_changes.gpkg")  # the button's
    group = QgsProject.instance().layerTreeRoot().children()[0]  # file dialog, answered with this path
    report("change exported", exported=path, change_group=group.name(),
           change_layers=[c.layer().name() for c in group.children()])
    return True


def unload():
    if not SHOT_TAKEN.exists():
        return False
    unloadPlugin("specaware_qgis")
    report("unloading")
    return True


def check_unloaded():
    """One tick later, so that deleteLater has run: no action, dock or provider may remain."""
    window = iface.mainWindow()
    actions = [a.text() for a in window.findChildren(QAction) if a.objectName() == "SpecAwareAction"]
    docks = [w.objectName() for w in window.findChildren(QDockWidget) if w.objectName() == "SpecAwareDock"]
    menus = [a.text() for a in iface.rasterMenu().actions() if "SpecAware" in a.text()]
    provider = QgsApplication.processingRegistry().providerById("specaware")
    report("unloaded", leftovers={"actions": actions, "docks": docks, "menus": menus, "provider": provider is not None})
    return True


def quit_qgis():
    QgsProject.instance().setDirty(False)  # no "save the project?" question
    QTimer.singleShot(500, lambda: QgsApplication.exit(0))


def tick():
    try:
        if steps and steps[0]():
            steps.pop(0)
        if not steps:
            report("done")
            quit_qgis()
            return
    except Exception:  # noqa: BLE001 - the test reads the failure from the status file
        report("failed", error=traceback.format_exc())
        quit_qgis()
        return
    QTimer.singleShot(500, tick)


steps.extend([open_dock, engine_ready, start_finetune, start_classify, start_change, export_change, check_result,
              unload, check_unloaded])
report("script loaded")
QTimer.singleShot(1000, tick)
