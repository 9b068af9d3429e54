"""Finding a Python that can run the engine (torch, GDAL, NumPy, platformdirs), or making one.

Order: QGIS's own interpreter when torch imports there, then the interpreter set in the settings, then the
plugin's own venv under the user data dir. Nothing is ever pip-installed into QGIS's Python.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .client import default_python, engine_root

PROBE = ("import json, numpy, platformdirs, torch; from osgeo import gdal; "
         "print(json.dumps({'torch': torch.__version__, 'cuda': torch.cuda.is_available()}))")
TORCH_VERSION = "2.13.0"


@dataclass
class EngineEnvironment:
    python: str | None
    source: str  # "qgis", "configured", "managed" or "none"
    message: str
    torch: str | None = None
    cuda: bool = False

    @property
    def ok(self) -> bool:
        return self.python is not None


def user_data_dir() -> Path:
    """The same folder the engine uses (`SPECAWARE_DATA_DIR`, else platformdirs' user data dir)."""
    if os.environ.get("SPECAWARE_DATA_DIR"):
        return Path(os.environ["SPECAWARE_DATA_DIR"])
    try:
        import platformdirs
        return Path(platformdirs.user_data_dir("specaware", appauthor=False))
    except ImportError:  # QGIS's Python may lack platformdirs; these are its answers
        if sys.platform == "win32":
            return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "specaware"
        if sys.platform == "darwin":
            return Path.home() / "Library" / "Application Support" / "specaware"
        return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "specaware"


def managed_python() -> Path:
    venv = user_data_dir() / "engine-venv"
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def probe(python: str, timeout: float = 180.0) -> tuple[dict | None, str]:
    """({torch, cuda}, "") when the engine's packages import under `python`, else (None, why not)."""
    if not python or not Path(python).exists() and not shutil.which(python):
        return None, f"{python or 'no interpreter'} does not exist"
    env = {**os.environ, "PYTHONPATH": str(engine_root())}
    try:
        out = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=timeout, env=env,
                             creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{python} could not be run ({e})"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"{python}: {last}"
    return json.loads(out.stdout.strip().splitlines()[-1]), ""


def find_engine(configured: str | None = None) -> EngineEnvironment:
    """The first interpreter that can run the engine, with a sentence saying which and why."""
    tried = []
    for source, python in (("qgis", default_python()), ("configured", configured),
                           ("managed", str(managed_python()))):
        if not python:
            continue
        found, why = probe(python)
        if found:
            where = {"qgis": "QGIS's own Python", "configured": "the engine Python from the settings",
                     "managed": "the plugin's engine environment"}[source]
            return EngineEnvironment(python, source, f"engine: {where} ({python}), torch {found['torch']}"
                                     f"{', CUDA available' if found['cuda'] else ''}", found["torch"], found["cuda"])
        tried.append(why)
    return EngineEnvironment(None, "none", "No Python with PyTorch was found for the SpecAware engine ("
                             + "; ".join(tried) + "). Choose 'Create engine environment' to install one under "
                             f"{user_data_dir()}, or set an existing Python with torch in the SpecAware settings.")


def torch_index_url() -> str:
    """PyTorch's wheel index for this machine: the CUDA build the NVIDIA driver supports, else the CPU build."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            text = subprocess.run([smi], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            text = ""
        m = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", text)
        if m:
            cuda = (int(m.group(1)), int(m.group(2)))
            for wheel in ((12, 8), (12, 6), (11, 8)):  # builds PyTorch publishes for 2.13
                if cuda >= wheel:
                    return f"https://download.pytorch.org/whl/cu{wheel[0]}{wheel[1]}"
    return "https://download.pytorch.org/whl/cpu"


def create_managed_environment(progress: Callable[[float, str], None], is_cancelled: Callable[[], bool],
                               base_python: str | None = None, index_url: str | None = None) -> str:
    """Create the plugin's venv (seeing QGIS's GDAL) and pip-install torch into it; removed again on failure."""
    python = managed_python()
    venv = python.parents[1]
    base = base_python or default_python()
    index = index_url or torch_index_url()
    steps = [([base, "-m", "venv", "--system-site-packages", str(venv)], f"creating {venv}"),
             ([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--index-url", index,
               "--extra-index-url", "https://pypi.org/simple", f"torch=={TORCH_VERSION}", "platformdirs"],
              f"installing torch {TORCH_VERSION} from {index}")]
    try:
        for i, (cmd, what) in enumerate(steps):
            progress(i / len(steps), what)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            tail = []
            for line in proc.stdout:
                tail = (tail + [line.rstrip()])[-5:]
                progress(i / len(steps), f"{what}: {line.strip()[:120]}")
                if is_cancelled():
                    proc.kill()
            if proc.wait() != 0:
                if is_cancelled():
                    raise RuntimeError("cancelled; the engine environment was removed")
                raise RuntimeError(f"{what} failed: {' | '.join(tail)}")
        found, why = probe(str(python))
        if not found:
            raise RuntimeError(f"the new environment cannot run the engine: {why}")
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)
        raise
    progress(1.0, f"engine environment ready: torch {found['torch']}")
    return str(python)
