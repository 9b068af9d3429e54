"""The dock's running QGIS tasks: started here, forgotten when they end, all cancelled when the plugin unloads.

Engine jobs the user started drive the dock's progress line through the signals below; quiet background checks
(sensor, model list), downloads and installs do not. A task that ends after unload touches no widget.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from qgis.core import Qgis, QgsApplication, QgsTask
from qgis.PyQt.QtCore import QObject, pyqtSignal

from .engine_process import Engine
from .tasks import TURNS, EngineTask
from .workflows import Step

Say = Callable[..., None]  # the dock's message-bar helper: say(text, level=Qgis.Info, report=None)


class TaskQueue(QObject):
    """Every task the dock runs. The engine runs one job at a time, so a second engine task waits its turn."""

    started = pyqtSignal(object)  # a visible engine task was queued
    progressed = pyqtSignal(object, str)  # the oldest visible engine task moved on (message, or "" for a value)
    ended = pyqtSignal(object)  # an engine task ended and its results were handled

    def __init__(self, engine: Engine, say: Say):
        super().__init__()  # no parent: tasks ending after the dock is deleted still find their queue
        self.engine, self.say = engine, say
        self.tasks: list[QgsTask] = []
        self.closing = False  # set on unload: what ends afterwards finds no widget to update

    def start(self, description: str, steps: list[Step], on_success: Callable[[EngineTask], None],
              quiet: bool = False, folder: Path | None = None,
              on_error: Callable[[EngineTask], None] | None = None) -> EngineTask:
        """Queue a chain of engine jobs; `on_success(task)` or `on_error(task)` run on the main thread at its end
        (without `on_error`, the failure goes to the message bar)."""
        busy = [t.description() for t in self.visible()]
        task = EngineTask(description, steps, engine=self.engine, quiet=quiet, folder=folder)
        try:
            task.message.connect(lambda text, t=task: self._progressed(t, text))
            task.progressChanged.connect(lambda _, t=task: self._progressed(t, ""))
            if busy and not quiet:
                self.say(f"{description} is queued: the engine runs one job at a time and is busy with {busy[0]}.")
            self.add(task, lambda t: self._engine_task_done(t, on_success, on_error))
        except BaseException:
            TURNS.give_back(task.ticket)  # a task that never reached the task manager must not hold up later jobs
            raise
        if not quiet:
            self.started.emit(task)
        return task

    def add(self, task: QgsTask, on_done: Callable) -> QgsTask:
        """Run a task that calls `task.on_done(task)` when it ends; `on_done` hears of it unless the dock is gone."""
        task.on_done = lambda t: self._done(t, on_done)
        self.tasks.append(task)
        QgsApplication.taskManager().addTask(task)
        return task

    def visible(self) -> list[EngineTask]:
        """The engine jobs the user started, oldest first (not the quiet checks, downloads or installs)."""
        return [t for t in self.tasks if isinstance(t, EngineTask) and not t.quiet]

    def current(self) -> EngineTask | None:
        """The visible engine job the progress line follows."""
        return next(iter(self.visible()), None)

    def cancel(self) -> None:
        """Cancel the engine jobs the user started (the Cancel button)."""
        for task in self.visible():
            task.cancel()

    def cancel_all(self) -> None:
        """On unload: cancel everything; what ends afterwards touches no widget."""
        self.closing = True
        for task in list(self.tasks):
            task.cancel()

    def _progressed(self, task: EngineTask, text: str) -> None:
        if not self.closing and task is self.current():
            self.progressed.emit(task, text)

    def _done(self, task: QgsTask, on_done: Callable) -> None:
        if task in self.tasks:
            self.tasks.remove(task)
        if self.closing:
            return
        on_done(task)

    def _engine_task_done(self, task: EngineTask, on_success, on_error) -> None:
        if task.error is None:
            try:
                on_success(task)
            except Exception as e:  # noqa: BLE001 - styling must not take the dock down
                self.say(f"{task.description()} finished but its results could not be added: {e}", Qgis.Critical)
            for warning in task.warnings:
                self.say(warning, Qgis.Warning)
        else:
            if task.folder is not None and task.folder.is_dir() and not any(task.folder.iterdir()):
                task.folder.rmdir()  # nothing half-written stays behind
            if on_error is not None:
                on_error(task)
            elif task.error.cancelled:
                self.say(f"{task.description()}: {task.error}", Qgis.Info)
            else:
                self.say(f"{task.description()} failed: {task.error}", Qgis.Critical)
        self.ended.emit(task)
