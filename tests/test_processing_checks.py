"""Processing: every parameter explains itself, and bad values are refused before the run with the engine's own
sentence (its `validate` job on the quick worker), without writing anything."""
import pytest

from scenes import labelled_raster

pytestmark = pytest.mark.usefixtures("qgis_app")


def algorithms():
    from qgis.core import QgsApplication
    return QgsApplication.processingRegistry().providerById("specaware").algorithms()


def test_every_parameter_has_help_and_the_help_panel_lists_them():
    missing = [f"{a.id()}:{p.name()}" for a in algorithms() for p in a.parameterDefinitions() if len(p.help()) < 15]
    assert missing == []
    for alg in algorithms():
        panel = alg.shortHelpString()
        assert all(p.description().split(" (")[0].replace("'", "&#x27;") in panel for p in alg.parameterDefinitions())


def check(alg_id: str, params: dict) -> tuple[bool, str]:
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProject
    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    return alg.checkParameterValues(params, context)


def test_bad_values_are_refused_before_the_run_with_the_engines_sentence(tmp_path):
    raster, _ = labelled_raster(tmp_path / "scene.tif")
    ok, message = check("specaware:detectchange", {"BEFORE": str(raster), "AFTER": str(raster), "THRESHOLD": "high",
                                                   "OUTPUT": str(tmp_path / "change")})
    assert not ok and message.startswith("threshold 'high' is not allowed: give ")  # the engine's words
    ok, message = check("specaware:classifycells", {"INPUT": str(raster), "MODEL": "m", "CELL_SIZE": 8,
                                                    "OUTPUT": str(tmp_path / "cells.shp")})
    assert not ok and "the cells are written as a GeoPackage" in message and "cells.shp" in message
    ok, message = check("specaware:classify", {"INPUT": str(raster), "CLUSTERS": 3, "OUTPUT": str(raster)})
    assert not ok and message.startswith(f"out: {raster} is a file, not a folder")
    ok, message = check("specaware:classify", {"INPUT": str(raster), "CLUSTERS": 3, "OUTPUT": str(tmp_path / "k")})
    assert (ok, message) == (True, "")
    written = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".aux.xml"))  # GDAL's own cache
    assert written == ["scene.tif"], "a check writes nothing"
