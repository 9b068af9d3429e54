"""The plugin's engine job chains (`specaware_qgis/workflows.py`) and its shared vocabulary, without QGIS."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from specaware_qgis import vocabulary, workflows

FINETUNE = {"raster": "/d/scene.tif", "polygons": "/d/train.gpkg", "layer": None, "class_field": "class",
            "out": "stripes", "preset": "small", "head": "light", "epochs": 3, "seed": 7, "profile": "aviris_ng"}


def run_chain(steps, answers):
    """Run steps through a stand-in engine that answers each job from `answers`; returns (calls, results, ticks)."""
    calls, ticks = [], []

    def run_job(job, params, progress):
        calls.append((job, params))
        progress(0.5, f"{job} half way")
        return answers[job]
    results = workflows.run_steps(steps, run_job, lambda f, m: ticks.append((round(f, 3), m)))
    return calls, results, ticks


def test_workflows_and_vocabulary_need_no_qgis():
    code = ("import sys, specaware_qgis.workflows, specaware_qgis.vocabulary; "
            "print([m for m in sys.modules if m.split('.')[0] in ('qgis', 'PyQt5', 'PyQt6', 'torch', 'engine')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_vocabulary_is_the_shared_file():
    words = json.loads((ROOT / "resources" / "vocabulary.json").read_text())
    assert vocabulary.PATH == ROOT / "resources" / "vocabulary.json"
    assert (vocabulary.PRESETS, vocabulary.HEADS, vocabulary.BACKBONE_MODES, vocabulary.TASKS, vocabulary.DEVICES) == (
        words["presets"], words["heads"], words["backbone_modes"], words["tasks"], words["devices"])
    assert workflows.CHANGE_TASK in vocabulary.TASKS


def test_classify_with_a_model_or_clusters():
    assert workflows.classify("/d/a.tif", "/o", model="stripes") == [
        ("classify", {"raster": "/d/a.tif", "out": "/o", "model": "stripes", "clusters": None, "profile": None,
                      "overwrite": False})]
    (job, params), = workflows.classify("/d/a.tif", "/o", clusters=6, profile="/p.json")
    assert job == "classify" and params["clusters"] == 6 and params["model"] is None and params["profile"] == "/p.json"


def test_finetune_alone_and_followed_by_the_model_list(tmp_path):
    assert workflows.finetune(FINETUNE, tmp_path) == [("finetune", FINETUNE)]
    steps = workflows.finetune(FINETUNE, tmp_path, list_models=True)
    assert steps == [("finetune", FINETUNE), ("models", {"action": "list"})]
    calls, results, ticks = run_chain(steps, {"finetune": {"bundle": "/m/stripes"}, "models": {"models": []}})
    assert [job for job, _ in calls] == ["finetune", "models"] and results[0]["bundle"] == "/m/stripes"
    assert ticks == [(0.25, "finetune half way"), (0.75, "models half way")]


def test_adapt_then_finetune_from_the_adapted_backbone(tmp_path):
    steps = workflows.finetune(FINETUNE, tmp_path, adapt_minutes=2.5, list_models=True)
    assert [job for job, _ in steps] == ["adapt", "finetune", "models"]
    adapt = steps[0][1]
    assert adapt == {"raster": "/d/scene.tif", "preset": "small", "seed": 7, "profile": "aviris_ng", "minutes": 2.5,
                     "out": str(tmp_path / "adapted-stripes.pth"), "overwrite": True}  # the plugin's own file
    backbone = str(tmp_path / "adapted-stripes.pth")
    calls, results, _ = run_chain(steps, {"adapt": {"backbone": backbone, "steps": 12},
                                          "finetune": {"bundle": "/m/stripes"}, "models": {"models": []}})
    assert calls[1] == ("finetune", {**FINETUNE, "backbone": backbone})
    assert "backbone" not in FINETUNE, "the caller's params are left as they were"
    assert results[0]["steps"] == 12 and len(results) == 3


def test_adaptation_keeps_a_chosen_backbone_to_start_from(tmp_path):
    params = {**FINETUNE, "backbone": "/w/own.pth"}
    adapt = workflows.finetune(params, tmp_path, adapt_minutes=1.0)[0][1]
    assert adapt["backbone"] == "/w/own.pth"


def test_unsupervised_and_from_to_change_are_one_step():
    (job, params), = workflows.change("/d/a.tif", "/d/b.tif", "/o/change-b", min_area=50.0)
    assert job == "change" and params == {"before": "/d/a.tif", "after": "/d/b.tif", "out": "/o/change-b",
                                          "threshold": "significance", "min_area": 50.0, "model": None,
                                          "method": "specaware", "p_value": 0.001, "overwrite": False}
    (job, params), = workflows.change("/d/a.tif", "/d/b.tif", "/o/c", "otsu", method="irmad", p_value=0.01)
    assert params["method"] == "irmad" and params["threshold"] == "otsu" and params["p_value"] == 0.01
    (job, params), = workflows.change("/d/a.tif", "/d/b.tif", "/o/c", 0.3, model="/m/landcover")
    assert params["model"] == "/m/landcover" and params["threshold"] == 0.3


def test_supervised_change_trains_a_change_model_then_maps_with_it():
    samples = {"polygons": "/d/s.gpkg", "layer": "s", "class_field": "class", "preset": "tiny", "epochs": 3}
    steps = workflows.change("/d/a.tif", "/d/b.tif", "/o/change-b-20250101", samples=samples)
    assert [job for job, _ in steps] == ["finetune", "change"]
    assert steps[0][1] == {"task": "change", "raster": "/d/a.tif", "after": "/d/b.tif",
                           "out": "change-change-b-20250101", "change_method": "specaware", **samples}
    calls, results, ticks = run_chain(steps, {"finetune": {"bundle": "/m/change-change-b-20250101"},
                                              "change": {"changed_area_ha": 1.5}})
    assert calls[1][1]["model"] == "/m/change-change-b-20250101" and calls[1][1]["before"] == "/d/a.tif"
    assert results[-1]["changed_area_ha"] == 1.5 and ticks[-1] == (0.75, "change half way")


def test_a_failing_step_ends_the_chain(tmp_path):
    def run_job(job, params, progress):
        raise RuntimeError(f"{job} failed")
    finished = []
    with pytest.raises(RuntimeError, match="adapt failed"):
        workflows.run_steps(workflows.finetune(FINETUNE, tmp_path, adapt_minutes=1.0), run_job, lambda f, m: None,
                            lambda job, result: finished.append(job))
    assert finished == []


def test_each_finished_step_is_reported_in_order(tmp_path):
    finished = []
    workflows.run_steps(workflows.finetune(FINETUNE, Path(tmp_path), adapt_minutes=1.0),
                        lambda job, params, progress: {"backbone": "/w/a.pth", "bundle": "/m/b"},
                        lambda f, m: None, lambda job, result: finished.append((job, result["bundle"])))
    assert finished == [("adapt", "/m/b"), ("finetune", "/m/b")]
