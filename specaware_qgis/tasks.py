"""Engine jobs as QGIS background tasks: progress in the dock and the task manager, cancel, results on the
main thread."""
from __future__ import annotations

from typing import Callable

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .client import EngineJobError
from .engine_process import Engine

Step = tuple[str, "dict | Callable[[list[dict]], dict]"]


class EngineTask(QgsTask):
    """One or more engine jobs run in order (a later step may build its params from earlier results)."""

    message = pyqtSignal(str)

    def __init__(self, description: str, steps: list[Step], on_done: Callable[["EngineTask"], None],
                 engine: Engine | None = None, quiet: bool = False, folder=None):
        super().__init__(description, QgsTask.CanCancel)
        self.steps, self.on_done = steps, on_done
        self.quiet = quiet  # background checks (sensor, model list) stay out of the dock's progress line
        self.folder = folder  # the run's output folder, removed again when the task fails while it is empty
        self.engine = engine or Engine.shared()
        self.results: list[dict] = []
        self.warnings: list[str] = []
        self.error: EngineJobError | None = None
        self.last_message = ""

    def run(self) -> bool:
        n = len(self.steps)
        try:
            for i, (job, params) in enumerate(self.steps):
                params = params(self.results) if callable(params) else params

                def progress(fraction: float, text: str, i=i) -> None:
                    self.setProgress(100.0 * (i + fraction) / n)
                    self.last_message = text
                    self.message.emit(text)
                result, warnings = self.engine.run(job, params, progress, self.isCanceled, self.description())
                self.results.append(result)
                self.warnings += warnings
            return True
        except EngineJobError as e:
            self.error = e
        except Exception as e:  # noqa: BLE001 - a task must report, never take QGIS down
            self.error = EngineJobError(f"{type(e).__name__}: {e}")
        return False

    def finished(self, ok: bool) -> None:  # main thread
        if not ok and self.error is None:
            self.error = EngineJobError("cancelled; nothing was written", cancelled=True)
        self.on_done(self)

    @property
    def result(self) -> dict:
        return self.results[-1] if self.results else {}
