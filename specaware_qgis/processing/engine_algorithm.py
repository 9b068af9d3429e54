"""What every SpecAware Processing algorithm shares: parameters with help text (a tooltip in the dialog, and the
help panel built from them), the engine chain of the algorithm checked by the engine's `validate` job before the
run (the engine's own sentence in the dialog), and the chain run through the same `Engine.run` as the dock."""
from __future__ import annotations

import html

from qgis.core import (QgsProcessingAlgorithm, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingFeedback)

from .. import inputs
from ..client import EngineJobError
from ..engine_process import Engine
from ..inputs import InputError
from ..workflows import Step, run_steps


class Unchecked(Exception):
    """An input that is checked only when the algorithm runs (a layer that is not a plain file would have to be
    written out first, and a check writes nothing)."""


class EngineAlgorithm(QgsProcessingAlgorithm):
    """Shared plumbing. A subclass declares its parameters with `add`, its engine chain in `steps` and what it
    makes of the results in `finish`."""

    algorithm_name = ""
    title = ""
    help = ""  # what the algorithm does, one paragraph; the parameters' help follows it in the help panel
    checking = False  # True while checkParameterValues builds the chain

    def name(self) -> str:
        return self.algorithm_name

    def displayName(self) -> str:  # noqa: N802 - QGIS's names below
        return self.title

    def shortHelpString(self) -> str:
        rows = "".join(f"<dt><b>{html.escape(p.description())}</b></dt><dd>{html.escape(p.help())}</dd>"
                       for p in self.parameterDefinitions())
        return f"<p>{html.escape(self.help)}</p><h3>Parameters</h3><dl>{rows}</dl>"

    def createInstance(self):
        return type(self)()

    def add(self, parameter, help_text: str) -> None:
        """A parameter with its help (shown as its tooltip and in the help panel)."""
        parameter.setHelp(help_text)
        self.addParameter(parameter)

    # -- inputs as engine parameters ---------------------------------------------------------------------------
    def raster(self, parameters, name, context) -> str:
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if self.checking and layer is not None and inputs.raster_file(layer) is None:
            raise Unchecked(name)
        try:
            return inputs.raster_path(layer, name)
        except InputError as e:
            raise QgsProcessingException(str(e)) from e

    def vector(self, parameters, name, context, feedback) -> tuple[str, str | None]:
        if self.checking:
            layer = self.parameterAsVectorLayer(parameters, name, context)
            found = inputs.vector_file(layer) if layer is not None else None
            if found is None:
                raise Unchecked(name)
            return found
        path, layer = self.parameterAsCompatibleSourceLayerPathAndLayerName(
            parameters, name, context, ["gpkg", "shp", "geojson"], "gpkg", feedback)
        return path, layer or None

    def folder(self, parameters, name, context) -> str:
        """An output folder; a new temporary one when none is given (QGIS itself resolves TEMPORARY_OUTPUT)."""
        return (self.parameterAsString(parameters, name, context)
                or self.parameterDefinition(name).generateTemporaryDestination())

    # -- the chain -------------------------------------------------------------------------------------------
    def steps(self, parameters, context, feedback) -> list[Step]:
        """The engine jobs of this run (override)."""
        raise NotImplementedError

    def finish(self, results: list[dict], parameters, context, feedback) -> dict:
        """Style and load the outputs; the algorithm's results (override)."""
        raise NotImplementedError

    def on_step(self, job: str, result: dict, feedback) -> None:
        """Hear of each job of the chain as it ends (override to report it)."""

    def checkParameterValues(self, parameters, context):  # noqa: N802
        """QGIS's own checks, then the engine's: each job of the chain validated as running it would, without
        running it, so a bad value is refused in the dialog with the engine's sentence."""
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        self.checking = True
        try:
            for job, params in self.steps(parameters, context, QgsProcessingFeedback()):
                if not callable(params):  # a later step's params come from earlier results: checked at run time
                    Engine.shared().run("validate", {"name": job, "params": params})
        except Unchecked:
            pass
        except (QgsProcessingException, EngineJobError) as e:
            return False, str(e)
        finally:
            self.checking = False
        return True, ""

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        results = self.run_chain(self.steps(parameters, context, feedback), feedback,
                                 lambda job, result: self.on_step(job, result, feedback))
        return self.finish(results, parameters, context, feedback)

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

    @staticmethod
    def load(context, path, name: str, output: str) -> None:
        context.addLayerToLoadOnCompletion(str(path), QgsProcessingContext.LayerDetails(name, context.project(),
                                                                                        output))
