"""The demo end to end with real QGIS: scene, fine-tune, classify, accuracy, and a project that QGIS reopens."""
import subprocess
import sys

from conftest import ROOT


def test_demo_writes_a_project_qgis_can_open(tmp_path, engine_env):
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py"), "--out", str(out), "--epochs", "3"],
                       cwd=ROOT, env={**engine_env, "QT_QPA_PLATFORM": "offscreen"}, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "full known map    OA" in r.stdout and "backbone          random initialisation" in r.stdout
    for rel in ("models/demo/weights.pt", "models/demo/report.html", "classified/classes.tif",
                "classified/classes.qml", "classified/report.json", "accuracy_full_map.json", "demo.qgz"):
        assert (out / rel).is_file(), rel
    check = ("from qgis.core import QgsApplication, QgsProject\n"
             "app = QgsApplication([], False); app.initQgis()\n"
             f"p = QgsProject.instance(); assert p.read({str(out / 'demo.qgz')!r})\n"
             "layers = list(p.mapLayers().values())\n"
             "print(len(layers), all(l.isValid() for l in layers))\n"
             "print(sorted(type(l.renderer()).__name__ for l in layers))\n")
    r = subprocess.run([sys.executable, "-c", check], env={**engine_env, "QT_QPA_PLATFORM": "offscreen"},
                       capture_output=True, text=True, timeout=120)
    lines = r.stdout.split("\n")
    assert lines[0] == "5 True", r.stdout + r.stderr
    assert "QgsPalettedRasterRenderer" in lines[1] and "QgsCategorizedSymbolRenderer" in lines[1]
