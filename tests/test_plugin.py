"""The plugin in a real QgsApplication (offscreen): Processing algorithms end to end through the real engine
worker, the dock's boxes, tasks, results and bad input, and the weights download against a local server."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from conftest import DATA, ROOT, need_shared, wait_for
from scenes import NORTH_UP, labelled_raster, read_array, stripe_polygons, write_polygons
from test_engine_io import WL20, make_tif, spectra

pytestmark = pytest.mark.usefixtures("qgis_app", "slot_errors")
QUICK_TRAIN = {"EPOCHS": 3}


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    d = tmp_path_factory.mktemp("stripes")
    raster, truth = labelled_raster(d / "scene.tif")
    polygons = write_polygons(d / "train.gpkg", stripe_polygons())
    return raster, polygons, truth


def run_alg(alg_id, params):
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsProject
    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    assert alg is not None, f"{alg_id} is not registered"
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = QgsProcessingFeedback()
    results, ok = alg.run(params, context, feedback)
    assert ok, f"{alg_id} failed: {feedback.textLog()[-2000:]}"
    return results, context


def test_processing_algorithms_are_registered():
    from qgis.core import QgsApplication
    ids = {a.id() for a in QgsApplication.processingRegistry().providerById("specaware").algorithms()}
    assert ids == {"specaware:classify", "specaware:finetune", "specaware:suggest", "specaware:detectchange",
                   "specaware:classifycells", "specaware:sensorprofile", "specaware:pretrain"}
    for alg in QgsApplication.processingRegistry().providerById("specaware").algorithms():
        bare = [p.name() for p in alg.parameterDefinitions() if len(p.help().strip()) < 20]
        assert bare == [], f"{alg.id()}: parameters without help: {bare}"
        assert alg.shortHelpString().count("<dt>") == len(alg.parameterDefinitions())  # the help panel lists them


def test_sensor_profile_algorithm_on_a_real_aviris_ng_chip(tmp_path):
    chip = need_shared(DATA / "aviris_ng_chips" / "ang20150420t182808_corr_v1e_img_4200-4210_70-80.img")
    results, _ = run_alg("specaware:sensorprofile", {"INPUT": str(chip), "OUTPUT": str(tmp_path / "p.json")})
    assert results["SENSOR"] == "avng" and results["LEVEL"] == "L2" and results["GSD"] == pytest.approx(1.1, abs=0.05)
    assert json.loads((tmp_path / "p.json").read_text())["bands"] == gdal.Open(str(chip)).RasterCount


def test_finetune_classify_cells_and_change_algorithms_style_their_outputs(stripes, tmp_path):
    from qgis.core import QgsPalettedRasterRenderer, QgsRasterLayer, QgsVectorLayer
    raster, polygons, truth = stripes
    results, _ = run_alg("specaware:finetune", {"INPUT": str(raster), "POLYGONS": str(polygons),
                                                "CLASS_FIELD": "class", "NAME": "alg-stripes", **QUICK_TRAIN})
    bundle = Path(results["BUNDLE"])
    assert (bundle / "weights.pt").is_file() and Path(results["REPORT"]).is_file()

    results, context = run_alg("specaware:classify", {"INPUT": str(raster), "MODEL": "alg-stripes",
                                                      "OUTPUT": str(tmp_path / "map")})
    assert (read_array(results["CLASSES"]) == truth).mean() > 0.8
    loaded = {Path(p).name for p in context.layersToLoadOnCompletion()}
    assert loaded == {"classes.tif", "confidence.tif"}
    layer = QgsRasterLayer(results["CLASSES"], "classes")  # picks up the .qml saved beside the file
    assert isinstance(layer.renderer(), QgsPalettedRasterRenderer)
    assert [c.label for c in layer.renderer().classes()] == ["grass", "sand", "water"]
    assert layer.renderer().classes()[0].color.name() == "#4e79a7"

    results, _ = run_alg("specaware:classifycells", {"INPUT": str(raster), "MODEL": "alg-stripes", "CELL_SIZE": 16,
                                                     "OUTPUT": str(tmp_path / "cells.gpkg")})
    cells = QgsVectorLayer(results["OUTPUT"], "cells", "ogr")
    assert cells.featureCount() == 9

    after = tmp_path / "after.tif"
    cube = gdal.Open(str(raster)).ReadAsArray()
    cube[:, 10:30, 10:30] = cube[:, 10:30, 40:41]  # a block of sand where grass and water were
    make_tif(after, cube, gt=gdal.Open(str(raster)).GetGeoTransform(), wavelengths=list(np.linspace(420, 2400, 20)))
    results, context = run_alg("specaware:detectchange", {"BEFORE": str(raster), "AFTER": str(after),
                                                          "OUTPUT": str(tmp_path / "change")})
    change = read_array(results["CHANGE"])
    assert change[12:28, 12:28].mean() > 0.8 and change[35:, :].mean() < 0.2
    assert results["CHANGED_HA"] > 0
    polys = QgsVectorLayer(results["POLYGONS"], "p", "ogr")
    assert polys.featureCount() >= 1 and "area_m2" in polys.fields().names()
    styled = QgsRasterLayer(results["CHANGE"], "change")
    assert [c.color.name() for c in styled.renderer().classes()] == ["#bdbdbd", "#e31a1c"]


def test_suggest_algorithm_points_go_back_into_the_finetune_algorithm(stripes, tmp_path):
    from qgis.core import QgsVectorLayer
    raster, polygons, _ = stripes
    run_alg("specaware:finetune", {"INPUT": str(raster), "POLYGONS": str(polygons), "CLASS_FIELD": "class",
                                   "NAME": "alg-suggest"})
    results, context = run_alg("specaware:suggest", {"INPUT": str(raster), "MODEL": "alg-suggest", "COUNT": 6,
                                                     "OUTPUT": str(tmp_path / "next.gpkg")})
    assert [Path(p).name for p in context.layersToLoadOnCompletion()] == ["next.gpkg"]
    points = QgsVectorLayer(results["OUTPUT"], "next", "ogr")
    assert points.featureCount() == 6 and {"class", "predicted", "margin"} <= set(points.fields().names())
    assert all(not f["class"] for f in points.getFeatures()), "the class is the analyst's to fill in"
    points.startEditing()  # the analyst labels three points by where they fall in the stripes
    for f in list(points.getFeatures())[:3]:
        px = (f.geometry().asPoint().x() - NORTH_UP[0]) / NORTH_UP[1]
        points.changeAttributeValue(f.id(), points.fields().indexOf("class"),
                                    "water" if px < 16 else "grass" if px < 32 else "sand")
    assert points.commitChanges()
    results, _ = run_alg("specaware:finetune", {"INPUT": str(raster), "POLYGONS": str(polygons),
                                                "CLASS_FIELD": "class", "NAME": "alg-suggest-2",
                                                "SAMPLES": str(tmp_path / "next.gpkg")})
    first = json.loads((Path(results["BUNDLE"]).parent / "alg-suggest" / "model.json").read_text())
    meta = json.loads((Path(results["BUNDLE"]) / "model.json").read_text())
    assert Path(meta["training"]["samples"]).name == "next.gpkg"
    pixels = [sum(m["labels"]["train_pixels"].values()) + sum(m["labels"]["val_pixels"].values())
              for m in (first, meta)]
    assert pixels[1] - pixels[0] == 3, "the three labelled points were added, the three empty ones skipped"


def test_classify_algorithm_clusters_a_real_aviris_ng_chip(tmp_path):
    from qgis.core import QgsPalettedRasterRenderer, QgsRasterLayer
    chip = need_shared(DATA / "aviris_ng_chips" / "ang20150420t182808_corr_v1e_img_4200-4210_70-80.img")
    results, _ = run_alg("specaware:classify", {"INPUT": str(chip), "CLUSTERS": 3, "OUTPUT": str(tmp_path / "k")})
    classes = read_array(results["CLASSES"])
    ds = gdal.Open(str(chip))
    assert classes.shape == (ds.RasterYSize, ds.RasterXSize) and set(np.unique(classes)) <= {1, 2, 3}
    layer = QgsRasterLayer(results["CLASSES"], "k")
    assert isinstance(layer.renderer(), QgsPalettedRasterRenderer)
    assert [c.label for c in layer.renderer().classes()] == ["cluster 1", "cluster 2", "cluster 3"]


def test_finetune_and_classify_algorithms_on_the_demo_scene(tmp_path):
    from engine.io.synthetic import make_scene
    scene = make_scene(tmp_path / "scene", size=64)
    results, _ = run_alg("specaware:finetune", {"INPUT": str(scene.raster), "POLYGONS": str(scene.polygons),
                                                "CLASS_FIELD": "class", "NAME": "alg-demo", "EPOCHS": 4})
    results, _ = run_alg("specaware:classify", {"INPUT": str(scene.raster), "MODEL": results["BUNDLE"],
                                                "OUTPUT": str(tmp_path / "map")})
    truth, pred = read_array(scene.truth), read_array(results["CLASSES"])
    assert pred.shape == truth.shape and (pred == truth).mean() > 0.5  # 4 epochs, frozen random backbone


def test_pretrain_algorithm_and_finetune_after_adaptation(stripes, tmp_path):
    import shutil
    from engine.model.weights import load_checkpoint
    raster, polygons, _ = stripes
    data = tmp_path / "archive"
    data.mkdir()
    shutil.copy(raster, data / "scene.tif")
    results, _ = run_alg("specaware:pretrain", {"DATA": str(data), "STEPS": 3, "BATCH_SIZE": 2, "PATCH": 32,
                                                "OUTPUT": str(tmp_path / "run")})
    assert load_checkpoint(results["BACKBONE"]).has_decoder and Path(results["LOSS_PLOT"]).is_file()
    results, _ = run_alg("specaware:finetune", {"INPUT": str(raster), "POLYGONS": str(polygons),
                                                "CLASS_FIELD": "class", "NAME": "adapted-stripes", "EPOCHS": 2,
                                                "ADAPT_MINUTES": 0.05})
    meta = json.loads((Path(results["BUNDLE"]) / "model.json").read_text())
    assert "adapted-adapted-stripes.pth" in meta["backbone"]


def test_algorithm_error_is_the_engines_sentence(stripes, tmp_path):
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback
    alg = QgsApplication.processingRegistry().createAlgorithmById("specaware:classify")
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    _, ok = alg.run({"INPUT": str(stripes[0]), "MODEL": "no-such-model", "OUTPUT": str(tmp_path / "x")}, context,
                    feedback)
    assert not ok and "no-such-model" in feedback.textLog()


# --- the dock -------------------------------------------------------------------------------------------------

def messages(d) -> str:
    return " | ".join(item.text() for item in d.bar.items())


def add_layers(raster, polygons=None):
    from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer
    r = QgsRasterLayer(str(raster), Path(raster).stem)
    assert r.isValid()
    QgsProject.instance().addMapLayer(r)
    v = None
    if polygons:
        v = QgsVectorLayer(str(polygons), "training", "ogr")
        QgsProject.instance().addMapLayer(v)
    return r, v


def finished(dock, task, what="the task"):
    """Wait until the dock's task queue has let go of the task."""
    wait_for(lambda: task not in dock.queue.tasks, what=what)
    return task


def choose(dock, raster, polygons=None, name=None, epochs=None):
    """Pick the raster (and training layer, class field 'class', model name, epochs) as an analyst would."""
    r, v = add_layers(raster, polygons)
    scene, train = dock.classify_section.raster, dock.train_section
    scene.box.setLayer(r)
    if v is not None:
        train.polygons_box.setLayer(v)
        train.field_box.setField("class")
    if name:
        train.name_edit.setText(name)
    if epochs:
        train.epochs_spin.setValue(epochs)
    wait_for(lambda: scene.label.info is not None or scene.label.problem, what="the sensor check")
    return r, v


def choose_dates(dock, before, after, mode: str, out):
    """Pick the two dates and the change mode, writing under `out`; returns the Change section once both dates'
    sensors are known."""
    change = dock.change_section
    change.before.box.setLayer(before)
    change.after.box.setLayer(after)
    change.mode_box.setCurrentIndex(change.mode_box.findData(mode))
    dock.classify_section.out_widget.setFilePath(str(out))
    wait_for(lambda: change.before.label.info and change.after.label.info, what="the sensor checks")
    return change


def use_clusters(dock, out):
    """Classify into unsupervised clusters, writing under `out`."""
    classify = dock.classify_section
    classify.out_widget.setFilePath(str(out))
    classify.model_box.setCurrentIndex(classify.model_box.findData("__clusters__"))


def test_dock_fills_its_boxes_from_the_project(dock, stripes):
    raster, polygons, _ = stripes
    assert "Engine:" in dock.status_label.text() and "CPU" in dock.status_label.text()
    scene, fields = dock.classify_section.raster, dock.train_section.field_box
    assert dock.classify_section.model_box.findData("__clusters__") >= 0
    for choice in (scene, dock.change_section.before, dock.change_section.after):
        assert choice.profile.findData("aviris_ng") >= 0
    r, v = add_layers(raster, polygons)
    scene.box.setLayer(r)
    dock.train_section.polygons_box.setLayer(v)
    wait_for(lambda: scene.label.info is not None, what="the sensor check")
    assert scene.label.info["bands"] == 20 and "420–2400 nm" in scene.label.text()
    assert [fields.itemText(i) for i in range(fields.count())][-2:] == ["class", "note"]


def test_dock_finetune_then_classify_adds_a_styled_group(dock, stripes, tmp_path):
    from qgis.core import QgsPalettedRasterRenderer, QgsProject
    raster, polygons, truth = stripes
    choose(dock, raster, polygons, "dock-stripes", 3)
    dock.classify_section.out_widget.setFilePath(str(tmp_path / "out"))
    task = dock.train_section.finetune()
    assert task is not None, messages(dock)
    finished(dock, task, "fine-tune")
    assert task.error is None, task.error
    assert dock.classify_section.model_box.currentText().startswith("dock-stripes (3 classes")
    assert dock.change_section.fromto_model_box.currentText().startswith("dock-stripes (3 classes")
    assert dock.status_label.text().startswith("Engine: ") and dock.progress.isHidden()
    task = finished(dock, dock.classify_section.classify(), "classify")
    assert task.error is None, task.error
    group = QgsProject.instance().layerTreeRoot().children()[0]
    assert group.name().startswith("SpecAware classes — scene")
    classes = group.children()[0].layer()
    assert isinstance(classes.renderer(), QgsPalettedRasterRenderer)
    assert [c.label for c in classes.renderer().classes()] == ["grass", "sand", "water"]
    assert (read_array(classes.source()) == truth).mean() > 0.8
    assert Path(classes.source()).with_suffix(".qml").is_file()
    assert "Classified scene" in messages(dock)


def test_dock_adapts_to_the_scene_before_fine_tuning(dock, stripes):
    raster, polygons, _ = stripes
    choose(dock, raster, polygons, "dock-adapted", 2)
    dock.train_section.adapt_check.setChecked(True)
    dock.train_section.adapt_minutes.setValue(0.1)
    task = finished(dock, dock.train_section.finetune(), "adapt and fine-tune")
    assert task.error is None, task.error
    adapted, trained = task.results[0], task.results[1]
    assert adapted["steps"] > 0 and Path(adapted["backbone"]).name == "adapted-dock-adapted.pth"
    assert "adapted-dock-adapted.pth" in trained["backbone"]
    assert dock.classify_section.model_box.currentText().startswith("dock-adapted")


def test_no_raster_chosen(dock):
    assert dock.classify_section.classify() is None and dock.train_section.finetune() is None
    assert "no raster to classify chosen" in messages(dock)


def test_raster_without_wavelengths_asks_for_a_profile(dock, tmp_path):
    bare = make_tif(tmp_path / "bare.tif", np.ones((7, 8, 8), np.float32))
    r, _ = add_layers(bare)
    scene = dock.classify_section.raster
    scene.box.setLayer(r)
    wait_for(lambda: scene.label.problem is not None, what="the sensor check")
    assert "choose a sensor profile" in scene.label.problem
    assert dock.classify_section.classify() is None and "choose a sensor profile" in messages(dock)


def test_empty_class_field_names_the_field_and_layer(dock, stripes, tmp_path):
    raster = stripes[0]
    empty = write_polygons(tmp_path / "empty.gpkg", [(None, p) for _, p in stripe_polygons()])
    choose(dock, raster, empty)
    assert dock.train_section.finetune() is None
    assert "the class field 'class' of layer 'training' is empty" in messages(dock)


def test_unwritable_output_folder(dock, stripes, tmp_path):
    choose(dock, stripes[0])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    use_clusters(dock, blocker / "results")
    assert dock.classify_section.classify() is None
    assert f"cannot write to the output folder {blocker / 'results'}" in messages(dock)


def test_failed_job_goes_to_the_message_bar(dock, stripes, tmp_path):
    choose(dock, stripes[0])
    classify = dock.classify_section
    classify.out_widget.setFilePath(str(tmp_path / "out"))
    classify.model_box.addItem("gone", str(tmp_path / "deleted-bundle"))
    classify.model_box.setCurrentIndex(classify.model_box.count() - 1)
    task = finished(dock, classify.classify(), "classify")
    assert task.error is not None and "failed" in messages(dock) and "deleted-bundle" in messages(dock)
    assert not any((tmp_path / "out").iterdir()), "a failed run leaves no folder behind"


def test_second_job_is_queued_and_cancel_leaves_no_output(dock, tmp_path):
    choose(dock, make_tif(tmp_path / "big.tif", spectra(20, 1024, 1024), gt=NORTH_UP, wavelengths=WL20))
    use_clusters(dock, tmp_path / "out")
    first = dock.classify_section.classify()
    second = dock.classify_section.classify()
    assert "is queued: the engine runs one job at a time" in messages(dock)
    assert dock.queue.visible() == [first, second] and dock.cancel_button.isEnabled()
    wait_for(lambda: first.progress() > 0 or first not in dock.queue.tasks, what="the first job to start")
    assert second.progress() == 0 and second in dock.queue.tasks, "the second job waits for the one queued before it"
    dock.cancel_button.click()
    wait_for(lambda: first not in dock.queue.tasks and second not in dock.queue.tasks, what="cancel")
    assert first.error is not None and first.error.cancelled
    assert second.error is not None and second.error.cancelled
    left = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert left == [], f"cancelled runs left {left}"


def test_turns_start_jobs_in_the_order_they_were_queued():
    import threading
    from specaware_qgis.tasks import Turns
    turns, started, waited = Turns(), [], []
    first, second, third = turns.take(), turns.take(), turns.take()

    def job(ticket, cancelled=lambda: False):
        if turns.wait(ticket, cancelled, lambda: waited.append(ticket), poll_s=0.01):
            started.append(ticket)
        else:
            started.append(-ticket)
    threads = [threading.Thread(target=job, args=(third,)), threading.Thread(target=job, args=(second,))]
    for t in threads:  # the later tickets' threads start first, as the task manager may start them
        t.start()
    threads[0].join(0.2)
    assert started == [] and sorted(waited) == [second, third]
    turns.give_back(first)
    threads[1].join(5)
    assert started == [second]
    turns.give_back(second)
    threads[0].join(5)
    assert started == [second, third]
    fourth, fifth = turns.take(), turns.take()
    job(fifth, cancelled=lambda: True)  # cancelled while the fourth is still due: never starts
    assert started[-1] == -fifth


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    from specaware_qgis.inputs import run_folder
    folders = [run_folder(tmp_path, "classify", "scene") for _ in range(3)]
    assert len(set(folders)) == 3 and all(f.is_dir() and not any(f.iterdir()) for f in folders)


def test_quiet_checks_stay_out_of_the_progress_line(dock):
    heard = []
    task = dock.queue.start("SpecAware: a quiet check", [("diagnostics", {})], heard.append, quiet=True)
    assert dock.queue.visible() == [] and dock.progress.isHidden() and not dock.cancel_button.isEnabled()
    finished(dock, task, "the quiet check")
    assert heard == [task] and dock.status_label.text().endswith("Idle.")


def test_tasks_that_end_after_unload_touch_no_widget(dock):
    heard = []
    task = dock.queue.start("SpecAware: a job", [("diagnostics", {})], heard.append, on_error=heard.append)
    assert dock.queue.visible() == [task] and not dock.progress.isHidden() and dock.cancel_button.isEnabled()
    status = dock.status_label.text()
    dock.cleanup()  # what the plugin's unload does before the dock is deleted
    finished(dock, task, "the job")
    assert heard == [] and messages(dock) == ""
    assert dock.status_label.text() == status and not dock.progress.isHidden()


def test_no_engine_environment_gives_guidance(tmp_path):
    """Under Debian's own Python (no torch), with no configured or created environment."""
    code = ("from specaware_qgis.environment import find_engine; e = find_engine(); "
            "print(e.ok); print(e.message)")
    out = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "SPECAWARE_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    ok, message = out.stdout.strip().split("\n", 1)
    assert ok == "False"
    assert "No Python with PyTorch was found" in message and "Create engine environment" in message
    assert "Traceback" not in message


def test_dock_without_engine_shows_guidance_not_a_traceback(make_dock):
    from specaware_qgis.engine_process import Engine
    from specaware_qgis.environment import EngineEnvironment
    engine = Engine(search=lambda configured: EngineEnvironment(None, "none", "No Python with PyTorch was found "
                                                                "for the SpecAware engine (test)."))
    d = make_dock(engine=engine)
    wait_for(lambda: not d.queue.tasks, what="the engine check")
    assert "No Python with PyTorch was found" in d.status_label.text()
    assert not d.engine_section.create_env_button.isHidden()


# --- official weights -------------------------------------------------------------------------------------------

class RangeServer:
    """A local HTTP server for one file that honours Range and can drop the first transfer half way."""

    def __init__(self, path: Path, drop_first_at: int | None = None):
        import http.server
        import threading
        data, self.ranges = path.read_bytes(), []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                start = 0
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                end = len(data)
                if server.drop_first_at is not None:
                    end, server.drop_first_at = server.drop_first_at, None
                self.wfile.write(data[start:end])

            def log_message(self, *args):
                pass

        self.drop_first_at = drop_first_at
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/ckpt/SpecAware_Base_model.pth"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def base_shaped_file(tmp_path_factory):
    """The official SpecAware-Base MAE names and shapes (fp16 zeros keep the file at 236 MB)."""
    import torch
    shapes = json.loads(need_shared(ROOT.parent / "shared" / "reference" /
                                    "specaware_base_mae_state_dict_shapes.json").read_text())
    path = tmp_path_factory.mktemp("served") / "SpecAware_Base_model.pth"
    torch.save({k: torch.zeros(v, dtype=torch.float16) for k, v in shapes.items()}, path)
    return path


def weights_task(dock):
    """The weights download or check the dock's Engine-and-weights section started."""
    from specaware_qgis.weights import WeightsTask
    return next(t for t in dock.queue.tasks if isinstance(t, WeightsTask))


def test_weights_download_resumes_an_interrupted_transfer_and_is_checked(base_shaped_file, tmp_path, make_dock):
    from specaware_qgis import settings
    size = base_shaped_file.stat().st_size
    server = RangeServer(base_shaped_file, drop_first_at=size // 3)
    try:
        d = make_dock()
        d.engine_section.url_edit.setText(server.url)
        d.engine_section.weights_button.click()
        task = finished(d, weights_task(d), "the download")
    finally:
        server.close()
    assert task.error is None, task.error
    assert server.ranges == [None, f"bytes={size // 3}-"], "the second request resumes where the first stopped"
    got = Path(task.path)
    assert got.read_bytes() == base_shaped_file.read_bytes() and not got.with_name(got.name + ".part").exists()
    assert task.summary["embed_dim"] == 768 and task.summary["depth"] == 12
    assert settings.get("checkpoint") == str(got) and d.engine_section.checkpoint_widget.filePath() == str(got)
    assert "SpecAware weights ready" in messages(d)
    settings.put("checkpoint", "")


def test_cancelled_download_keeps_the_part_for_a_later_resume(base_shaped_file, tmp_path):
    from specaware_qgis.weights import DownloadError, download
    server = RangeServer(base_shaped_file)
    dest = tmp_path / "w.pth"
    seen = []
    try:
        with pytest.raises(DownloadError, match="cancelled"):
            download(server.url, dest, lambda f, m: seen.append(f), lambda: len(seen) >= 5)
        part = dest.with_name("w.pth.part")
        assert part.stat().st_size == 5 * (1 << 20) and not dest.exists()
        download(server.url, dest, lambda f, m: None, lambda: False)
    finally:
        server.close()
    assert server.ranges == [None, f"bytes={5 * (1 << 20)}-"]
    assert dest.stat().st_size == base_shaped_file.stat().st_size


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path, make_dock):
    from specaware_qgis import settings
    bogus = tmp_path / "notes.pth"
    bogus.write_bytes(b"not a checkpoint")
    d = make_dock()
    d.engine_section.checkpoint_widget.setFilePath(str(bogus))  # as when the user picks the file
    task = finished(d, weights_task(d), "the check")
    assert task.error and "notes.pth" in task.error and settings.get("checkpoint") == ""


def test_dock_change_from_to_and_export(dock, stripes, tmp_path):
    from qgis.core import QgsProject, QgsVectorLayer
    raster, polygons, _ = stripes
    run_alg("specaware:finetune", {"INPUT": str(raster), "POLYGONS": str(polygons), "CLASS_FIELD": "class",
                                   "NAME": "fromto-stripes", **QUICK_TRAIN})
    after = tmp_path / "after.tif"
    cube = gdal.Open(str(raster)).ReadAsArray()
    cube[:, 10:30, 4:14] = cube[:, 10:30, 40:41]  # water → sand
    make_tif(after, cube, gt=NORTH_UP, wavelengths=WL20)
    before_layer, _ = add_layers(raster)
    after_layer, _ = add_layers(after)
    dock.refresh_engine()
    wait_for(lambda: not dock.queue.tasks, what="the model list")
    change = choose_dates(dock, before_layer, after_layer, "fromto", tmp_path / "out")
    from qgis.PyQt.QtCore import Qt
    change.fromto_model_box.setCurrentIndex(change.fromto_model_box.findText("fromto-stripes", Qt.MatchStartsWith))
    task = finished(dock, change.detect_changes(), "change detection")
    assert task.error is None, task.error
    r = task.result
    assert any(k.startswith("water → sand") for k in r["transitions_ha"])
    group = QgsProject.instance().layerTreeRoot().children()[0]
    assert [c.layer().name() for c in group.children()] == ["change polygons", "change", "from → to",
                                                             "change magnitude"]
    assert change.export_button.isEnabled()
    shp = change.export_change_polygons(str(tmp_path / "export" / "changes.shp"))
    exported = QgsVectorLayer(shp, "exported", "ogr")
    assert exported.isValid() and exported.featureCount() == r["polygons"]["count"] > 0
    assert {"area_m2", "from_class", "to_class"} <= set(exported.fields().names())
    assert not list((tmp_path / "export").glob(".part-*"))


def test_diagnostics_copies_versions(dock):
    from qgis.PyQt.QtWidgets import QApplication
    finished(dock, dock.diagnostics(), "diagnostics")
    text = json.loads(QApplication.clipboard().text())
    assert text["qgis"].startswith("3.") and text["torch"].startswith("2.") and text["engine"]
    assert "cuda_available" in text and text["gdal (QGIS)"]


def test_a_dead_worker_fails_its_job_and_is_restarted_for_the_next(stripes, tmp_path):
    from specaware_qgis.client import EngineClient, EngineJobError
    big = make_tif(tmp_path / "big.tif", spectra(20, 1024, 1024), gt=NORTH_UP, wavelengths=WL20)
    client = EngineClient(__import__("sys").executable, "cpu")
    client.start()
    first_pid = client.proc.pid

    def kill_once_started(fraction, message):  # the worker dies mid-job, not before it or after it
        if fraction > 0 and client.proc is not None and client.proc.poll() is None:
            client.proc.kill()
    with pytest.raises(EngineJobError, match="engine process stopped"):
        client.run("classify", {"raster": str(big), "out": str(tmp_path / "out"), "clusters": 3, "preset": "base"},
                   kill_once_started)
    finals = [p.name for p in (tmp_path / "out").glob("*") if not p.name.startswith(".")]
    assert finals == [], f"a killed job left {finals} as if finished"
    result, _ = client.run("info", {"raster": str(stripes[0])})
    assert result["bands"] == 20 and client.proc.pid != first_pid
    client.stop()


def test_a_job_cancelled_while_it_waited_never_reaches_the_engine(stripes):
    from specaware_qgis.client import EngineClient, EngineJobError
    client = EngineClient(__import__("sys").executable, "cpu")
    client.start()
    try:  # a quick job whose task was cancelled while the engine was busy: it must not run once the engine frees
        with pytest.raises(EngineJobError, match="cancelled while waiting") as caught:
            client.run("info", {"raster": str(stripes[0])}, is_cancelled=lambda: True)
        assert caught.value.cancelled
        result, _ = client.run("info", {"raster": str(stripes[0])})
        assert result["bands"] == 20  # and the engine still serves
    finally:
        client.stop()


def test_dock_supervised_change_trains_a_change_model_then_maps_it(dock, stripes, tmp_path):
    from scenes import rect
    raster = stripes[0]
    after = tmp_path / "after.tif"
    cube = gdal.Open(str(raster)).ReadAsArray()
    cube[:, 8:40, 4:14] = cube[:, 8:40, 40:41]  # water → sand
    make_tif(after, cube, gt=NORTH_UP, wavelengths=WL20)
    samples = write_polygons(tmp_path / "samples.gpkg", [
        ("change", rect(5, 10, 12, 18)), ("change", rect(5, 28, 12, 36)),
        ("no change", rect(20, 5, 30, 15)), ("no change", rect(36, 30, 46, 40)), ("no change", rect(4, 42, 12, 47))])
    before_layer, samples_layer = add_layers(raster, samples)
    after_layer, _ = add_layers(after)
    change = choose_dates(dock, before_layer, after_layer, "supervised", tmp_path / "out")
    change.change_polygons_box.setLayer(samples_layer)
    change.change_field_box.setField("class")
    dock.train_section.epochs_spin.setValue(3)  # supervised change trains with the Train section's epochs
    task = finished(dock, change.detect_changes(), "supervised change")
    assert task.error is None, task.error
    trained, mapped = task.results
    assert Path(trained["bundle"]).name.startswith("change-change-after")
    assert mapped["magnitude"].startswith("probability of change from the change model")
    change = read_array(mapped["outputs"][0])
    assert change[12:36, 6:12].mean() > 0.7 and change[:, 20:].mean() < 0.2
