"""The demo end to end with real QGIS: scene, fine-tune, classify, accuracy, a second date with known changed
blocks, change detection and its accuracy, exported change polygons, and a project that QGIS reopens on the
scene."""
import json
import subprocess
import sys

from conftest import ROOT

REOPEN = """
import json, sys
from qgis.core import QgsApplication, QgsProject
app = QgsApplication([], False); app.initQgis()
p = QgsProject.instance(); assert p.read(sys.argv[1])
layers = list(p.mapLayers().values())
view = p.viewSettings().defaultViewExtent()
scene = p.mapLayersByName("scene 2023 (false colour: NIR, red, green)")[0]
group = p.layerTreeRoot().findGroup("SpecAware change 2023 → 2024")
print(json.dumps({"layers": len(layers), "valid": all(l.isValid() for l in layers),
                  "renderers": sorted(type(l.renderer()).__name__ for l in layers),
                  "view_crs": view.crs().authid(), "crs": p.crs().authid(),
                  "view_holds_scene": view.contains(scene.extent()), "view_area": view.area(),
                  "scene_area": scene.extent().area(),
                  "change_group": [c.layer().name() for c in group.children()],
                  "visible": [c.layer().name() for c in group.children() if c.isVisible()]}))
p.clear()
"""


def test_demo_runs_the_three_workflows_and_writes_a_project_that_opens_on_the_scene(tmp_path, engine_env):
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py"), "--out", str(out), "--epochs", "3"],
                       cwd=ROOT, env={**engine_env, "QT_QPA_PLATFORM": "offscreen"}, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "full known map    OA" in r.stdout and "backbone          random initialisation" in r.stdout
    change_line = next(line for line in r.stdout.splitlines() if line.startswith("  known change      OA"))
    change = json.loads((out / "accuracy_change.json").read_text())
    assert change["per_class"]["change"]["recall"] > 0.8 and change["oa"] > 0.9, change_line
    for rel in ("models/demo/weights.pt", "models/demo/report.html", "classified/classes.tif",
                "classified/classes.qml", "classified/report.json", "accuracy_full_map.json", "demo.qgz",
                "change/change.tif", "change/change.qml", "change/change.gpkg", "exported/change_polygons.gpkg",
                "scene_2024/change_truth.tif"):
        assert (out / rel).is_file(), rel
    r = subprocess.run([sys.executable, "-c", REOPEN, str(out / "demo.qgz")],
                       env={**engine_env, "QT_QPA_PLATFORM": "offscreen"}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    project = json.loads(r.stdout.strip().splitlines()[-1])
    assert project["layers"] == 10 and project["valid"]
    assert {"QgsPalettedRasterRenderer", "QgsCategorizedSymbolRenderer"} <= set(project["renderers"])
    # opens on the scene (a little margin around it), not on an empty canvas at 1:1
    assert project["view_crs"] == project["crs"] == "EPSG:32611" and project["view_holds_scene"]
    assert project["view_area"] < 1.2 * project["scene_area"]
    assert project["change_group"] == ["change polygons (exported)", "change", "change magnitude",
                                       "known change (truth)", "scene 2024 (false colour)"]
    assert project["visible"] == ["change polygons (exported)"]
