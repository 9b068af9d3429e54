"""Project layout rules from the design card."""
import ast
import json
import re

from conftest import ROOT


def test_engine_never_imports_qgis():
    offenders = []
    for path in (ROOT / "engine").rglob("*.py"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.match(r"\s*(from|import)\s+qgis\b", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert not offenders, f"engine/ must run without QGIS: {offenders}"


def test_top_level_layout():
    for name in ("specaware_qgis", "engine", "resources", "tests", "metadata.txt", "build.py", "README.md",
                 "LICENSE", ".ci/run"):
        assert (ROOT / name).exists(), name
    assert "GPL-2.0-or-later" in (ROOT / "LICENSE").read_text()
    assert "python3 build.py test" in (ROOT / ".ci" / "run").read_text()
    assert "python3 build.py test" in (ROOT / "README.md").read_text()


def test_plugin_never_imports_torch():
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in (ROOT / "specaware_qgis").rglob("*.py")
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if re.match(r"\s*(from|import)\s+(torch|engine)\b", line)]
    assert not offenders, f"the plugin talks to the engine process, it never imports torch or engine/: {offenders}"


def test_plugin_imports_qt_only_through_qgis_pyqt():
    """So that Qt6 builds of QGIS follow without edits."""
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in (ROOT / "specaware_qgis").rglob("*.py")
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if re.match(r"\s*(from|import)\s+(PyQt5|PyQt6|PySide2|PySide6)\b", line)]
    assert not offenders, f"import Qt through qgis.PyQt: {offenders}"


def test_plugin_takes_the_engines_word_lists_from_the_vocabulary():
    """Presets, heads, backbone modes, tasks, devices…: the plugin reads resources/vocabulary.json, so a literal
    list of two or more of one list's words in the plugin is a copy that will drift."""
    words = {k: set(v) for k, v in json.loads((ROOT / "resources" / "vocabulary.json").read_text()).items()
             if isinstance(v, list) and all(isinstance(w, str) for w in v)}
    offenders = []
    for path in (ROOT / "specaware_qgis").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.List, ast.Tuple, ast.Set)) and len(node.elts) >= 2 and all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                found = {e.value for e in node.elts}
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno} ({key})" for key, ws in words.items()
                              if found <= ws]
    assert not offenders, f"use specaware_qgis/vocabulary.py: {offenders}"
