"""Bad input through the Processing algorithms in a real QgsApplication: each is refused with the engine's
sentence (before the run, or as the run's error), and leaves no output."""
import re

import pytest

from bad_inputs import make_inputs

pytestmark = pytest.mark.usefixtures("qgis_app")

CASES = [  # (algorithm, parameters from the inputs and an output folder, what the answer must name)
    ("specaware:classify", lambda f, o: {"INPUT": f["scene"], "OUTPUT": str(o)}, r"either a model"),
    ("specaware:classify", lambda f, o: {"INPUT": f["no_wl"], "CLUSTERS": 3, "OUTPUT": str(o)},
     r"nowl\.tif has no wavelength metadata"),
    ("specaware:classify", lambda f, o: {"INPUT": f["scene"], "MODEL": "nobody", "OUTPUT": str(o)},
     r"no model 'nobody'"),
    ("specaware:classify", lambda f, o: {"INPUT": f["neg_fwhm"], "CLUSTERS": 3, "OUTPUT": str(o)},
     r"band\(s\) 20 have FWHM -5 nm"),
    ("specaware:finetune", lambda f, o: {"INPUT": f["scene"], "POLYGONS": f["one_class"], "CLASS_FIELD": "class",
                                         "NAME": "p1", "EPOCHS": 1}, r"single class"),
    ("specaware:finetune", lambda f, o: {"INPUT": f["scene"], "POLYGONS": f["outside"], "CLASS_FIELD": "class",
                                         "NAME": "p2", "EPOCHS": 1}, r"lies over the raster"),
    ("specaware:finetune", lambda f, o: {"INPUT": f["scene"], "POLYGONS": f["polygons"], "CLASS_FIELD": "class",
                                         "NAME": "bad name!", "EPOCHS": 1}, r"model name 'bad name!' .* may use"),
    ("specaware:detectchange", lambda f, o: {"BEFORE": f["scene"], "AFTER": f["scene"], "THRESHOLD": "50",
                                             "OUTPUT": str(o)}, r"threshold .50. is not allowed"),
    ("specaware:detectchange", lambda f, o: {"BEFORE": f["scene"], "AFTER": f["other_place"], "OUTPUT": str(o)},
     r"do not overlap"),
    ("specaware:suggest", lambda f, o: {"INPUT": f["scene"], "MODEL": "nobody", "OUTPUT": str(o / "next.gpkg")},
     r"no model 'nobody'"),
    ("specaware:suggest", lambda f, o: {"INPUT": f["scene"], "MODEL": "nobody", "COUNT": 5,
                                        "OUTPUT": str(o / "next.shp")}, r"give a path ending in \.gpkg"),
    ("specaware:classifycells", lambda f, o: {"INPUT": f["scene"], "MODEL": "nobody", "CELL_SIZE": 8,
                                              "OUTPUT": str(o / "cells.shp")}, r"give a path ending in \.gpkg"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("bad-processing"))


@pytest.mark.parametrize("alg_id,params,expect", CASES, ids=[f"{c[0].split(':')[1]}-{i}" for i, c in enumerate(CASES)])
def test_processing_refuses_with_the_engines_sentence(inputs, tmp_path, alg_id, params, expect):
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsProject
    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    out = tmp_path / "out"
    values = params(inputs, out)
    checked, message = alg.checkParameterValues(values, context)
    if checked:
        feedback = QgsProcessingFeedback()
        _, ok = alg.run(values, context, feedback)
        assert not ok
        message = feedback.textLog()
    assert re.search(expect, message), message
    assert "Traceback" not in message
    assert not out.exists() or not any(out.iterdir())
