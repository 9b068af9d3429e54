"""Project layout rules from the design card."""
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
