"""The releasable zip, deploying it into a QGIS profile, and the algorithms through headless qgis_process."""
import configparser
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, system_qgis_env
from scenes import labelled_raster

REQUIRED_METADATA = ["name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                     "repository", "tracker", "homepage", "tags", "icon", "category", "experimental"]


def build(*args, env=None):
    r = subprocess.run([sys.executable, str(ROOT / "build.py"), *args], capture_output=True, text=True, cwd=ROOT,
                       env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_metadata_is_complete():
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt")
    general = meta["general"]
    missing = [k for k in REQUIRED_METADATA if not general.get(k, "").strip()]
    assert missing == []
    assert general["qgisMinimumVersion"] == "3.22" and general["category"] == "Raster"
    assert (ROOT / "specaware_qgis" / general["icon"]).is_file()


def test_package_follows_the_rules():
    build("package")
    version = configparser.ConfigParser()
    version.read(ROOT / "metadata.txt")
    zip_path = ROOT / "dist" / f"specaware_qgis-{version['general']['version']}.zip"
    assert zip_path.stat().st_size < 25e6
    names = zipfile.ZipFile(zip_path).namelist()
    assert {n.split("/")[0] for n in names} == {"specaware_qgis"}
    for must in ["specaware_qgis/metadata.txt", "specaware_qgis/LICENSE", "specaware_qgis/__init__.py",
                 "specaware_qgis/engine/service/worker.py", "specaware_qgis/engine/model/vit.py",
                 "specaware_qgis/resources/attribute_embeddings.json",
                 "specaware_qgis/resources/sensors/aviris_ng.json", "specaware_qgis/resources/vocabulary.json",
                 "specaware_qgis/processing/algorithms.py", "specaware_qgis/workflows.py",
                 "specaware_qgis/sections/classify.py", "specaware_qgis/sections/engine_and_weights.py"]:
        assert must in names
    bad = [n for n in names if n.endswith((".pyc", ".pth", ".pt", ".tif", ".img", ".mat", ".npz"))
           or "__pycache__" in n or "/tests/" in n or "shared/data" in n]
    assert bad == []


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """The zip installed into a fresh QGIS profile folder, where deploy enables it (the tests below run it)."""
    if not shutil.which("qgis_process.bin"):
        pytest.skip("needs qgis_process.bin (Debian package qgis, installed by `python3 build.py setup` as root)")
    base = tmp_path_factory.mktemp("qgis-config")
    build("deploy", "--profiles-dir", str(base / "profiles"))
    assert (base / "profiles" / "default" / "python" / "plugins" / "specaware_qgis" / "engine").is_dir()
    env = system_qgis_env(QGIS_CUSTOM_CONFIG_PATH=base, SPECAWARE_ENGINE_PYTHON=sys.executable,
                          SPECAWARE_DATA_DIR=base / "data")  # no PYTHONPATH: the deployed copy stands on its own
    return env


def qgis_process(env, alg, **params):
    args = [f"{k}={v}" for k, v in params.items()]
    r = subprocess.run(["qgis_process.bin", "--json", "run", alg, "--", *args], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return json.loads(r.stdout)["results"]


def test_qgis_process_runs_the_deployed_plugin(deployed, tmp_path):
    raster, truth = labelled_raster(tmp_path / "scene.tif")
    info = qgis_process(deployed, "specaware:sensorprofile", INPUT=raster)
    assert info["BANDS_USED"] == 20 and info["GSD"] == 2.0
    out = qgis_process(deployed, "specaware:classify", INPUT=raster, CLUSTERS=3, OUTPUT=tmp_path / "clusters")
    classes = Path(out["CLASSES"])
    assert classes.is_file() and classes.with_suffix(".qml").is_file()
    assert "paletted" in classes.with_suffix(".qml").read_text()
    assert Path(out["REPORT"]).read_text().count("cluster ") >= 3


def test_qgis_process_fine_tunes_classifies_and_detects_change(deployed, tmp_path):
    from osgeo import gdal
    from scenes import NORTH_UP, stripe_polygons, write_polygons
    from test_engine_io import WL20, make_tif
    raster, truth = labelled_raster(tmp_path / "scene.tif")
    polygons = write_polygons(tmp_path / "train.gpkg", stripe_polygons())
    trained = qgis_process(deployed, "specaware:finetune", INPUT=raster, POLYGONS=polygons, CLASS_FIELD="class",
                           NAME="qp-stripes", EPOCHS=3)
    assert Path(trained["BUNDLE"]).name == "qp-stripes"
    mapped = qgis_process(deployed, "specaware:classify", INPUT=raster, MODEL="qp-stripes", OUTPUT=tmp_path / "map")
    assert (gdal.Open(mapped["CLASSES"]).ReadAsArray() == truth).mean() > 0.8
    cube = gdal.Open(str(raster)).ReadAsArray()
    cube[:, 10:30, 4:14] = cube[:, 10:30, 40:41]
    after = make_tif(tmp_path / "after.tif", cube, gt=NORTH_UP, wavelengths=WL20)
    change = qgis_process(deployed, "specaware:detectchange", BEFORE=raster, AFTER=after, MIN_AREA=20,
                          OUTPUT=tmp_path / "change")
    assert change["CHANGED_HA"] > 0 and Path(change["POLYGONS"]).is_file()
    assert Path(change["CHANGE"]).with_suffix(".qml").is_file()


def qsettings_value(ini: Path, key: str):
    """What QGIS reads from its profile's QGIS3.ini (Qt's own INI parser)."""
    from qgis.PyQt.QtCore import QSettings
    return QSettings(str(ini), QSettings.IniFormat).value(key)


def test_deploy_enables_the_plugin_and_records_the_engine_python(tmp_path):
    """The deployed plugin finds the engine that `build.py setup` made in this checkout, with nothing to type."""
    profiles = tmp_path / "profiles"
    ini = profiles / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[locale]\nuserLocale=en_GB\n\n[specaware]\ndevice=cpu\n")
    r = build("deploy", "--profiles-dir", str(profiles))
    venv_python = ROOT / ".venv" / "bin" / "python"
    assert f"recorded the engine Python {venv_python}" in r.stdout and "enabled specaware_qgis" in r.stdout
    assert qsettings_value(ini, "specaware/engine_python") == str(venv_python)  # the venv's, not its target's
    assert qsettings_value(ini, "PythonPlugins/specaware_qgis") == "true"
    assert qsettings_value(ini, "specaware/device") == "cpu" and qsettings_value(ini, "locale/userLocale") == "en_GB"

    odd = tmp_path / "my engine, 2" / "python"  # a comma would make QSettings read a list
    odd.parent.mkdir()
    odd.symlink_to(sys.executable)
    r = build("deploy", "--profiles-dir", str(profiles), "--engine-python", str(odd))
    assert qsettings_value(ini, "specaware/engine_python") == str(odd)
    r = build("deploy", "--profiles-dir", str(profiles))  # a Python the user chose is kept
    assert qsettings_value(ini, "specaware/engine_python") == str(odd) and "keeps its engine Python" in r.stdout
