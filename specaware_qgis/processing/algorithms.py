"""SpecAware Processing algorithms. Each validates its inputs, runs its engine jobs (the chains of `workflows`,
shared with the dock) through the same `Engine.run` as the dock, styles its outputs (a `.qml` beside each file)
and loads them on completion."""
from __future__ import annotations

import json
from pathlib import Path

from qgis.core import (QgsProcessing, QgsProcessingAlgorithm, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingParameterBoolean, QgsProcessingParameterFile,
                       QgsProcessingOutputFile, QgsProcessingOutputFolder, QgsProcessingOutputHtml,
                       QgsProcessingOutputNumber, QgsProcessingOutputRasterLayer, QgsProcessingOutputString,
                       QgsProcessingOutputVectorLayer, QgsProcessingParameterEnum, QgsProcessingParameterField,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterLayer, QgsProcessingParameterString,
                       QgsProcessingParameterVectorLayer)

from .. import inputs, layers, workflows
from ..client import EngineJobError
from ..engine_process import Engine
from ..inputs import InputError
from ..settings import weights_dir
from ..vocabulary import BACKBONE_MODES, CHANGE_METHODS, HEADS, PRESETS, TASKS, THRESHOLD_MODES
from ..workflows import Step, run_steps

TASK_CHOICES = {"pixels": "land cover (per pixel)", "cells": "grid cells / parcels (one label per polygon)"}
TRAINING_TASKS = [t for t in TASKS if t in TASK_CHOICES]  # change models: the dock's supervised change
TRAINING_TYPES = [QgsProcessing.TypeVectorPolygon, QgsProcessing.TypeVectorPoint]


class EngineAlgorithm(QgsProcessingAlgorithm):
    """Shared plumbing: identity, help, and one engine job with progress, cancel and warnings."""

    job = ""
    algorithm_name = ""
    title = ""
    help = ""

    def name(self) -> str:
        return self.algorithm_name

    def displayName(self) -> str:  # noqa: N802 - QGIS's names below
        return self.title

    def shortHelpString(self) -> str:
        return self.help

    def createInstance(self):
        return type(self)()

    def raster(self, parameters, name, context) -> str:
        try:
            return inputs.raster_path(self.parameterAsRasterLayer(parameters, name, context), name)
        except InputError as e:
            raise QgsProcessingException(str(e)) from e

    def vector(self, parameters, name, context, feedback) -> tuple[str, str | None]:
        path, layer = self.parameterAsCompatibleSourceLayerPathAndLayerName(
            parameters, name, context, ["gpkg", "shp", "geojson"], "gpkg", feedback)
        return path, layer or None

    def run_chain(self, steps: list[Step], feedback, finished=None) -> list[dict]:
        """Run a chain of engine jobs one after another; progress over the whole chain, warnings as they come."""
        last = [""]

        def progress(fraction: float, message: str) -> None:
            feedback.setProgress(100.0 * fraction)
            if message and message != last[0]:
                feedback.setProgressText(message)
                last[0] = message

        def run_job(job: str, params: dict, job_progress) -> dict:
            result, warnings = Engine.shared().run(job, params, job_progress, feedback.isCanceled, self.title)
            for w in warnings:
                feedback.pushWarning(w)
            return result
        try:
            return run_steps(steps, run_job, progress, finished)
        except EngineJobError as e:
            raise QgsProcessingException(str(e)) from e

    def run_engine(self, params: dict, feedback) -> dict:
        """Run the algorithm's one engine job."""
        return self.run_chain([(self.job, params)], feedback)[-1]

    @staticmethod
    def load(context, path, name: str, output: str) -> None:
        context.addLayerToLoadOnCompletion(str(path), QgsProcessingContext.LayerDetails(name, context.project(),
                                                                                        output))


class ClassifyAlgorithm(EngineAlgorithm):
    job, algorithm_name, title = "classify", "classify", "Classify raster"
    help = ("Classify a hyperspectral raster with a fine-tuned SpecAware model (a name from the model list or a "
            "bundle folder), or into K unsupervised clusters. Writes classes.tif (named, coloured classes), "
            "confidence.tif and an HTML report with class areas.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Hyperspectral raster"))
        self.addParameter(QgsProcessingParameterString("MODEL", "Model (name or bundle folder)", optional=True))
        self.addParameter(QgsProcessingParameterNumber("CLUSTERS", "Unsupervised clusters (0 = use the model)",
                                                       QgsProcessingParameterNumber.Integer, 0, False, 0, 64))
        self.addParameter(QgsProcessingParameterString("PROFILE", "Sensor profile (key or JSON file; empty = "
                                                       "from the raster's metadata)", optional=True))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", "Output folder"))
        self.addOutput(QgsProcessingOutputRasterLayer("CLASSES", "Classes"))
        self.addOutput(QgsProcessingOutputRasterLayer("CONFIDENCE", "Confidence"))
        self.addOutput(QgsProcessingOutputHtml("REPORT", "Report"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        model = self.parameterAsString(parameters, "MODEL", context).strip() or None
        clusters = self.parameterAsInt(parameters, "CLUSTERS", context) or None
        if (model is None) == (clusters is None):
            raise QgsProcessingException("give either a model or a number of clusters (2–64), not both")
        out = Path(self.parameterAsString(parameters, "OUTPUT", context))
        steps = workflows.classify(self.raster(parameters, "INPUT", context), str(out), model, clusters,
                                   self.parameterAsString(parameters, "PROFILE", context) or None)
        r = self.run_chain(steps, feedback)[-1]
        names, colors = r["classes"]["names"], r["classes"]["colors"]
        layers.class_layer(out / "classes.tif", names, colors)
        layers.confidence_layer(out / "confidence.tif")
        self.load(context, out / "classes.tif", "SpecAware classes", "CLASSES")
        self.load(context, out / "confidence.tif", "SpecAware confidence", "CONFIDENCE")
        return {"OUTPUT": str(out), "CLASSES": str(out / "classes.tif"), "CONFIDENCE": str(out / "confidence.tif"),
                "REPORT": r["report_html"]}


class FinetuneAlgorithm(EngineAlgorithm):
    job, algorithm_name, title = "finetune", "finetune", "Fine-tune from polygons"
    help = ("Fine-tune SpecAware on training polygons or points whose class is in a field. Train and validation "
            "are split by polygon. The new model appears in the model list under its name; its report gives "
            "OA, κ and per-class scores on the validation polygons.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Hyperspectral raster"))
        self.addParameter(QgsProcessingParameterVectorLayer("POLYGONS", "Training polygons or points",
                                                            TRAINING_TYPES))
        self.addParameter(QgsProcessingParameterField("CLASS_FIELD", "Class field",
                                                      parentLayerParameterName="POLYGONS"))
        self.addParameter(QgsProcessingParameterVectorLayer("VALIDATION", "Independent validation layer",
                                                            TRAINING_TYPES, optional=True))
        self.addParameter(QgsProcessingParameterString("NAME", "Model name"))
        self.addParameter(QgsProcessingParameterEnum("PRESET", "Preset (when no checkpoint is configured)",
                                                     PRESETS, defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum("TASK", "Task", [TASK_CHOICES[t] for t in TRAINING_TASKS],
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum("HEAD", "Head (land cover)", HEADS, defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber("EPOCHS", "Epochs", QgsProcessingParameterNumber.Integer,
                                                       40, False, 1, 1000))
        self.addParameter(QgsProcessingParameterEnum("BACKBONE_MODE", "Backbone training", BACKBONE_MODES,
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterString("BACKBONE", "Backbone (checkpoint .pth, a model, or "
                                                       "'random'; empty = the configured checkpoint)", optional=True))
        self.addParameter(QgsProcessingParameterNumber("SEED", "Seed", QgsProcessingParameterNumber.Integer, 0,
                                                       False, 0))
        self.addParameter(QgsProcessingParameterNumber("ADAPT_MINUTES", "Adapt to this scene first: minutes of MAE "
                                                       "pre-training (0 = no)", QgsProcessingParameterNumber.Double,
                                                       0.0, False, 0.0, 600.0))
        self.addOutput(QgsProcessingOutputFolder("BUNDLE", "Model bundle"))
        self.addOutput(QgsProcessingOutputHtml("REPORT", "Training report"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        poly_layer = self.parameterAsVectorLayer(parameters, "POLYGONS", context)
        field = self.parameterAsString(parameters, "CLASS_FIELD", context)
        try:
            inputs.class_values(poly_layer, field)
        except InputError as e:
            raise QgsProcessingException(str(e)) from e
        polygons, layer_name = self.vector(parameters, "POLYGONS", context, feedback)
        val = None
        if self.parameterAsVectorLayer(parameters, "VALIDATION", context) is not None:
            val = self.vector(parameters, "VALIDATION", context, feedback)[0]
        params = {"raster": self.raster(parameters, "INPUT", context), "polygons": polygons, "layer": layer_name,
                  "class_field": field, "out": self.parameterAsString(parameters, "NAME", context).strip(),
                  "val_polygons": val, "colors": layers.category_colors(poly_layer, field) or None,
                  "preset": PRESETS[self.parameterAsEnum(parameters, "PRESET", context)],
                  "head": HEADS[self.parameterAsEnum(parameters, "HEAD", context)],
                  "epochs": self.parameterAsInt(parameters, "EPOCHS", context),
                  "backbone_mode": BACKBONE_MODES[self.parameterAsEnum(parameters, "BACKBONE_MODE", context)],
                  "backbone": self.parameterAsString(parameters, "BACKBONE", context).strip() or None,
                  "seed": self.parameterAsInt(parameters, "SEED", context),
                  "task": TRAINING_TASKS[self.parameterAsEnum(parameters, "TASK", context)]}

        def adapted(job: str, result: dict) -> None:
            if job == "adapt":
                feedback.pushInfo(f"adapted backbone {result['backbone']}: {result['steps']} MAE steps, loss "
                                  f"{result['loss_first']:.4f} → {result['loss_last']:.4f}")
        steps = workflows.finetune(params, weights_dir(), self.parameterAsDouble(parameters, "ADAPT_MINUTES", context))
        r = self.run_chain(steps, feedback, adapted)[-1]
        v = r.get("validation") or {}
        if v.get("oa") is not None:
            feedback.pushInfo(f"validation OA {v['oa']:.3f}, κ {v['kappa']:.3f}, mIoU {v.get('miou', 0):.3f}")
        return {"BUNDLE": r["bundle"], "REPORT": r["report"]}


class ChangeAlgorithm(EngineAlgorithm):
    job, algorithm_name, title = "change", "detectchange", "Detect changes"
    help = ("Change between two dates (any CRS, resolution, extent or sensor; the second is warped onto the first). "
            "Method: specaware (IR-MAD on each date's own bands, any two sensors; SpecAware features with a "
            "pretrained backbone), irmad (IR-MAD on the shared bands) or cva (CVA on the standardised shared bands). "
            "magnitude.tif is −log10 of the p-value of each pixel's change under the pair's no-change distribution "
            "(3 means p = 0.001). Threshold: 'significance' (a chi-square test at the p-value), 'otsu' (only when "
            "the magnitudes have two modes) or a magnitude. With a change model: its change probability. With a "
            "classification model: also from–to classes. Writes change.tif, magnitude.tif, change polygons with "
            "areas (change.gpkg) and summary.json.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("BEFORE", "Before (date 1)"))
        self.addParameter(QgsProcessingParameterRasterLayer("AFTER", "After (date 2)"))
        self.addParameter(QgsProcessingParameterString("MODEL", "Change or classification model (optional)",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterEnum("METHOD", "Method", CHANGE_METHODS, defaultValue=0))
        self.addParameter(QgsProcessingParameterString("THRESHOLD", "Threshold ('significance', 'otsu' or a "
                                                       "magnitude, −log10 p)", defaultValue=THRESHOLD_MODES[0]))
        self.addParameter(QgsProcessingParameterNumber("P_VALUE", "p-value of the significance test",
                                                       QgsProcessingParameterNumber.Double, 0.001, False, 1e-12, 0.5))
        self.addParameter(QgsProcessingParameterNumber("MIN_AREA", "Minimum mapping unit (m²)",
                                                       QgsProcessingParameterNumber.Double, 0.0, False, 0.0))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", "Output folder"))
        self.addOutput(QgsProcessingOutputRasterLayer("CHANGE", "Change"))
        self.addOutput(QgsProcessingOutputRasterLayer("MAGNITUDE", "Change magnitude"))
        self.addOutput(QgsProcessingOutputVectorLayer("POLYGONS", "Change polygons"))
        self.addOutput(QgsProcessingOutputFile("SUMMARY", "Summary (JSON)"))
        self.addOutput(QgsProcessingOutputNumber("CHANGED_HA", "Changed area (ha)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        threshold = self.parameterAsString(parameters, "THRESHOLD", context).strip() or THRESHOLD_MODES[0]
        out = Path(self.parameterAsString(parameters, "OUTPUT", context))
        steps = workflows.change(self.raster(parameters, "BEFORE", context), self.raster(parameters, "AFTER", context),
                                 str(out), threshold, self.parameterAsDouble(parameters, "MIN_AREA", context),
                                 self.parameterAsString(parameters, "MODEL", context).strip() or None,
                                 method=CHANGE_METHODS[self.parameterAsEnum(parameters, "METHOD", context)],
                                 p_value=self.parameterAsDouble(parameters, "P_VALUE", context))
        r = self.run_chain(steps, feedback)[-1]
        layers.change_layer(out / "change.tif")
        layers.magnitude_layer(out / "magnitude.tif")
        layers.change_polygons_layer(out / "change.gpkg")
        for name, file, output in (("change polygons", "change.gpkg", "POLYGONS"), ("change", "change.tif", "CHANGE"),
                                   ("change magnitude", "magnitude.tif", "MAGNITUDE")):
            self.load(context, out / file, name, output)
        return {"OUTPUT": str(out), "CHANGE": str(out / "change.tif"), "MAGNITUDE": str(out / "magnitude.tif"),
                "POLYGONS": str(out / "change.gpkg"), "SUMMARY": str(out / "summary.json"),
                "CHANGED_HA": r["changed_area_ha"]}


class ClassifyCellsAlgorithm(EngineAlgorithm):
    job, algorithm_name, title = "classify-cells", "classifycells", "Classify grid cells"
    help = ("Label a regular grid of cells, or your own polygons (parcels), with a fine-tuned model: the class, "
            "its confidence and every class probability per feature.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Hyperspectral raster"))
        self.addParameter(QgsProcessingParameterString("MODEL", "Model (name or bundle folder)"))
        self.addParameter(QgsProcessingParameterNumber("CELL_SIZE", "Cell size in pixels (0 = use the zones)",
                                                       QgsProcessingParameterNumber.Integer, 32, False, 0))
        self.addParameter(QgsProcessingParameterVectorLayer("ZONES", "Zones (parcels)",
                                                            [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT", "Cells", "GeoPackage (*.gpkg)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        cell = self.parameterAsInt(parameters, "CELL_SIZE", context) or None
        zones = None
        if self.parameterAsVectorLayer(parameters, "ZONES", context) is not None:
            zones = self.vector(parameters, "ZONES", context, feedback)[0]
        if (cell is None) == (zones is None):
            raise QgsProcessingException("give either a cell size or a zones layer")
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        self.run_engine({"raster": self.raster(parameters, "INPUT", context), "out": out, "cell_size": cell,
                         "zones": zones, "model": self.parameterAsString(parameters, "MODEL", context).strip()},
                        feedback)
        self.load(context, out, "SpecAware cells", "OUTPUT")
        return {"OUTPUT": out}


class SensorProfileAlgorithm(EngineAlgorithm):
    job, algorithm_name, title = "info", "sensorprofile", "Raster sensor profile"
    help = ("What the engine makes of a raster: sensor, processing level, bands used and dropped (with the reason), "
            "wavelength range and GSD. Use it to check a raster before classifying it.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Raster"))
        self.addParameter(QgsProcessingParameterString("PROFILE", "Sensor profile (key or JSON file; empty = "
                                                       "from the raster's metadata)", optional=True))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT", "Profile report", "JSON (*.json)",
                                                                optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputString("SENSOR", "Sensor"))
        self.addOutput(QgsProcessingOutputString("LEVEL", "Processing level"))
        self.addOutput(QgsProcessingOutputNumber("BANDS_USED", "Bands used"))
        self.addOutput(QgsProcessingOutputNumber("GSD", "GSD (m)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        r = self.run_engine({"raster": self.raster(parameters, "INPUT", context),
                             "profile": self.parameterAsString(parameters, "PROFILE", context) or None}, feedback)
        feedback.pushInfo(f"{r['sensor_name']} ({r['sensor']}), level {r['level']}, {r['bands_used']} of "
                          f"{r['bands']} bands used, GSD {r['gsd_m']} m")
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        if out:
            inputs.write_text_atomic(out, json.dumps(r, indent=1))
        return {"SENSOR": r["sensor"], "LEVEL": r["level"] or "", "BANDS_USED": r["bands_used"],
                "GSD": r["gsd_m"] or 0.0, **({"OUTPUT": out} if out else {})}


class PretrainAlgorithm(EngineAlgorithm):
    job, algorithm_name, title = "pretrain", "pretrain", "Pretrain (masked autoencoder)"
    help = ("Self-supervised pre-training of SpecAware on your own archive: a folder of rasters (any sensor, each "
            "with its profile) or Hyper-400K-style .npz patches with manifest.csv. Writes checkpoints, loss.csv, "
            "loss.png and backbone.pth (the official key layout: use it as a fine-tuning backbone). Several GPUs "
            "or nodes: run `torchrun ... -m engine pretrain` instead.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile("DATA", "Data folder (rasters, or manifest.csv + .npz)",
                                                     QgsProcessingParameterFile.Folder))
        self.addParameter(QgsProcessingParameterString("INIT", "Start from ('random', a checkpoint .pth or a run "
                                                       "folder; empty = random)", optional=True))
        self.addParameter(QgsProcessingParameterEnum("PRESET", "Preset (random start)", PRESETS, defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber("STEPS", "Optimiser steps", QgsProcessingParameterNumber.Integer,
                                                       1000, False, 1))
        self.addParameter(QgsProcessingParameterNumber("BATCH_SIZE", "Batch size", QgsProcessingParameterNumber.Integer,
                                                       8, False, 1))
        self.addParameter(QgsProcessingParameterNumber("PATCH", "Patch size (px)", QgsProcessingParameterNumber.Integer,
                                                       64, False, 16))
        self.addParameter(QgsProcessingParameterBoolean("RESUME", "Resume the run in the output folder", False))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", "Run folder"))
        self.addOutput(QgsProcessingOutputFile("BACKBONE", "Backbone (.pth)"))
        self.addOutput(QgsProcessingOutputFile("LOSS_PLOT", "Loss curve (PNG)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        out = self.parameterAsString(parameters, "OUTPUT", context)
        r = self.run_engine({"data": self.parameterAsFile(parameters, "DATA", context), "out": out,
                             "init": self.parameterAsString(parameters, "INIT", context).strip() or None,
                             "preset": PRESETS[self.parameterAsEnum(parameters, "PRESET", context)],
                             "steps": self.parameterAsInt(parameters, "STEPS", context),
                             "batch_size": self.parameterAsInt(parameters, "BATCH_SIZE", context),
                             "patch": self.parameterAsInt(parameters, "PATCH", context),
                             "resume": self.parameterAsBoolean(parameters, "RESUME", context)}, feedback)
        feedback.pushInfo(f"{r['steps']} steps, loss {r['loss_first']:.4f} → {r['loss_last']:.4f}")
        return {"BACKBONE": str(Path(out) / "backbone.pth"), "LOSS_PLOT": str(Path(out) / "loss.png")}


ALGORITHMS = [ClassifyAlgorithm, FinetuneAlgorithm, ChangeAlgorithm, ClassifyCellsAlgorithm, SensorProfileAlgorithm,
              PretrainAlgorithm]
