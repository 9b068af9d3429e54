"""The dock's Engine and weights section: the engine's Python (or creating one), the device, and the checkpoint
(the official weights downloaded, or a file the user has, checked by the engine)."""
from __future__ import annotations

from typing import Callable

from qgis.core import Qgis
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget
from qgis.PyQt.QtWidgets import QLineEdit, QPushButton

from .. import settings, vocabulary
from ..engine_process import Engine
from ..task_queue import TaskQueue
from ..tasks import EnvironmentTask
from ..weights import WeightsTask
from .widgets import choice_box, form


class EngineSection(QgsCollapsibleGroupBox):
    """Engine environment, device and weights; `on_engine_changed()` asks for a new engine check."""

    def __init__(self, queue: TaskQueue, say: Callable, engine: Engine, on_engine_changed: Callable[[], None]):
        super().__init__("Engine and weights")
        self.setCollapsed(True)
        self.queue, self.say, self.engine, self.on_engine_changed = queue, say, engine, on_engine_changed
        self.python_widget = QgsFileWidget()
        self.python_widget.setFilePath(settings.get("engine_python"))
        self.python_widget.fileChanged.connect(self._python_changed)
        self.create_env_button = QPushButton("Create engine environment")
        self.create_env_button.clicked.connect(self.create_environment)
        self.device_box = choice_box(vocabulary.DEVICES)
        self.device_box.setCurrentText(settings.get("device") or "auto")
        self.device_box.currentTextChanged.connect(self._device_changed)
        self.checkpoint_widget = QgsFileWidget()
        self.checkpoint_widget.setFilter("PyTorch checkpoint (*.pth *.pt)")
        self.checkpoint_widget.setFilePath(settings.get("checkpoint"))
        self.checkpoint_widget.fileChanged.connect(self._checkpoint_chosen)
        self.weights_button = QPushButton("Get SpecAware-Base weights")
        self.weights_button.clicked.connect(lambda: self.get_weights())
        self.url_edit = QLineEdit(settings.get("weights_url"))
        self.url_edit.editingFinished.connect(lambda: settings.put("weights_url", self.url_edit.text().strip()))
        layout = form(self)
        layout.addRow("Engine Python", self.python_widget)
        layout.addRow(self.create_env_button)
        layout.addRow("Device", self.device_box)
        layout.addRow("Checkpoint", self.checkpoint_widget)
        layout.addRow(self.weights_button)
        layout.addRow("Weights address", self.url_edit)

    def _python_changed(self, path: str) -> None:
        settings.put("engine_python", path)
        self.engine.environment = None
        self.on_engine_changed()

    def _device_changed(self, device: str) -> None:
        """The workers start on the new device with the next job."""
        settings.put("device", device)
        self.engine.shutdown()

    def _checkpoint_chosen(self, path: str) -> None:
        """A file the user picked is checked by the engine before it is used; an empty box means no checkpoint."""
        if path:
            self.get_weights(path)
        else:
            settings.put("checkpoint", "")

    def create_environment(self) -> EnvironmentTask:
        """Install the plugin's own engine environment (torch in a venv) in the background."""
        return self.queue.add(EnvironmentTask(), self._environment_done)

    def _environment_done(self, task: EnvironmentTask) -> None:
        if task.error is None:
            self.engine.environment = None
            self.on_engine_changed()
        else:
            self.say(f"could not create the engine environment: {task.error}", Qgis.Critical)

    def get_weights(self, path: str | None = None) -> WeightsTask:
        """Download the official weights (resumable) or check a file the user has; then select them."""
        task = WeightsTask(self.url_edit.text().strip() or settings.WEIGHTS_URL, settings.weights_dir(), self.engine,
                           path)
        return self.queue.add(task, self._weights_done)

    def _weights_done(self, task: WeightsTask) -> None:
        if task.error:
            self.say(task.error, Qgis.Critical)
            return
        settings.put("checkpoint", task.path)
        self.checkpoint_widget.blockSignals(True)
        self.checkpoint_widget.setFilePath(task.path)
        self.checkpoint_widget.blockSignals(False)
        s = task.summary
        self.say(f"SpecAware weights ready: {task.path} (E={s['embed_dim']}, depth {s['depth']}, "
                 f"{s['parameters'] / 1e6:.1f} M parameters)", Qgis.Success)
