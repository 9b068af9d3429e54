"""The plugin's settings (QGIS settings under `specaware/`) and the shared engine client built from them."""
from __future__ import annotations

import os
import threading
from pathlib import Path

from qgis.core import QgsSettings

from .client import EngineClient
from .environment import EngineEnvironment, find_engine, user_data_dir

WEIGHTS_URL = "https://r2.3sobs.top/share/SpecAware/ckpt/SpecAware_Base_model.pth"
KEYS = {"engine_python": "", "device": "auto", "checkpoint": "", "weights_url": WEIGHTS_URL, "output_dir": ""}


def get(key: str) -> str:
    """A setting; `SPECAWARE_<KEY>` in the environment wins (headless qgis_process runs, servers)."""
    return os.environ.get(f"SPECAWARE_{key.upper()}") or str(QgsSettings().value(f"specaware/{key}", KEYS[key]) or "")


def put(key: str, value) -> None:
    QgsSettings().setValue(f"specaware/{key}", "" if value is None else str(value))


def output_dir() -> Path:
    return Path(get("output_dir") or Path.home() / "SpecAware results")


def weights_dir() -> Path:
    return user_data_dir() / "weights"


class Engine:
    """The session's engine: where it runs and its two workers (long jobs; quick questions like `info`)."""

    _shared: "Engine | None" = None

    def __init__(self, search=find_engine):
        self.search = search  # how to locate the engine's Python (given the configured one)
        self.lock = threading.Lock()  # tasks start on several threads; one of them finds the engine
        self.environment: EngineEnvironment | None = None
        self.main: EngineClient | None = None
        self.quick: EngineClient | None = None

    @classmethod
    def shared(cls) -> "Engine":
        if cls._shared is None:
            cls._shared = Engine()
        return cls._shared

    def find(self, refresh: bool = False) -> EngineEnvironment:
        """Locate the engine's Python once per session (probing imports torch: seconds)."""
        with self.lock:
            if self.environment is None or refresh or not self.environment.ok:
                self.shutdown()
                self.environment = self.search(get("engine_python") or None)
            return self.environment

    def env(self) -> dict:
        ckpt = get("checkpoint")
        return {"SPECAWARE_CHECKPOINT": ckpt} if ckpt else {}

    def client(self, quick: bool = False) -> EngineClient:
        """The worker for a job; raises with guidance when no engine environment exists."""
        from .client import EngineJobError
        environment = self.find()
        if not environment.ok:
            raise EngineJobError(environment.message)
        attr = "quick" if quick else "main"
        with self.lock:
            client = getattr(self, attr)
            if client is None or client.python != environment.python:
                client = EngineClient(environment.python, "cpu" if quick else get("device") or "auto", self.env(),
                                      attr)
                setattr(self, attr, client)
        client.configure(self.env())
        return client

    def run(self, job: str, params: dict, progress=None, is_cancelled=None, describe: str | None = None):
        """Run a job on the right worker: the one code path of the dock and of Processing."""
        quick = job in QUICK_JOBS
        return self.client(quick).run(job, params, progress, is_cancelled, describe)

    def shutdown(self) -> None:
        for c in (self.main, self.quick):
            if c is not None:
                c.stop()
        self.main = self.quick = None


QUICK_JOBS = {"info", "models", "profiles", "inspect-weights", "diagnostics"}
