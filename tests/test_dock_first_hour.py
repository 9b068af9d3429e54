"""The stumbles of an analyst's first hour with the dock, each fixed and held here in a real QgsApplication with
real layers and the real engine worker: the status line, the sensor line after the engine changes, the mouse
wheel, a narrow dock, the raster pickers, the Train section's task choice and drawing training data."""
import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import ogr

from scenes import NORTH_UP, labelled_raster, pixel_to_map, stripe_polygons, write_polygons
from test_engine_io import WL20, make_tif, spectra
from conftest import wait_for
from test_plugin import add_layers, finished, messages

pytestmark = pytest.mark.usefixtures("qgis_app", "slot_errors")


@pytest.fixture
def stripes(tmp_path):
    raster, truth = labelled_raster(tmp_path / "scene.tif")
    return raster, truth


def test_status_line_names_the_engine_once(dock):
    text = dock.status_label.text()
    assert text.startswith("Engine: ") and text.lower().count("engine") == 1, text
    assert "torch" in text and text.endswith("Idle.")


def only_the_configured_python(configured):
    """The engine search restricted to the Python set in the settings (this process's Python has torch too)."""
    from specaware_qgis.environment import SOURCES, EngineEnvironment, probe
    found, why = probe(configured) if configured else (None, "no engine Python set")
    if not found:
        return EngineEnvironment(None, "none", f"No Python with PyTorch was found for the SpecAware engine ({why}).")
    return EngineEnvironment(configured, "configured", f"{SOURCES['configured']} ({configured})", found["torch"])


def test_sensor_line_is_checked_again_when_the_engine_is_set(make_dock, stripes):
    from specaware_qgis import settings
    from specaware_qgis.engine_process import Engine
    before = settings.get("engine_python")
    settings.put("engine_python", "")
    try:
        d = make_dock(engine=Engine(search=only_the_configured_python))
        add_layers(stripes[0])
        sensor = d.classify_section.raster.label
        wait_for(lambda: sensor.problem is not None, what="the sensor check without an engine")
        assert "No Python with PyTorch" in sensor.problem
        d.engine_section.python_widget.setFilePath(sys.executable)  # what typing or picking the path does
        wait_for(lambda: sensor.info is not None, what="the sensor check with the new engine")
        assert sensor.problem is None and sensor.info["bands"] == 20 and "420–2400 nm" in sensor.text()
    finally:
        settings.put("engine_python", before)


def scroll_area(d):
    from qgis.gui import QgsScrollArea
    return d.findChild(QgsScrollArea)


def wheel(widget, steps: int = -1):
    """A real wheel event over the middle of `widget`, as the mouse sends it (negative: scroll down)."""
    from qgis.PyQt.QtCore import QPoint, QPointF, Qt
    from qgis.PyQt.QtGui import QWheelEvent
    from qgis.PyQt.QtWidgets import QApplication
    centre = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0), QPoint(0, 120 * steps),
                        Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def shown(d, width=360, height=420):
    """The dock on screen at `width` px with every section open."""
    from qgis.PyQt.QtWidgets import QApplication
    for section in (d.classify_section, d.train_section, d.change_section, d.engine_section):
        section.setCollapsed(False)
    d.resize(width, height)
    d.show()
    for _ in range(5):
        QApplication.processEvents()
    return d


def test_wheel_over_an_unfocused_box_scrolls_the_dock_and_never_changes_it(dock):
    shown(dock)
    train, bar = dock.train_section, scroll_area(dock).verticalScrollBar()
    head, epochs = train.head_box, train.epochs_spin
    assert bar.maximum() > 0, "the dock must be taller than its view for this test"
    start = bar.value()
    for box in (head, epochs, train.preset_box):
        wheel(box, -1)
    assert head.currentText() == "linear" and epochs.value() == 40 and train.preset_box.currentText() == "tiny"
    assert bar.value() > start, "the wheel scrolls the dock instead"


def test_dock_fits_and_elides_at_360_px(dock, tmp_path):
    from qgis.PyQt.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit
    long_name = "ang20231102t183000_rfl_v2_corrected_orthorectified_flightline_with_a_very_long_name"
    layer, _ = add_layers(make_tif(tmp_path / "scene.tif", spectra(20, 8, 8), gt=NORTH_UP, wavelengths=WL20))
    layer.setName(long_name)
    shown(dock, 360, 900)
    viewport = scroll_area(dock).viewport()
    body = scroll_area(dock).widget()
    assert body.minimumSizeHint().width() <= viewport.width()
    cut = []
    for w in body.findChildren((QComboBox, QAbstractSpinBox, QLineEdit, QAbstractButton)):
        if w.isVisibleTo(dock) and w.mapTo(viewport, w.rect().topRight()).x() > viewport.width():
            cut.append(f"{type(w).__name__} {getattr(w, 'text', lambda: '')()!r}")
    assert cut == [], f"cut off at the dock's right edge: {cut}"
    box = dock.classify_section.raster.box
    assert box.currentText() == long_name and box.width() < box.fontMetrics().horizontalAdvance(long_name)


def test_raster_pickers_list_spectral_rasters_first_and_choose_them(dock, tmp_path):
    """Class maps and confidence layers (single band) come last; the before and after boxes choose two dates."""
    one_band = np.ones((1, 8, 8), np.float32)
    for name, cube, wl in (("a classes", one_band, None), ("b rgb", np.ones((3, 8, 8), np.float32), None),
                           ("c confidence", one_band, None), ("y first date", spectra(20, 8, 8), WL20),
                           ("z second date", spectra(20, 8, 8), WL20),
                           ("k aviris classic", np.ones((224, 4, 4), np.float32), None)):
        add_layers(make_tif(tmp_path / f"{name.replace(' ', '_')}.tif", cube, gt=NORTH_UP, wavelengths=wl))[0] \
            .setName(name)
    box = dock.classify_section.raster.box
    order = [box.itemText(i) for i in range(box.count())]
    # 224 bands without wavelengths: AVIRIS-Classic's band count, a profile the engine can assign
    assert order == ["k aviris classic", "y first date", "z second date", "b rgb", "a classes", "c confidence"]
    assert box.currentText() == "y first date", "the first spectral raster added was chosen, and stays chosen"
    change = dock.change_section
    assert change.before.box.currentText() == "y first date"
    assert change.after.box.currentText() == "z second date", "the after date differs from the before date"


def test_train_task_cells_trains_a_cell_model_that_classify_uses(dock, stripes, tmp_path):
    from qgis.core import QgsCategorizedSymbolRenderer, QgsProject, QgsVectorLayer
    raster, _ = stripes
    add_layers(raster, write_polygons(tmp_path / "cells.gpkg", stripe_polygons()))  # one class per polygon
    train = dock.train_section
    train.task_box.setCurrentIndex(train.task_box.findData("cells"))
    assert not train.head_box.isEnabled()
    train.polygons_box.setLayer(QgsProject.instance().mapLayersByName("training")[0])
    train.field_box.setField("class")
    train.name_edit.setText("dock-cells")
    train.epochs_spin.setValue(3)
    sensor = dock.classify_section.raster.label
    wait_for(lambda: sensor.info is not None, what="the sensor check")
    task = finished(dock, train.finetune(), "fine-tune a cell model")
    assert task.error is None, task.error
    assert [m["task"] for m in task.results[-1]["models"] if m["name"] == "dock-cells"] == ["cells"]
    classify = dock.classify_section
    assert classify.model_box.currentText().startswith("dock-cells") and classify.cell_spin.isEnabled()
    assert "Classify now labels grid cells" in messages(dock)
    classify.out_widget.setFilePath(str(tmp_path / "out"))
    classify.cell_spin.setValue(16)
    task = finished(dock, classify.classify(), "classify cells")
    assert task.error is None, task.error
    layer = QgsProject.instance().layerTreeRoot().children()[0].children()[0].layer()
    assert isinstance(layer, QgsVectorLayer) and layer.featureCount() == 9
    assert isinstance(layer.renderer(), QgsCategorizedSymbolRenderer)
    assert {c.value() for c in layer.renderer().categories()} == {"grass", "sand", "water"}


def test_train_task_change_samples_needs_two_dates(dock, stripes):
    add_layers(stripes[0])
    train = dock.train_section
    train.task_box.setCurrentIndex(train.task_box.findData("change"))
    assert train.finetune() is None
    assert "'after' raster (Change section)" in messages(dock) or "need two dates" in messages(dock)


def draw(layer, pixel_box, gt=NORTH_UP):
    """A feature as QGIS's Add Feature tool makes it: geometry from the clicks, attributes from the defaults."""
    from qgis.core import QgsGeometry, QgsPointXY, QgsVectorLayerUtils
    x0, y0, x1, y1 = pixel_box
    ring = [QgsPointXY(*pixel_to_map(gt, x, y)) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
    feature = QgsVectorLayerUtils.createFeature(layer, QgsGeometry.fromPolygonXY([ring]))
    assert layer.addFeature(feature)


def test_new_training_layer_then_draw_three_classes_without_typing_attributes(dock, stripes, tmp_path):
    from qgis.core import QgsCategorizedSymbolRenderer, QgsWkbTypes
    raster, _ = stripes
    add_layers(raster)
    dock.classify_section.out_widget.setFilePath(str(tmp_path / "out"))
    tools, train = dock.train_section.drawing, dock.train_section
    layer = tools.new_layer()
    assert layer is not None, messages(dock)
    path = Path(layer.source().split("|")[0])
    assert path.parent.parent == tmp_path / "out" and path.suffix == ".gpkg"
    assert layer.crs().authid() == "EPSG:32612" and layer.geometryType() == QgsWkbTypes.PolygonGeometry
    assert layer.isEditable() and train.polygons_box.currentLayer() is layer
    assert train.field_box.currentField() == "class"
    stripes_px = {"water": 0, "grass": 16, "sand": 32}
    for name in stripes_px:
        tools.class_box.setEditText(name)
        tools.add_button.click()
    assert isinstance(layer.renderer(), QgsCategorizedSymbolRenderer)
    assert [c.value() for c in layer.renderer().categories()] == list(stripes_px), messages(dock)
    for name, x0 in stripes_px.items():
        tools.class_box.setCurrentIndex(tools.class_box.findText(name))
        tools.class_box.activated.emit(tools.class_box.currentIndex())  # what choosing it with the mouse sends
        for y0 in (4, 20, 36):
            draw(layer, (x0 + 3, y0, x0 + 12, y0 + 8))
    assert sorted(f["class"] for f in layer.getFeatures()) == sorted(list(stripes_px) * 3)
    task = train.finetune()  # saves the drawing first: the engine reads the file
    assert task is not None, messages(dock)
    saved = ogr.Open(str(path))
    assert saved.GetLayer().GetFeatureCount() == 9
    assert {f.GetField("class") for f in saved.GetLayer()} == set(stripes_px)
    saved = None
    dock.queue.cancel()
    finished(dock, task, "the cancelled fine-tune")

    tools.geometry_box.setCurrentIndex(tools.geometry_box.findData(True))
    points = tools.new_layer()
    assert points.geometryType() == QgsWkbTypes.PointGeometry
    assert [c.value() for c in points.renderer().categories()] == list(stripes_px)  # the classes carry over
