"""Shared test fixtures: paths to ../shared, a skip that says why, small random models."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared").resolve()
REFERENCE = SHARED / "reference"
DATA = SHARED / "data"
sys.path.insert(0, str(ROOT))


def need_shared(path: Path) -> Path:
    """Skip, saying why, when a fixture from ../shared is not present on this machine."""
    if not path.exists():
        pytest.skip(f"needs {path} from ../shared (the project's shared fixtures), which is not on this machine")
    return path


@pytest.fixture
def engine_env():
    """Environment for running `python -m engine` in a subprocess from the repository root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="session")
def qgis_app(tmp_path_factory):
    """One real QgsApplication (GUI enabled, offscreen) for the plugin tests, with its own settings profile and
    its own engine data dir, so nothing touches the user's QGIS or models."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication
    base = tmp_path_factory.mktemp("qgis")
    os.environ["SPECAWARE_DATA_DIR"] = str(base / "specaware-data")
    app = QgsApplication([], True, str(base / "profile"))
    app.initQgis()
    # PyQt aborts on an exception in a slot unless sys.excepthook is replaced (QGIS replaces it too): record
    # them instead, and let `slot_errors` fail the test that caused them.
    sys.excepthook = lambda *exc: SLOT_ERRORS.append("".join(__import__("traceback").format_exception(*exc)))
    from specaware_qgis.processing.provider import SpecAwareProvider
    provider = SpecAwareProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    yield app
    from specaware_qgis.engine_process import Engine
    Engine.shared().shutdown()
    QgsApplication.processingRegistry().removeProvider(provider)


SLOT_ERRORS: list[str] = []


@pytest.fixture
def slot_errors():
    """Fails the test when a Qt slot raised during it."""
    SLOT_ERRORS.clear()
    yield SLOT_ERRORS
    assert not SLOT_ERRORS, "exception in a Qt slot:\n" + "\n".join(SLOT_ERRORS)


def system_qgis_env(**extra) -> dict:
    """Environment for Debian's QGIS executables: no PYTHONPATH, and no other Python's bin folder on PATH (a
    pyenv `python3` ahead of /usr/bin makes QGIS's embedded Python look for its library in the wrong place)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PYENV")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if ".pyenv" not in p and ".venv" not in p)
    env["QT_QPA_PLATFORM"] = env.get("QT_QPA_PLATFORM", "offscreen")
    return {**env, **{k: str(v) for k, v in extra.items()}}


def wait_for(done, timeout=300.0, what="the task"):
    """Let Qt deliver task signals (they arrive on this, the main, thread) until done() is true."""
    from qgis.PyQt.QtCore import QCoreApplication
    end = time.monotonic() + timeout
    while not done():
        QCoreApplication.processEvents()
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not finish in {timeout} s")
        time.sleep(0.02)


@pytest.fixture
def make_dock():
    """Docks on a real message bar; each is closed at the end of its test, as unload does: tasks cancelled and
    finished, then the widget deleted at once (a parentless dock left to Python's garbage collector could be
    freed in the middle of a later signal)."""
    from qgis.core import QgsProject
    from qgis.gui import QgsMessageBar
    from qgis.PyQt import sip
    from specaware_qgis.dock import SpecAwareDock
    QgsProject.instance().clear()
    made = []

    def make(**kw):
        d = SpecAwareDock(QgsMessageBar(), **kw)
        made.append(d)
        return d
    yield make
    for d in made:
        d.cleanup()
        wait_for(lambda: not d.queue.tasks, what="cancelled tasks")
        sip.delete(d.bar)
        sip.delete(d)
    QgsProject.instance().clear()


@pytest.fixture
def dock(make_dock):
    d = make_dock()
    wait_for(lambda: not d.queue.tasks, what="the engine check")
    return d
