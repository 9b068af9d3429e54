"""SpecAware Processing algorithms. Each builds its engine jobs (the chains of `workflows`, shared with the dock),
which the engine checks before the run and then runs through the same `Engine.run` as the dock, styles its outputs
(a `.qml` beside each file) and loads them on completion."""
from __future__ import annotations

import json
from pathlib import Path

from qgis.core import (QgsProcessing, QgsProcessingException, QgsProcessingOutputFile, QgsProcessingOutputFolder,
                       QgsProcessingOutputHtml, QgsProcessingOutputNumber, QgsProcessingOutputRasterLayer,
                       QgsProcessingOutputString, QgsProcessingOutputVectorLayer, QgsProcessingParameterBoolean,
                       QgsProcessingParameterEnum, QgsProcessingParameterField, QgsProcessingParameterFile,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterLayer, QgsProcessingParameterString,
                       QgsProcessingParameterVectorLayer)

from .. import inputs, layers, workflows
from ..inputs import InputError
from ..settings import weights_dir
from ..vocabulary import (BACKBONE_MODES, CHANGE_METHODS, HEADS, PRESETS, SCENE_TASKS, TASK_LABELS,
                          THRESHOLD_MODES)
from .engine_algorithm import EngineAlgorithm

TRAINING_TYPES = [QgsProcessing.TypeVectorPolygon, QgsProcessing.TypeVectorPoint]
INT, DOUBLE = QgsProcessingParameterNumber.Integer, QgsProcessingParameterNumber.Double
PROFILE_HELP = ("A built-in sensor key (aviris_classic, aviris_ng, aviris_3) or a JSON profile file, for a raster "
                "without wavelength metadata. Empty: the profile is read from the raster's own metadata.")


class ClassifyAlgorithm(EngineAlgorithm):
    algorithm_name, title = "classify", "Classify raster"
    help = ("Classify a hyperspectral raster with a fine-tuned SpecAware model (a name from the model list or a "
            "bundle folder), or into K unsupervised clusters. Writes classes.tif (named, coloured classes), "
            "confidence.tif and an HTML report with class areas.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add(QgsProcessingParameterRasterLayer("INPUT", "Hyperspectral raster"),
                 "The raster to classify; any size, read window by window.")
        self.add(QgsProcessingParameterString("MODEL", "Model (name or bundle folder)", optional=True),
                 "A model fine-tuned with 'Fine-tune from polygons' (its name) or a model bundle folder. Leave "
                 "empty for unsupervised clusters.")
        self.add(QgsProcessingParameterNumber("CLUSTERS", "Unsupervised clusters (0 = use the model)", INT, 0, False,
                                              0, 64), "With no model: the number of k-means clusters (2–64).")
        self.add(QgsProcessingParameterString("PROFILE", "Sensor profile (key or JSON file; empty = from the "
                                              "raster's metadata)", optional=True), PROFILE_HELP)
        self.add(QgsProcessingParameterFolderDestination("OUTPUT", "Output folder"),
                 "Where classes.tif, confidence.tif and the report are written, all together or not at all.")
        self.add(QgsProcessingParameterBoolean("OVERWRITE", "Replace outputs already in the folder", False),
                 "Without it, a folder that holds classes.tif, confidence.tif or a report already is left alone.")
        self.addOutput(QgsProcessingOutputRasterLayer("CLASSES", "Classes"))
        self.addOutput(QgsProcessingOutputRasterLayer("CONFIDENCE", "Confidence"))
        self.addOutput(QgsProcessingOutputHtml("REPORT", "Report"))

    def steps(self, parameters, context, feedback):
        model = self.parameterAsString(parameters, "MODEL", context).strip() or None
        clusters = self.parameterAsInt(parameters, "CLUSTERS", context) or None
        if (model is None) == (clusters is None):
            raise QgsProcessingException("give either a model or a number of clusters (2–64), not both")
        return workflows.classify(self.raster(parameters, "INPUT", context), self.folder(parameters, "OUTPUT", context),
                                  model, clusters, self.parameterAsString(parameters, "PROFILE", context) or None,
                                  self.parameterAsBoolean(parameters, "OVERWRITE", context))

    def finish(self, results, parameters, context, feedback):
        r = results[-1]
        out = Path(r["outputs"][0]).parent
        layers.class_layer(out / "classes.tif", r["classes"]["names"], r["classes"]["colors"])
        layers.confidence_layer(out / "confidence.tif")
        self.load(context, out / "classes.tif", "SpecAware classes", "CLASSES")
        self.load(context, out / "confidence.tif", "SpecAware confidence", "CONFIDENCE")
        return {"OUTPUT": str(out), "CLASSES": str(out / "classes.tif"), "CONFIDENCE": str(out / "confidence.tif"),
                "REPORT": r["report_html"]}


class FinetuneAlgorithm(EngineAlgorithm):
    algorithm_name, title = "finetune", "Fine-tune from polygons"
    help = ("Fine-tune SpecAware on training polygons or points whose class is in a field. Train and validation "
            "are split by polygon. The new model appears in the model list under its name; its report gives "
            "OA, κ and per-class scores on the validation polygons.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add(QgsProcessingParameterRasterLayer("INPUT", "Hyperspectral raster"),
                 "The raster the training polygons or points were drawn on.")
        self.add(QgsProcessingParameterVectorLayer("POLYGONS", "Training polygons or points", TRAINING_TYPES),
                 "Polygons or points with their class in a field; any CRS (they are reprojected and rasterised).")
        self.add(QgsProcessingParameterField("CLASS_FIELD", "Class field", parentLayerParameterName="POLYGONS"),
                 "The field that holds each feature's class; at least two classes.")
        self.add(QgsProcessingParameterVectorLayer("VALIDATION", "Independent validation layer", TRAINING_TYPES,
                                                   optional=True),
                 "Validation polygons with the same class field; without it a share of each class's polygons is "
                 "held out.")
        self.add(QgsProcessingParameterString("NAME", "Model name"),
                 "The new model's name in the model list (an existing model of this name is never replaced).")
        self.add(QgsProcessingParameterEnum("PRESET", "Preset (when no checkpoint is configured)", PRESETS,
                                            defaultValue=0),
                 "The encoder's size when it starts from a random initialisation; a configured checkpoint sets it.")
        self.add(QgsProcessingParameterEnum("TASK", "Task", [TASK_LABELS.get(t, t) for t in SCENE_TASKS],
                                            defaultValue=0),
                 "Land cover: a class per pixel. Grid cells / parcels: one class per polygon, classified as a whole "
                 "by 'Classify grid cells'.")
        self.add(QgsProcessingParameterEnum("HEAD", "Head (land cover)", HEADS, defaultValue=0),
                 "linear (default): a logistic regression on frozen per-pixel SpecAware features, fitted in seconds, "
                 "best with few labels; light: a small spatial head trained for the epochs; upernet: the paper's "
                 "head, for large training sets on a GPU.")
        self.add(QgsProcessingParameterNumber("EPOCHS", "Epochs", INT, 40, False, 1, 1000),
                 "Passes over the training windows of the light and upernet heads; training stops early when "
                 "validation stops improving (the linear head is fitted to convergence).")
        self.add(QgsProcessingParameterEnum("BACKBONE_MODE", "Backbone training", BACKBONE_MODES, defaultValue=0),
                 "frozen: the encoder's features are computed once (fast); last-2: its last two blocks train too; "
                 "full: all of it.")
        self.add(QgsProcessingParameterString("BACKBONE", "Backbone (checkpoint .pth, a model, or 'random'; empty = "
                                              "the configured checkpoint)", optional=True),
                 "Where the encoder's weights come from.")
        self.add(QgsProcessingParameterNumber("SEED", "Seed", INT, 0, False, 0),
                 "The seed of the split and the initialisation: the same seed gives the same model.")
        self.add(QgsProcessingParameterNumber("ADAPT_MINUTES", "Adapt to this scene first: minutes of MAE "
                                              "pre-training (0 = no)", DOUBLE, 0.0, False, 0.0, 600.0),
                 "Minutes of masked-autoencoder training on the raster itself before fine-tuning from that "
                 "backbone.")
        self.add(QgsProcessingParameterVectorLayer("SAMPLES", "Labelled suggestions (points)",
                                                   [QgsProcessing.TypeVectorPoint], optional=True),
                 "The points of 'Suggest where to label next' once their class field is filled in; they are "
                 "added to the training labels (points left empty are skipped).")
        self.addOutput(QgsProcessingOutputFolder("BUNDLE", "Model bundle"))
        self.addOutput(QgsProcessingOutputHtml("REPORT", "Training report"))

    def steps(self, parameters, context, feedback):
        poly_layer = self.parameterAsVectorLayer(parameters, "POLYGONS", context)
        field = self.parameterAsString(parameters, "CLASS_FIELD", context)
        try:
            inputs.class_values(poly_layer, field)
        except InputError as e:
            raise QgsProcessingException(str(e)) from e
        polygons, layer_name = self.vector(parameters, "POLYGONS", context, feedback)
        val, samples = None, None
        if self.parameterAsVectorLayer(parameters, "VALIDATION", context) is not None:
            val = self.vector(parameters, "VALIDATION", context, feedback)[0]
        if self.parameterAsVectorLayer(parameters, "SAMPLES", context) is not None:
            samples = self.vector(parameters, "SAMPLES", context, feedback)[0]
        params = {"raster": self.raster(parameters, "INPUT", context), "polygons": polygons, "layer": layer_name,
                  "class_field": field, "out": self.parameterAsString(parameters, "NAME", context).strip(),
                  "val_polygons": val, "samples": samples, "colors": layers.category_colors(poly_layer, field) or None,
                  "preset": PRESETS[self.parameterAsEnum(parameters, "PRESET", context)],
                  "head": HEADS[self.parameterAsEnum(parameters, "HEAD", context)],
                  "epochs": self.parameterAsInt(parameters, "EPOCHS", context),
                  "backbone_mode": BACKBONE_MODES[self.parameterAsEnum(parameters, "BACKBONE_MODE", context)],
                  "backbone": self.parameterAsString(parameters, "BACKBONE", context).strip() or None,
                  "seed": self.parameterAsInt(parameters, "SEED", context),
                  "task": SCENE_TASKS[self.parameterAsEnum(parameters, "TASK", context)]}
        return workflows.finetune(params, weights_dir(), self.parameterAsDouble(parameters, "ADAPT_MINUTES", context))

    def on_step(self, job, result, feedback):
        if job == "adapt":
            feedback.pushInfo(f"adapted backbone {result['backbone']}: {result['steps']} MAE steps, loss "
                              f"{result['loss_first']:.4f} → {result['loss_last']:.4f}")

    def finish(self, results, parameters, context, feedback):
        r = results[-1]
        v = r.get("validation") or {}
        if v.get("oa") is not None:
            feedback.pushInfo(f"validation OA {v['oa']:.3f}, κ {v['kappa']:.3f}, mIoU {v.get('miou', 0):.3f}")
        return {"BUNDLE": r["bundle"], "REPORT": r["report"]}


class ChangeAlgorithm(EngineAlgorithm):
    algorithm_name, title = "detectchange", "Detect changes"
    help = ("Change between two dates (any CRS, resolution, extent or sensor; the second is warped onto the first). "
            "Method: specaware (IR-MAD on each date's own bands, any two sensors; SpecAware features with a "
            "pretrained backbone), irmad (IR-MAD on the shared bands) or cva (CVA on the standardised shared bands). "
            "magnitude.tif is −log10 of the p-value of each pixel's change under the pair's no-change distribution "
            "(3 means p = 0.001). Threshold: 'significance' (a chi-square test at the p-value), 'otsu' (only when "
            "the magnitudes have two modes) or a magnitude. With a change model: its change probability. With a "
            "classification model: also from–to classes. Writes change.tif, magnitude.tif, change polygons with "
            "areas (change.gpkg) and summary.json.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add(QgsProcessingParameterRasterLayer("BEFORE", "Before (date 1)"),
                 "The first date; the result is on its grid.")
        self.add(QgsProcessingParameterRasterLayer("AFTER", "After (date 2)"),
                 "The second date, read with its own sensor profile and warped onto the first date's grid.")
        self.add(QgsProcessingParameterString("MODEL", "Change or classification model (optional)", optional=True),
                 "A change model (trained on change / no-change samples) maps its probability of change; a "
                 "land-cover model also classifies both dates (from–to). Empty: unsupervised.")
        self.add(QgsProcessingParameterEnum("METHOD", "Method", CHANGE_METHODS, defaultValue=0),
                 "specaware: each date's own bands (any two sensors); irmad: IR-MAD on the bands both dates share; "
                 "cva: change vector analysis on the standardised shared bands.")
        self.add(QgsProcessingParameterString("THRESHOLD", "Threshold ('significance', 'otsu' or a magnitude, "
                                              "−log10 p)", defaultValue=THRESHOLD_MODES[0]),
                 "'significance': a pixel has changed when its change is significant at the p-value below; 'otsu': "
                 "the split between two modes of the magnitudes (refused when there is one); or a magnitude from "
                 "0 to 30 (3 means p = 0.001).")
        self.add(QgsProcessingParameterNumber("P_VALUE", "p-value of the significance test", DOUBLE, 0.001, False,
                                              1e-12, 0.5),
                 "The chance that an unchanged pixel is called changed; smaller maps less change.")
        self.add(QgsProcessingParameterNumber("MIN_AREA", "Minimum mapping unit (m²)", DOUBLE, 0.0, False, 0.0),
                 "Change polygons smaller than this are dropped.")
        self.add(QgsProcessingParameterFolderDestination("OUTPUT", "Output folder"),
                 "Where change.tif, magnitude.tif, change.gpkg and summary.json are written, all together or not "
                 "at all.")
        self.add(QgsProcessingParameterBoolean("OVERWRITE", "Replace outputs already in the folder", False),
                 "Without it, a folder that holds change.tif, magnitude.tif, change.gpkg or summary.json already is "
                 "left alone.")
        self.addOutput(QgsProcessingOutputRasterLayer("CHANGE", "Change"))
        self.addOutput(QgsProcessingOutputRasterLayer("MAGNITUDE", "Change magnitude"))
        self.addOutput(QgsProcessingOutputVectorLayer("POLYGONS", "Change polygons"))
        self.addOutput(QgsProcessingOutputFile("SUMMARY", "Summary (JSON)"))
        self.addOutput(QgsProcessingOutputNumber("CHANGED_HA", "Changed area (ha)"))

    def steps(self, parameters, context, feedback):
        threshold = self.parameterAsString(parameters, "THRESHOLD", context).strip() or THRESHOLD_MODES[0]
        return workflows.change(self.raster(parameters, "BEFORE", context), self.raster(parameters, "AFTER", context),
                                self.folder(parameters, "OUTPUT", context), threshold,
                                self.parameterAsDouble(parameters, "MIN_AREA", context),
                                self.parameterAsString(parameters, "MODEL", context).strip() or None,
                                method=CHANGE_METHODS[self.parameterAsEnum(parameters, "METHOD", context)],
                                p_value=self.parameterAsDouble(parameters, "P_VALUE", context),
                                overwrite=self.parameterAsBoolean(parameters, "OVERWRITE", context))

    def finish(self, results, parameters, context, feedback):
        r = results[-1]
        out = Path(r["outputs"][0]).parent
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
    algorithm_name, title = "classifycells", "Classify grid cells"
    help = ("Label a regular grid of cells, or your own polygons (parcels), with a fine-tuned model: the class, "
            "its confidence and every class probability per feature.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add(QgsProcessingParameterRasterLayer("INPUT", "Hyperspectral raster"), "The raster to classify.")
        self.add(QgsProcessingParameterString("MODEL", "Model (name or bundle folder)"),
                 "A cell model (Fine-tune with the task 'grid cells') classifies each cell as a whole; a land-cover "
                 "model's per-pixel probabilities are averaged over each cell.")
        self.add(QgsProcessingParameterNumber("CELL_SIZE", "Cell size in pixels (0 = use the zones)", INT, 32, False,
                                              0), "Square cells of this many pixels; 0 to classify the zones instead.")
        self.add(QgsProcessingParameterVectorLayer("ZONES", "Zones (parcels)", [QgsProcessing.TypeVectorPolygon],
                                                   optional=True),
                 "Your own polygons (fields, parcels), any CRS, used when the cell size is 0.")
        self.add(QgsProcessingParameterFileDestination("OUTPUT", "Cells", "GeoPackage (*.gpkg)"),
                 "The GeoPackage written, with class, confidence and p_<class> fields.")

    def steps(self, parameters, context, feedback):
        cell = self.parameterAsInt(parameters, "CELL_SIZE", context) or None
        zones = None
        if self.parameterAsVectorLayer(parameters, "ZONES", context) is not None:
            zones = self.vector(parameters, "ZONES", context, feedback)[0]
        if (cell is None) == (zones is None):
            raise QgsProcessingException("give either a cell size or a zones layer")
        return workflows.classify_cells(self.raster(parameters, "INPUT", context),
                                        self.parameterAsFileOutput(parameters, "OUTPUT", context),
                                        self.parameterAsString(parameters, "MODEL", context).strip(), cell, zones,
                                        overwrite=True)  # QGIS asked about replacing the destination already

    def finish(self, results, parameters, context, feedback):
        cells = results[-1]
        layers.cells_layer(cells["out"], cells["classes"]["names"], cells["classes"]["colors"])
        self.load(context, cells["out"], "SpecAware cells", "OUTPUT")
        return {"OUTPUT": cells["out"]}


class SuggestAlgorithm(EngineAlgorithm):
    algorithm_name, title = "suggest", "Suggest where to label next"
    help = ("Points where a fine-tuned land-cover model hesitates most, spread over the raster and kept away from "
            "the labels it was trained on. Fill in their class field and give them to 'Fine-tune from polygons' as "
            "labelled suggestions: a few well-placed labels improve the map more than many easy ones.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add(QgsProcessingParameterRasterLayer("INPUT", "Hyperspectral raster"), "The raster being mapped.")
        self.add(QgsProcessingParameterString("MODEL", "Model (name or bundle folder)"),
                 "The land-cover model fine-tuned on this raster (its name in the model list, or a bundle folder).")
        self.add(QgsProcessingParameterNumber("COUNT", "Points", INT, 20, False, 1, 10000),
                 "How many points to suggest.")
        self.add(QgsProcessingParameterVectorLayer("POLYGONS", "Labels drawn already", TRAINING_TYPES, optional=True),
                 "Points are kept away from these; empty: the model's own training layer and samples when it was "
                 "trained on this raster.")
        self.add(QgsProcessingParameterString("PROFILE", "Sensor profile (key or JSON file; empty = from the "
                                              "raster's metadata)", optional=True), PROFILE_HELP)
        self.add(QgsProcessingParameterFileDestination("OUTPUT", "Points to label", "GeoPackage (*.gpkg)"),
                 "The GeoPackage of points: an empty class field to fill in, the predicted and runner-up classes "
                 "and their margin.")

    def steps(self, parameters, context, feedback):
        polygons = None
        if self.parameterAsVectorLayer(parameters, "POLYGONS", context) is not None:
            polygons = self.vector(parameters, "POLYGONS", context, feedback)[0]
        return workflows.suggest(self.raster(parameters, "INPUT", context),
                                 self.parameterAsString(parameters, "MODEL", context).strip(),
                                 self.parameterAsInt(parameters, "COUNT", context),
                                 self.parameterAsFileOutput(parameters, "OUTPUT", context), polygons,
                                 self.parameterAsString(parameters, "PROFILE", context) or None,
                                 overwrite=True)  # QGIS asked about replacing the destination already

    def finish(self, results, parameters, context, feedback):
        r = results[-1]
        feedback.pushInfo(f"{r['points']} points: fill in their {r['class_field']!r} field, then fine-tune again "
                          "with them as labelled suggestions")
        self.load(context, r["out"], "SpecAware: label next", "OUTPUT")
        return {"OUTPUT": r["out"]}


class SensorProfileAlgorithm(EngineAlgorithm):
    algorithm_name, title = "sensorprofile", "Raster sensor profile"
    help = ("What the engine makes of a raster: sensor, processing level, bands used and dropped (with the reason), "
            "wavelength range and GSD. Use it to check a raster before classifying it.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add(QgsProcessingParameterRasterLayer("INPUT", "Raster"), "The raster to describe.")
        self.add(QgsProcessingParameterString("PROFILE", "Sensor profile (key or JSON file; empty = from the "
                                              "raster's metadata)", optional=True), PROFILE_HELP)
        self.add(QgsProcessingParameterFileDestination("OUTPUT", "Profile report", "JSON (*.json)", optional=True,
                                                       createByDefault=False),
                 "Optionally, the whole profile as a JSON file.")
        self.addOutput(QgsProcessingOutputString("SENSOR", "Sensor"))
        self.addOutput(QgsProcessingOutputString("LEVEL", "Processing level"))
        self.addOutput(QgsProcessingOutputNumber("BANDS_USED", "Bands used"))
        self.addOutput(QgsProcessingOutputNumber("GSD", "GSD (m)"))

    def steps(self, parameters, context, feedback):
        return [("info", {"raster": self.raster(parameters, "INPUT", context),
                          "profile": self.parameterAsString(parameters, "PROFILE", context) or None})]

    def finish(self, results, parameters, context, feedback):
        r = results[-1]
        feedback.pushInfo(f"{r['sensor_name']} ({r['sensor']}), level {r['level']}, {r['bands_used']} of "
                          f"{r['bands']} bands used, GSD {r['gsd_m']} m")
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        if out:
            inputs.write_text_atomic(out, json.dumps(r, indent=1))
        return {"SENSOR": r["sensor"], "LEVEL": r["level"] or "", "BANDS_USED": r["bands_used"],
                "GSD": r["gsd_m"] or 0.0, **({"OUTPUT": out} if out else {})}


class PretrainAlgorithm(EngineAlgorithm):
    algorithm_name, title = "pretrain", "Pretrain (masked autoencoder)"
    help = ("Self-supervised pre-training of SpecAware on your own archive: a folder of rasters (any sensor, each "
            "with its profile) or Hyper-400K-style .npz patches with manifest.csv. Writes checkpoints, loss.csv, "
            "loss.png and backbone.pth (the official key layout: use it as a fine-tuning backbone). Several GPUs "
            "or nodes: run `torchrun ... -m engine pretrain` instead.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add(QgsProcessingParameterFile("DATA", "Data folder (rasters, or manifest.csv + .npz)",
                                            QgsProcessingParameterFile.Folder),
                 "A folder of rasters, or of .npz patches listed in manifest.csv.")
        self.add(QgsProcessingParameterString("INIT", "Start from ('random', a checkpoint .pth or a run folder; "
                                              "empty = random)", optional=True),
                 "The weights to continue from; a run folder resumes nothing, it starts from that run's backbone.")
        self.add(QgsProcessingParameterEnum("PRESET", "Preset (random start)", PRESETS, defaultValue=0),
                 "The encoder's size for a random start.")
        self.add(QgsProcessingParameterNumber("STEPS", "Optimiser steps", INT, 1000, False, 1),
                 "How many optimiser steps to train.")
        self.add(QgsProcessingParameterNumber("BATCH_SIZE", "Batch size", INT, 8, False, 1),
                 "Patches per step (all of one sensor).")
        self.add(QgsProcessingParameterNumber("PATCH", "Patch size (px)", INT, 64, False, 16),
                 "The side of the square patches cut from the rasters.")
        self.add(QgsProcessingParameterBoolean("RESUME", "Resume the run in the output folder", False),
                 "Continue an interrupted run from its last checkpoint.")
        self.add(QgsProcessingParameterFolderDestination("OUTPUT", "Run folder"),
                 "Where checkpoints, loss.csv, loss.png and backbone.pth are written.")
        self.addOutput(QgsProcessingOutputFile("BACKBONE", "Backbone (.pth)"))
        self.addOutput(QgsProcessingOutputFile("LOSS_PLOT", "Loss curve (PNG)"))

    def steps(self, parameters, context, feedback):
        return [("pretrain", {"data": self.parameterAsFile(parameters, "DATA", context),
                              "out": self.folder(parameters, "OUTPUT", context),
                              "init": self.parameterAsString(parameters, "INIT", context).strip() or None,
                              "preset": PRESETS[self.parameterAsEnum(parameters, "PRESET", context)],
                              "steps": self.parameterAsInt(parameters, "STEPS", context),
                              "batch_size": self.parameterAsInt(parameters, "BATCH_SIZE", context),
                              "patch": self.parameterAsInt(parameters, "PATCH", context),
                              "resume": self.parameterAsBoolean(parameters, "RESUME", context)})]

    def finish(self, results, parameters, context, feedback):
        r = results[-1]
        feedback.pushInfo(f"{r['steps']} steps, loss {r['loss_first']:.4f} → {r['loss_last']:.4f}")
        return {"BACKBONE": r["backbone"], "LOSS_PLOT": str(Path(r["backbone"]).with_name("loss.png"))}


ALGORITHMS = [ClassifyAlgorithm, FinetuneAlgorithm, SuggestAlgorithm, ChangeAlgorithm, ClassifyCellsAlgorithm,
              SensorProfileAlgorithm, PretrainAlgorithm]
