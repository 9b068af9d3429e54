"""Finding a Python that can run the engine (torch, GDAL, NumPy, platformdirs), or making one.

Order: QGIS's own interpreter when torch imports there, then the interpreter set in the settings, then the
plugin's own venv under the user data dir. Nothing is ever pip-installed into QGIS's Python.
"""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .client import default_python, engine_root

PROBE = ("import json, numpy, platformdirs, torch; from osgeo import gdal; "
         "print(json.dumps({'torch': torch.__version__, 'cuda': torch.cuda.is_available()}))")
TORCH_VERSION = "2.13.0"
CUDA_BUILDS = ((12, 8), (12, 6), (11, 8))  # the CUDA builds PyTorch publishes for TORCH_VERSION, newest first
CUDA_INDEX = "https://download.pytorch.org/whl/cu{}{}"
SOURCES = {"qgis": "QGIS's own Python", "configured": "the Python set in the SpecAware settings",
           "managed": "the plugin's own environment"}


@dataclass
class EngineEnvironment:
    python: str | None
    source: str  # "qgis", "configured", "managed" or "none"
    message: str  # found: "<where> (<python>), torch X"; else what was tried and what to do
    torch: str | None = None
    cuda: bool = False

    @property
    def ok(self) -> bool:
        return self.python is not None


def default_data_dir(platform: str = sys.platform, environ=os.environ, home: Path | None = None) -> Path:
    """platformdirs' user data dir for `specaware` on `platform`, for a Python without platformdirs."""
    home = Path(home or Path.home())
    if platform == "win32":
        return Path(environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "specaware"
    if platform == "darwin":
        return home / "Library" / "Application Support" / "specaware"
    return Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share") / "specaware"


def user_data_dir() -> Path:
    """The same folder the engine uses (`SPECAWARE_DATA_DIR`, else platformdirs' user data dir)."""
    if os.environ.get("SPECAWARE_DATA_DIR"):
        return Path(os.environ["SPECAWARE_DATA_DIR"])
    try:
        import platformdirs  # optional: QGIS's Python may lack it
        return Path(platformdirs.user_data_dir("specaware", appauthor=False))
    except ImportError:
        return default_data_dir()


def managed_python(data_dir: Path | None = None, platform: str = sys.platform) -> Path:
    """The interpreter of the plugin's own engine environment (a venv under the user data dir)."""
    venv = Path(data_dir or user_data_dir()) / "engine-venv"
    return venv / ("Scripts/python.exe" if platform == "win32" else "bin/python")


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
            return EngineEnvironment(python, source, f"{SOURCES[source]} ({python}), torch {found['torch']}"
                                     f"{', CUDA available' if found['cuda'] else ''}", found["torch"], found["cuda"])
        tried.append(why)
    return EngineEnvironment(None, "none", "No Python with PyTorch was found for the SpecAware engine ("
                             + "; ".join(tried) + "). Choose 'Create engine environment' to install one under "
                             f"{user_data_dir()}, or set an existing Python with torch in the SpecAware settings.")


def driver_cuda(smi_output: str | None = None) -> tuple[int, int] | None:
    """The CUDA version the NVIDIA driver supports, from `nvidia-smi` (run when no output is given); None
    without an NVIDIA GPU."""
    if smi_output is None:
        smi = shutil.which("nvidia-smi")
        if not smi:
            return None
        try:
            smi_output = subprocess.run([smi], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
    m = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", smi_output)
    return (int(m.group(1)), int(m.group(2))) if m else None


def install_command(python: str, cuda: tuple[int, int] | None) -> list[str]:
    """pip installing torch and platformdirs with pip's own configuration (a mirror, a wheel folder,
    constraints); PyTorch's CUDA wheel index is added only for a GPU whose driver runs one of its builds."""
    cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", f"torch=={TORCH_VERSION}", "platformdirs"]
    build = next((b for b in CUDA_BUILDS if cuda and cuda >= b), None)
    return cmd + (["--extra-index-url", CUDA_INDEX.format(*build)] if build else [])


def _pipe_lines(stream, lines: queue.Queue) -> None:
    """Hand a process's output on line by line, then None at its end."""
    for line in stream:
        lines.put(line.rstrip())
    lines.put(None)


def _run_step(cmd: list[str], what: str, progress: Callable[[str], None], is_cancelled: Callable[[], bool]) -> None:
    """Run one installation command, passing its output on as progress; killed when cancelled."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pipe_lines, args=(proc.stdout, lines), daemon=True).start()
    tail: list[str] = []
    while True:
        if is_cancelled():
            proc.kill()
            proc.wait()
            raise RuntimeError("cancelled; the engine environment was removed")
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            break
        tail = (tail + [line])[-5:]
        progress(f"{what}: {line.strip()[:120]}")
    if proc.wait() != 0:
        raise RuntimeError(f"{what} failed: {' | '.join(tail)}")


def create_managed_environment(progress: Callable[[float, str], None], is_cancelled: Callable[[], bool],
                               base_python: str | None = None) -> str:
    """Create the plugin's venv (seeing QGIS's GDAL) and pip-install torch into it; removed again on failure."""
    python = managed_python()
    venv = python.parents[1]
    steps = [([base_python or default_python(), "-m", "venv", "--system-site-packages", str(venv)],
              f"creating {venv}"),
             (install_command(str(python), driver_cuda()), f"installing torch {TORCH_VERSION}")]
    try:
        for i, (cmd, what) in enumerate(steps):
            progress(i / len(steps), what)
            _run_step(cmd, what, lambda text, i=i: progress(i / len(steps), text), is_cancelled)
        found, why = probe(str(python))
        if not found:
            raise RuntimeError(f"the new environment cannot run the engine: {why}")
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)
        raise
    progress(1.0, f"engine environment ready: torch {found['torch']}")
    return str(python)
