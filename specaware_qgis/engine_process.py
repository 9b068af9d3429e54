"""The session's engine: which Python runs it, and its two worker processes (long jobs; quick questions)."""
from __future__ import annotations

import threading

from . import settings
from .client import EngineClient, EngineJobError
from .environment import EngineEnvironment, find_engine

QUICK_JOBS = {"info", "models", "profiles", "inspect-weights", "diagnostics", "validate"}


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
                self.environment = self.search(settings.get("engine_python") or None)
            return self.environment

    @staticmethod
    def env() -> dict:
        ckpt = settings.get("checkpoint")
        return {"SPECAWARE_CHECKPOINT": ckpt} if ckpt else {}

    def client(self, quick: bool = False) -> EngineClient:
        """The worker for a job; raises with guidance when no engine environment exists."""
        environment = self.find()
        if not environment.ok:
            raise EngineJobError(environment.message)
        attr = "quick" if quick else "main"
        with self.lock:
            client = getattr(self, attr)
            if client is None or client.python != environment.python:
                client = EngineClient(environment.python, "cpu" if quick else settings.get("device") or "auto",
                                      self.env(), attr)
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
