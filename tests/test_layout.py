"""Project layout rules from the design card and the house plan (engine floors that only import downwards, one
vocabulary for the engine and the plugin)."""
import ast
import json
import re

from conftest import ROOT

# The engine's floors, bottom up: a module may import its own floor and those below, never one above.
LAYERS = ["core", "io", "model", "learn", "tasks", "service"]


def engine_modules():
    for path in sorted((ROOT / "engine").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield path, [p for p in parts if p != "__init__"]


def layer_of(parts: list[str]) -> int:
    """The floor of engine.<parts>; the package itself (its version) is the ground, `__main__` the top."""
    if len(parts) == 1:
        return 0
    if parts[1] == "__main__":
        return len(LAYERS) - 1
    return LAYERS.index(parts[1])


def imported_engine_modules(path, parts):
    """(line, imported module parts, inside a function?) for every import of an engine module."""
    package = parts if path.name == "__init__.py" else parts[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = base + (node.module.split(".") if node.module else [])
        elif isinstance(node, ast.Import):
            target = node.names[0].name.split(".")
        else:
            continue
        if target and target[0] == "engine":
            yield node.lineno, target, id(node) in inner


def test_engine_imports_only_downwards_and_at_module_level():
    upward, inner = [], []
    for path, parts in engine_modules():
        lines = path.read_text(encoding="utf-8").splitlines()
        for lineno, target, in_function in imported_engine_modules(path, parts):
            if layer_of(target) > layer_of(parts):
                upward.append(f"{path.relative_to(ROOT)}:{lineno} imports {'.'.join(target)}")
            if in_function and "# optional" not in lines[lineno - 1]:
                inner.append(f"{path.relative_to(ROOT)}:{lineno}")
    assert not upward, f"engine/ floors are {' < '.join(LAYERS)}; these imports go upwards: {upward}"
    assert not inner, ("imports inside functions hide cycles; only optional heavy dependencies may be imported "
                       f"late (mark them '# optional'): {inner}")


def test_every_engine_module_sits_on_a_floor():
    stray = [str(p.relative_to(ROOT)) for p, parts in engine_modules()
             if len(parts) == 2 and parts[1] not in ("__init__", "__main__") and parts[1] not in LAYERS]
    assert not stray, f"put these modules on one of the floors {LAYERS}: {stray}"


def test_no_python_file_over_400_lines():
    big = [f"{p.relative_to(ROOT)} ({n})" for pkg in ("engine", "specaware_qgis") for p in (ROOT / pkg).rglob("*.py")
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400]
    assert not big, f"split these files (one concept a module): {big}"


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
