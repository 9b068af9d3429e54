"""The engine environment: where it lives on each platform, how torch is installed (pip's own configuration, the CUDA
wheel index only for a GPU), and creating it for real on this machine, then running a job with it."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import platformdirs.macos
import platformdirs.unix
import platformdirs.windows
import pytest

from conftest import ROOT
from specaware_qgis.environment import (CUDA_BUILDS, TORCH_VERSION, default_data_dir, driver_cuda, install_command,
                                        managed_python)
from test_engine_io import WL20, make_tif, spectra

SMI_GPU = """| NVIDIA-SMI 570.86.15              Driver Version: 570.86.15      CUDA Version: {}     |
|   0  NVIDIA H200                    On  |   00000000:19:00.0 Off |                    0 |"""


def test_data_dir_matches_platformdirs_on_windows_macos_and_linux(monkeypatch, tmp_path):
    """QGIS's own Python may lack platformdirs; the plugin's fallback must name the engine's folder."""
    home = tmp_path / "home"
    local = "C:\\Users\\ana\\AppData\\Local"
    monkeypatch.setenv("LOCALAPPDATA", local)
    assert default_data_dir("win32", {"LOCALAPPDATA": local}, home) == Path(
        platformdirs.windows.get_win_folder_from_env_vars("CSIDL_LOCAL_APPDATA")) / "specaware"
    monkeypatch.setenv("HOME", str(home))
    assert default_data_dir("darwin", {}, home) == Path(platformdirs.macos.MacOS("specaware", appauthor=False)
                                                        .user_data_dir)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir("linux", {"XDG_DATA_HOME": str(tmp_path / "xdg")}, home) == Path(
        platformdirs.unix.Unix("specaware", appauthor=False).user_data_dir)
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_data_dir("linux", {}, home) == Path(platformdirs.unix.Unix("specaware", appauthor=False)
                                                       .user_data_dir)
    assert managed_python(tmp_path, "win32") == tmp_path / "engine-venv" / "Scripts" / "python.exe"
    assert managed_python(tmp_path, "darwin") == tmp_path / "engine-venv" / "bin" / "python"


def test_qgis_profiles_folder_on_windows_macos_and_linux(tmp_path):
    sys.path.insert(0, str(ROOT))
    import build
    home = tmp_path / "home"
    assert build.qgis_profiles_dir("win32", {"APPDATA": "C:/Users/ana/AppData/Roaming"}, home) == Path(
        "C:/Users/ana/AppData/Roaming/QGIS/QGIS3/profiles")
    assert build.qgis_profiles_dir("darwin", {}, home) == home / "Library/Application Support/QGIS/QGIS3/profiles"
    assert build.qgis_profiles_dir("linux", {}, home) == home / ".local/share/QGIS/QGIS3/profiles"


def test_torch_comes_from_pips_configuration_and_the_cuda_index_only_for_a_gpu():
    plain = install_command("py", None)
    assert plain == ["py", "-m", "pip", "install", "--disable-pip-version-check", f"torch=={TORCH_VERSION}",
                     "platformdirs"]  # no --index-url: a mirror, a wheel folder or constraints of the machine apply
    assert driver_cuda("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.") is None
    assert driver_cuda(SMI_GPU.format("12.9")) == (12, 9)
    newest = CUDA_BUILDS[0]
    assert install_command("py", (12, 9))[-2:] == ["--extra-index-url",
                                                   f"https://download.pytorch.org/whl/cu{newest[0]}{newest[1]}"]
    assert install_command("py", (12, 4))[-1].endswith("/cu118")  # the newest build this driver runs
    assert install_command("py", (11, 4)) == plain  # too old a driver for any CUDA build: the CPU one


CREATE_AND_RUN = """
import json, sys
from specaware_qgis.client import EngineClient
from specaware_qgis.environment import create_managed_environment, find_engine
said = []
python = create_managed_environment(lambda f, m: said.append(m), lambda: False, base_python=sys.executable)
found = find_engine()
result, _ = EngineClient(found.python, "cpu").run("classify", {"raster": sys.argv[1], "clusters": 3,
                                                               "out": sys.argv[2]})
print(json.dumps({"python": python, "source": found.source, "message": found.message, "said": said,
                  "classes": result["classes"]["names"]}))
"""


def test_create_engine_environment_for_real_then_run_a_job(tmp_path):
    """Under Debian's Python (QGIS's, without torch): the plugin's own venv is created with pip's configuration,
    found, and classifies a raster."""
    if not Path("/usr/bin/python3").is_file():
        pytest.skip("needs Debian's /usr/bin/python3 (QGIS's Python) to create the environment from")
    raster = make_tif(tmp_path / "scene.tif", spectra(20, 16, 16), wavelengths=WL20)
    env = {**os.environ, "SPECAWARE_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    try:
        r = subprocess.run(["/usr/bin/python3", "-c", CREATE_AND_RUN, str(raster), str(tmp_path / "out")], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=900)
    finally:
        shutil.rmtree(tmp_path / "data", ignore_errors=True)  # torch takes a gigabyte
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["python"] == str(tmp_path / "data" / "engine-venv" / "bin" / "python")
    assert out["source"] == "managed" and out["message"].startswith("the plugin's own environment")
    assert any(f"installing torch {TORCH_VERSION}" in m for m in out["said"])
    assert out["classes"] == ["cluster 1", "cluster 2", "cluster 3"]
    from osgeo import gdal
    classes = gdal.Open(str(tmp_path / "out" / "classes.tif")).ReadAsArray()
    assert set(np.unique(classes)) <= {1, 2, 3} and classes.shape == (16, 16)
