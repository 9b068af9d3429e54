"""End to end in the real QGIS desktop app under Xvfb: deploy the plugin into a fresh profile, open a project
with the demo scene, a second date and the polygons, press Fine-tune, Classify and Detect changes in the dock,
export the change polygons, check the styled results, take a screenshot, unload the plugin."""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, system_qgis_env

ARTIFACTS = ROOT / "build" / "test-artifacts"
TOOLS = ["qgis", "Xvfb", "import"]


@pytest.fixture
def xvfb():
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian packages qgis, xvfb, imagemagick; `python3 build.py setup` "
                    "installs them as root)")
    display = f":{90 + int(time.time()) % 9}"
    proc = subprocess.Popen(["Xvfb", display, "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    assert proc.poll() is None, f"Xvfb could not start on {display}"
    yield display
    proc.terminate()
    proc.wait(timeout=10)


def demo_project(folder: Path) -> Path:
    """The demo's synthetic AVIRIS-NG scene (false colour) and its training polygons, as a .qgz."""
    from qgis.core import QgsProject
    from engine.io.synthetic import make_scene
    from specaware_qgis import layers
    scene = make_scene(folder / "scene", size=96)
    wl = np.asarray(json.loads((ROOT / "resources" / "sensors" / "aviris_ng.json").read_text())["wavelength_nm"])
    bands = tuple(int(np.abs(wl - w).argmin()) + 1 for w in (860, 650, 550))
    names = sorted(scene.class_names)
    colors = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"][:len(names)]
    second = make_scene(folder / "second", size=96, seed=1)  # another layout on the same grid: a second date
    project = QgsProject()
    project.addMapLayer(layers.rgb_layer(second.raster, bands, "scene (second date)"))
    project.addMapLayer(layers.rgb_layer(scene.raster, bands, "scene"))
    project.addMapLayer(layers.polygon_layer(scene.polygons, "class", names, colors, "training polygons"))
    path = folder / "demo.qgz"
    assert project.write(str(path))
    return path


def test_dock_in_the_real_qgis_desktop(qgis_app, xvfb, tmp_path):
    project = demo_project(tmp_path)
    base = tmp_path / "qgis-config"
    r = subprocess.run([sys.executable, str(ROOT / "build.py"), "deploy", "--profiles-dir", str(base / "profiles"),
                        "--profile", "e2e"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ini = base / "profiles" / "e2e" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    ini.write_text("[PythonPlugins]\nspecaware_qgis=true\n\n[specaware]\n"
                   f"engine_python={sys.executable}\n\n[qgis]\ncheckVersion=false\nshowTips=false\n")
    status = tmp_path / "status.json"
    env = system_qgis_env(DISPLAY=xvfb, QT_QPA_PLATFORM="xcb", SPECAWARE_E2E_STATUS=status,
                          SPECAWARE_E2E_OUT=tmp_path / "results", SPECAWARE_DATA_DIR=tmp_path / "engine-data")
    log = open(tmp_path / "qgis.log", "w")
    qgis = subprocess.Popen(["qgis", "--profiles-path", str(base), "--profile", "e2e", "--nologo",
                             "--noversioncheck", "--code", str(ROOT / "tests" / "desktop" / "drive_dock.py"),
                             "--project", str(project)], env=env, stdout=log, stderr=subprocess.STDOUT)
    shot = ARTIFACTS / "qgis-desktop-dock.png"
    try:
        state = wait_for_stage(status, qgis, {"ready for screenshot", "failed"}, 900, tmp_path)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        subprocess.run(["import", "-display", xvfb, "-window", "root", str(shot)], check=True, timeout=60)
        status.with_name("screenshot.done").touch()
        assert state["stage"] != "failed", state.get("error")
        final = wait_for_stage(status, qgis, {"done", "failed"}, 120, tmp_path)
        qgis.wait(timeout=120)
    finally:
        if qgis.poll() is None:
            qgis.kill()
        log.close()
    assert final["stage"] == "done", final.get("error")
    assert state["group"].startswith("SpecAware classes — scene")
    labels = [c[1] for c in state["classes"]]
    assert labels == sorted(labels) and len(labels) >= 3 and "road" in " ".join(labels)
    assert Path(state["source"]).with_suffix(".qml").is_file()
    assert any("Model e2e-demo trained" in m for m in state["messages"])
    assert final["leftovers"] == {"actions": [], "docks": [], "menus": [], "provider": False}
    assert Path(state["exported"]).is_file() and state["change_group"].startswith("SpecAware change")
    assert state["change_layers"][:2] == ["change polygons", "change"]
    assert shot.stat().st_size > 20000


def wait_for_stage(status: Path, qgis, stages: set, timeout: float, tmp_path: Path) -> dict:
    end = time.monotonic() + timeout
    state = {}
    while time.monotonic() < end:
        if status.exists():
            state = json.loads(status.read_text())
            if state["stage"] in stages:
                return state
        if qgis.poll() is not None:
            raise AssertionError(f"QGIS exited ({qgis.returncode}) at stage {state.get('stage')!r}: "
                                 f"{(tmp_path / 'qgis.log').read_text()[-3000:]}")
        time.sleep(1)
    raise AssertionError(f"QGIS did not reach {stages} in {timeout} s; last: {state}; log: "
                         f"{(tmp_path / 'qgis.log').read_text()[-3000:]}")
