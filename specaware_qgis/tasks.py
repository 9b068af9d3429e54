"""Engine jobs and the engine environment's installation as QGIS background tasks: progress in the dock and the
task manager, cancel, and `on_done(task)` on the main thread when they end."""
from __future__ import annotations

import threading
from typing import Callable

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .client import EngineJobError
from .engine_process import Engine
from .environment import create_managed_environment
from .workflows import Step, run_steps


class Turns:
    """Engine tasks run in the order the user queued them: the task manager's threads may start them in any order,
    so each visible task takes a ticket when it is made and waits until every earlier ticket is given back."""

    def __init__(self):
        self.changed = threading.Condition()
        self.issued = 0
        self.returned: set[int] = set()

    def take(self) -> int:
        with self.changed:
            self.issued += 1
            return self.issued

    def wait(self, ticket: int, is_cancelled: Callable[[], bool], waiting: Callable[[], None],
             poll_s: float = 0.2) -> bool:
        """Block until it is `ticket`'s turn, calling `waiting()` once if it has to; False when cancelled first."""
        told = False
        with self.changed:
            while not all(t in self.returned for t in range(1, ticket)):
                if is_cancelled():
                    return False
                if not told:
                    waiting()
                    told = True
                self.changed.wait(poll_s)
            return True

    def give_back(self, ticket: int | None) -> None:
        if ticket is not None:
            with self.changed:
                self.returned.add(ticket)
                self.changed.notify_all()


TURNS = Turns()


class EngineTask(QgsTask):
    """One or more engine jobs run in order (a later step may build its params from earlier results)."""

    message = pyqtSignal(str)

    def __init__(self, description: str, steps: list[Step], on_done: Callable[["EngineTask"], None] | None = None,
                 engine: Engine | None = None, quiet: bool = False, folder=None):
        flags = QgsTask.CanCancel
        if quiet and hasattr(QgsTask, "Silent"):  # QGIS 3.26 and later: no "task complete" notification
            flags |= QgsTask.Silent
        super().__init__(description, flags)
        self.steps, self.on_done = steps, on_done
        self.quiet = quiet  # background checks (sensor, model list) stay out of the dock's progress line
        self.folder = folder  # the run's output folder, removed again when the task fails while it is empty
        self.engine = engine or Engine.shared()
        self.results: list[dict] = []
        self.warnings: list[str] = []
        self.error: EngineJobError | None = None
        self.last_message = ""
        self.ticket = None if quiet else TURNS.take()  # quiet checks do not wait their turn

    def run(self) -> bool:
        try:
            if self.ticket is not None and not TURNS.wait(
                    self.ticket, self.isCanceled, lambda: self._progress(0.0, "queued behind the jobs started before it")):
                return False
            run_steps(self.steps, self._run_job, self._progress, lambda job, result: self.results.append(result))
            return True
        except EngineJobError as e:
            self.error = e
        except Exception as e:  # noqa: BLE001 - a task must report, never take QGIS down
            self.error = EngineJobError(f"{type(e).__name__}: {e}")
        finally:
            TURNS.give_back(self.ticket)
        return False

    def _run_job(self, job: str, params: dict, progress) -> dict:
        result, warnings = self.engine.run(job, params, progress, self.isCanceled, self.description())
        self.warnings += warnings
        return result

    def _progress(self, fraction: float, text: str) -> None:
        self.setProgress(100.0 * fraction)
        self.last_message = text
        self.message.emit(text)

    def finished(self, ok: bool) -> None:  # main thread
        TURNS.give_back(self.ticket)  # also for a task cancelled before it started
        if not ok and self.error is None:
            self.error = EngineJobError("cancelled; nothing was written", cancelled=True)
        if self.on_done:
            self.on_done(self)

    @property
    def result(self) -> dict:
        return self.results[-1] if self.results else {}


class EnvironmentTask(QgsTask):
    """Create the plugin's own engine environment (a venv with torch); `python` is its interpreter when done."""

    def __init__(self, on_done: Callable[["EnvironmentTask"], None] | None = None):
        super().__init__("SpecAware: create engine environment", QgsTask.CanCancel)
        self.on_done = on_done
        self.python: str | None = None
        self.error: Exception | None = None

    def run(self) -> bool:
        try:
            self.python = create_managed_environment(lambda fraction, message: self.setProgress(100 * fraction),
                                                     self.isCanceled)
            return True
        except Exception as e:  # noqa: BLE001 - a task must report, never take QGIS down
            self.error = e
            return False

    def finished(self, ok: bool) -> None:  # main thread
        if not ok and self.error is None:
            self.error = RuntimeError("cancelled")
        if self.on_done:
            self.on_done(self)
