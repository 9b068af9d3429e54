"""The analyst's first hour in the real QGIS desktop under Xvfb with a window manager, driven only by X mouse and
keyboard events (xdotool), with a screenshot at each step: deploy the plugin into a fresh profile, open a project
with two dates of the demo scene, open the dock from the Raster menu, pick layers in the boxes, scroll the dock with
the wheel, create a training layer and draw polygons of three classes on the map, fine-tune, classify, detect
changes, export the change polygons through the file dialog, and read the message bar. A script inside QGIS
(`desktop/observe.py`) only reports what is on screen, so the clicks can be aimed and checked."""
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr

from conftest import ROOT, system_qgis_env
from desktop.xdesktop import Desktop

ARTIFACTS = ROOT / "build" / "test-artifacts"
SHOTS = ARTIFACTS / "desktop"
TOOLS = ["qgis", "Xvfb", "openbox", "xdotool", "import", "convert"]
CLASSES = {"vegetation": 4, "dry vegetation": 3, "bare soil": 3}  # polygons to draw of each
EPOCHS = "10"
SIDE = 9  # px, the side of each drawn square


@pytest.fixture
def x_display():
    """Xvfb with the openbox window manager (windows get frames, focus and maximising as on a desktop)."""
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian packages qgis, xvfb, openbox, xdotool, imagemagick; "
                    "`python3 build.py setup` installs them as root)")
    display = f":{90 + int(time.time()) % 9}"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    assert xvfb.poll() is None, f"Xvfb could not start on {display}"
    wm = subprocess.Popen(["openbox"], env={"DISPLAY": display, "HOME": str(Path.home())},
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield display
    for proc in (wm, xvfb):
        proc.terminate()
        proc.wait(timeout=10)


def desktop_project(folder: Path):
    """The demo's synthetic AVIRIS-NG scene and its second date (false colour), opening on the scene; no
    training data: the analyst draws it."""
    from qgis.core import QgsProject
    from engine.io.synthetic import make_scene, make_second_date
    from specaware_qgis import layers
    scene = make_scene(folder / "scene", size=96)
    second = make_second_date(scene, folder / "second")
    wl = [float(v) for v in gdal.Open(str(scene.raster)).GetMetadata("ENVI")["wavelength"].strip("{}").split(",")]
    bands = tuple(int(np.abs(np.asarray(wl) - w).argmin()) + 1 for w in (860, 650, 550))
    project = QgsProject()
    project.addMapLayer(layers.rgb_layer(second.after, bands, "scene (second date)"))
    first = layers.rgb_layer(scene.raster, bands, "scene")
    project.addMapLayer(first)
    layers.open_on(project, first)
    path = folder / "first-hour.qgz"
    assert project.write(str(path))
    project.clear()
    return path, scene


def spots(truth: np.ndarray, class_id: int, n: int, side: int = SIDE) -> list[tuple[int, int]]:
    """n well-spread squares of `side` px wholly inside class `class_id` (1 px from its edges): (x, y) corners."""
    h, w = truth.shape
    inside = [(x + 1, y + 1) for y in range(2, h - side - 4, 4) for x in range(2, w - side - 4, 4)
              if (truth[y:y + side + 2, x:x + side + 2] == class_id).all()]
    chosen = [inside[0]]
    while len(chosen) < n:
        chosen.append(max(inside, key=lambda p: min(abs(p[0] - q[0]) + abs(p[1] - q[1]) for q in chosen)))
    return chosen


def on_screen(state: dict, gt, px: float, py: float) -> tuple[float, float]:
    """Screen position of a raster pixel corner, from the canvas's extent and place on screen."""
    x, y = gt[0] + px * gt[1], gt[3] + py * gt[5]
    canvas = state["canvas"]
    xmin, _, _, ymax = canvas["extent"]
    u = canvas["units_per_pixel"]
    return canvas["rect"][0] + (x - xmin) / u, canvas["rect"][1] + (ymax - y) / u


def test_first_hour_in_the_real_qgis_desktop_with_real_clicks(qgis_app, x_display, tmp_path):
    project, scene = desktop_project(tmp_path)
    base = tmp_path / "qgis-config"
    r = subprocess.run([sys.executable, str(ROOT / "build.py"), "deploy", "--profiles-dir", str(base / "profiles"),
                        "--profile", "e2e"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "recorded the engine Python" in r.stdout and "enabled specaware_qgis" in r.stdout  # nothing to type
    sys.path.insert(0, str(ROOT))
    import build
    ini = base / "profiles" / "e2e" / "QGIS" / "QGIS3.ini"
    for key in ("checkVersion", "showTips"):
        build.write_ini(ini, "qgis", key, "false")
    status, results = tmp_path / "status.json", tmp_path / "results"
    env = system_qgis_env(DISPLAY=x_display, QT_QPA_PLATFORM="xcb", SPECAWARE_E2E_STATUS=status,
                          SPECAWARE_DATA_DIR=tmp_path / "engine-data", SPECAWARE_OUTPUT_DIR=results)
    log = tmp_path / "qgis.log"
    shutil.rmtree(SHOTS, ignore_errors=True)
    with open(log, "w") as out:
        qgis = subprocess.Popen(["qgis", "--profiles-path", str(base), "--profile", "e2e", "--nologo",
                                 "--noversioncheck", "--code", str(ROOT / "tests" / "desktop" / "observe.py"),
                                 "--project", str(project)], env=env, stdout=out, stderr=subprocess.STDOUT)
    d = Desktop(x_display, status, SHOTS, qgis, log)
    try:
        session(d, scene, results)
        d.command("unload")
        left = d.wait(lambda s: isinstance(s.get("unloaded"), dict), 60, "the plugin unloaded")["unloaded"]
        assert left == {"actions": [], "docks": [], "menus": [], "provider": False}
    finally:
        d.command("quit")
        try:
            qgis.wait(timeout=60)
        finally:
            if qgis.poll() is None:
                qgis.kill()
    for shot in d.taken:  # docs/walkthrough.md shows these, copied from the last run
        subprocess.run(["convert", str(shot), "-resize", "900x", "-quality", "72", str(shot.with_suffix(".jpg"))],
                       check=True)
    print("timeline:", ", ".join(f"{name} {t:.0f} s" for name, t in d.timeline))


def session(d: Desktop, scene, results: Path) -> None:
    gt = gdal.Open(str(scene.raster)).GetGeoTransform()
    truth = gdal.Open(str(scene.truth)).ReadAsArray()

    # The project opens on the scene, not on an empty canvas at 1:1; the window is maximised with a double click.
    s = d.wait(lambda s: len(s["layers"]) == 2 and s["window"]["rect"], 120, "the project")
    win = s["window"]["rect"]
    d.click(win[0] + win[2] / 2, win[1] - 10, repeat=2)  # the title bar
    s = d.wait(lambda s: s["window"]["rect"][2] >= 1500, 20, "the maximised window")
    left, top = on_screen(s, gt, 0, 0)
    right, bottom = on_screen(s, gt, truth.shape[1], truth.shape[0])
    c = s["canvas"]["rect"]
    assert c[0] <= left < right <= c[0] + c[2] and c[1] <= top < bottom <= c[1] + c[3], s["canvas"]
    assert right - left > 0.4 * c[2] or bottom - top > 0.4 * c[3], "the scene fills the canvas"
    d.shot("project-opens-on-the-scene")

    # Raster › SpecAware › SpecAware opens the dock.
    d.click_rect(s["menubar"]["Raster"])
    s = d.wait(lambda s: s["popup"] and "SpecAware" in s["popup"]["items"], 10, "the Raster menu")
    d.shot("raster-menu")
    d.click_rect(s["popup"]["items"]["SpecAware"])
    s = d.wait(lambda s: s["popup"]["title"].replace("&", "") == "SpecAware", 10, "the SpecAware submenu")
    d.click_rect(s["popup"]["items"]["SpecAware"])
    # The engine is the one `deploy` recorded, and the sensor line describes the scene the box chose itself.
    s = d.wait(lambda s: s["dock"] and s["dock"]["widgets"]["status"]["text"].endswith("Idle.")
               and "AVIRIS-NG" in d.widget("sensor", s)["text"], 180, "the dock with the engine found")
    status = d.widget("status", s)["text"]
    assert status.startswith("Engine: the Python set in the SpecAware settings") and "engine" not in status[7:].lower()
    assert d.widget("raster", s)["text"] == "scene" and d.widget("after", s)["text"] == "scene (second date)"
    d.shot("dock-with-the-engine-and-sensor")

    d.choose("raster", "scene")
    # The wheel over an input the user has not clicked scrolls the dock and leaves the input alone.
    head = d.show_in_dock("head")
    before = d.state()["dock"]["scroll"]["value"]
    d.wheel(head["rect"][0] + head["rect"][2] / 2, head["rect"][1] + head["rect"][3] / 2, 3)
    s = d.wait(lambda s: s["dock"]["scroll"]["value"] != before, 10, "the dock scrolled by the wheel")
    assert d.widget("head", s)["text"] == "linear" and d.widget("epochs", s)["text"] == "40"
    d.shot("wheel-scrolls-the-dock-not-the-head-box")

    # A new training layer: editing on, the Add Feature tool active; three classes typed into the class box.
    d.press("newTrainingLayer")
    s = d.wait(lambda s: any(lyr["name"] == "scene training polygons" and lyr["editable"] for lyr in s["layers"]),
               20, "the new training layer in edit mode")
    assert "AddFeature" in s["canvas"]["tool"] or "Digitiz" in s["canvas"]["tool"], s["canvas"]["tool"]
    for name in CLASSES:
        d.fill("drawClass", name)
        d.press("addClass")
        d.wait(lambda s: name in d.widget("drawClass", s)["items"], 10, f"class {name!r} added")
    d.shot("training-layer-and-classes")

    # Polygons of each class drawn with the mouse: four corners, then a right click to finish.
    drawn = 0
    for name, count in CLASSES.items():
        d.choose("drawClass", name)
        class_id = scene.class_names.index(name) + 1
        for x, y in spots(truth, class_id, count):
            # the message bar sits above the canvas: while it shows or hides, the map moves under the mouse
            s = d.wait(lambda s: not s["bar"], 30, "the message bar to clear before drawing")
            c = s["canvas"]["rect"]
            for px, py in ((x, y), (x + SIDE, y), (x + SIDE, y + SIDE), (x, y + SIDE)):
                sx, sy = on_screen(s, gt, px, py)
                assert c[0] < sx < c[0] + c[2] and c[1] < sy < c[1] + c[3], "the polygon lies on the canvas"
                d.click(sx, sy)
            d.click(*on_screen(s, gt, x + SIDE / 2, y + SIDE / 2), button=3)
            drawn += 1
            d.wait(lambda s: layer(s, "scene training polygons")["features"] == drawn, 10, f"polygon {drawn}")
    s = d.state()
    assert layer(s, "scene training polygons")["classes"] == sorted(CLASSES)
    d.shot("ten-polygons-of-three-classes")

    d.fill("modelName", "e2e-demo")
    d.fill("epochs", EPOCHS)
    s = d.wait(lambda s: d.widget("epochs", s)["text"] == EPOCHS, 10, "the epochs typed")
    d.press("finetune")
    s = d.wait(lambda s: any("Model e2e-demo trained" in m for m in s["messages"]), 900, "the model trained")
    assert d.widget("model", s)["text"].startswith("e2e-demo (3 classes")
    d.shot("fine-tuned")

    d.press("classify")
    s = d.wait(lambda s: any(m.startswith("Classified scene") for m in s["messages"]), 300, "the scene classified")
    classes = layer(s, "scene classes")
    assert Path(classes["source"]).with_suffix(".qml").is_file()
    d.shot("classified")

    # The after-date box lists the hyperspectral rasters first, the new class map and confidence last.
    w = d.show_in_dock("after")
    d.click_rect(w["rect"])
    s = d.wait(lambda s: s["popup"] and "scene classes" in s["popup"]["items"], 10, "the after-date list")
    assert list(s["popup"]["items"])[:2] == ["scene", "scene (second date)"], list(s["popup"]["items"])
    d.shot("after-date-list")
    d.click_rect(s["popup"]["items"]["scene (second date)"])
    d.press("detect")
    s = d.wait(lambda s: any("ha changed" in m for m in s["messages"]), 300, "the change detected")
    d.shot("change-detected")

    # Export through the file dialog, answered by typing the path.
    d.press("export")
    s = d.wait(lambda s: s["modal"] and s["modal"]["class"] == "QFileDialog", 20, "the export file dialog")
    exported = results / "exported_changes.gpkg"
    d.click_rect(s["modal"]["file_name_rect"], 0.5)
    d.key("ctrl+a")
    d.type(str(exported))
    d.shot("export-dialog")
    d.key("Return")
    s = d.wait(lambda s: any("change polygons exported" in m for m in s["messages"]), 60, "the export")
    ds = ogr.Open(str(exported))
    assert ds is not None and ds.GetLayer().GetFeatureCount() >= 1
    ds = None
    d.shot("exported")

    said = s["messages"]  # the message bar, read in order
    for expected in ("New training layer", "Model e2e-demo trained", "Classified scene", "ha changed",
                     "change polygons exported to"):
        assert any(expected in m for m in said), (expected, said)
    assert not any("failed" in m or "could not" in m for m in said), said


def layer(state: dict, name: str) -> dict:
    found = [lyr for lyr in state["layers"] if lyr["name"] == name]
    assert found, f"no layer {name!r} in {[lyr['name'] for lyr in state['layers']]}"
    return found[0]
