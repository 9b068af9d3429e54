"""Talking to the engine worker process: JSON lines over its stdin/stdout, one job at a time, in order.

Plain Python (no Qt): the dock's tasks and the Processing algorithms both call `EngineClient.run`, so there is
one code path into the engine. A worker that died is restarted on the next job; the job it was running fails
with the worker's last words.
"""
from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

POLL_S = 0.2


class EngineJobError(Exception):
    """A job the engine refused, failed or cancelled; the message is the engine's own sentence."""

    def __init__(self, message: str, cancelled: bool = False, detail: str | None = None):
        super().__init__(message)
        self.cancelled = cancelled
        self.detail = detail


def engine_root() -> Path:
    """The folder holding `engine/` and `resources/`: inside the plugin when installed, the checkout otherwise."""
    here = Path(__file__).resolve().parent
    return here if (here / "engine").is_dir() else here.parent


class EngineClient:
    """One long-lived worker (`python -m engine.service.worker`) that keeps the model warm between jobs."""

    def __init__(self, python: str, device: str = "auto", env: dict | None = None, name: str = "engine"):
        self.python, self.device, self.name = python, device, name
        self.env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.device_name: str | None = None
        self.events: queue.Queue = queue.Queue()
        self.stderr: deque[str] = deque(maxlen=60)
        self.job_lock = threading.Lock()
        self.running: str | None = None  # description of the job holding the worker
        self.ids = itertools.count(1)

    # -- process -------------------------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 120.0) -> None:
        """Start the worker and wait for its `ready` line (torch import, device choice)."""
        root = engine_root()
        env = {**os.environ, **self.env, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        self.events = queue.Queue()
        self.stderr.clear()
        try:
            self.proc = subprocess.Popen([self.python, "-m", "engine.service.worker", "--device", self.device],
                                         cwd=root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, encoding="utf-8", creationflags=flags)
        except OSError as e:
            raise EngineJobError(f"cannot start the engine with {self.python} ({e}); set the engine Python in "
                                 "the SpecAware settings") from e
        threading.Thread(target=self._read_stdout, args=(self.proc, self.events), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            ev = self._next(deadline)
            if ev.get("event") == "ready":
                self.device_name = ev.get("device")
                return

    def _read_stdout(self, proc, events) -> None:
        for line in proc.stdout:
            try:
                events.put(json.loads(line))
            except ValueError:
                self.stderr.append(f"(not protocol) {line.rstrip()}")
        events.put(None)  # end of stream: the worker exited

    def _read_stderr(self, proc) -> None:
        for line in proc.stderr:
            self.stderr.append(line.rstrip())

    def _next(self, deadline: float | None = None) -> dict:
        while True:
            try:
                ev = self.events.get(timeout=POLL_S)
            except queue.Empty:
                if deadline is not None and time.monotonic() > deadline:
                    self.stop()
                    raise EngineJobError(f"the engine did not start in time; its output: {self.last_words()}")
                continue
            if ev is None:
                self._died()
            return ev

    def _died(self):
        proc, self.proc = self.proc, None
        code = proc.wait(timeout=10) if proc else None
        raise EngineJobError(f"the engine process stopped (exit code {code}); it will be restarted for the next "
                             f"job. Its last output: {self.last_words()}")

    def last_words(self) -> str:
        return " | ".join(list(self.stderr)[-8:]) or "(nothing)"

    def stop(self) -> None:
        """Close the worker: end of input lets it finish; a stuck one is killed."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(timeout=10)

    def configure(self, env: dict) -> None:
        """New environment for the worker (e.g. the checkpoint setting): applied by a restart before the next job."""
        if env != self.env:
            self.env = dict(env)
            with self.job_lock:
                self.stop()

    # -- jobs ----------------------------------------------------------------------------------------------
    def run(self, job: str, params: dict, progress: Callable[[float, str], None] | None = None,
            is_cancelled: Callable[[], bool] | None = None, describe: str | None = None) -> tuple[dict, list[str]]:
        """Run one job to its end; returns (result, warnings). Waits, cancellable, while another job runs."""
        is_cancelled = is_cancelled or (lambda: False)
        progress = progress or (lambda f, m: None)
        told = False
        while not self.job_lock.acquire(timeout=POLL_S):
            if is_cancelled():
                raise EngineJobError("cancelled while waiting for the engine; nothing was written", cancelled=True)
            if not told:
                progress(0.0, f"queued: the engine is busy with {self.running}")
                told = True
        try:
            if is_cancelled():  # cancelled while it waited and got the engine the moment it was freed
                raise EngineJobError("cancelled while waiting for the engine; nothing was written", cancelled=True)
            self.running = describe or job
            return self._run_locked(job, params, progress, is_cancelled)
        finally:
            self.running = None
            self.job_lock.release()

    def _run_locked(self, job, params, progress, is_cancelled) -> tuple[dict, list[str]]:
        if not self.alive():
            progress(0.0, "starting the engine")
            self.start()
        job_id = f"{self.name}-{next(self.ids)}"
        self._send({"id": job_id, "job": job, "params": params})
        cancel_sent = False
        while True:
            try:
                ev = self.events.get(timeout=POLL_S)
            except queue.Empty:
                ev = {}
            if ev is None:
                self._died()
            if is_cancelled() and not cancel_sent:
                self._send({"cancel": job_id})
                cancel_sent = True
            if ev.get("id") != job_id:
                continue
            if ev["event"] == "progress":
                progress(float(ev.get("fraction", 0.0)), ev.get("message", ""))
            elif ev["event"] == "result":
                self.device_name = ev.get("device", self.device_name)
                return ev.get("result") or {}, list(ev.get("warnings") or [])
            elif ev["event"] == "error":
                raise EngineJobError(ev.get("message", "the engine failed"), bool(ev.get("cancelled")),
                                     ev.get("detail"))

    def _send(self, msg: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except (OSError, AttributeError) as e:
            self.proc = None
            raise EngineJobError(f"lost the connection to the engine ({e}); it will be restarted for the next "
                                 f"job. Its last output: {self.last_words()}") from e


def default_python() -> str:
    """The Python this process runs on. Inside QGIS `sys.executable` may name QGIS or another Python on PATH,
    so the interpreter beside the running standard library comes first."""
    prefix = Path(sys.exec_prefix)
    v = sys.version_info
    for cand in (prefix / "bin" / f"python{v.major}.{v.minor}", prefix / "bin" / "python3", prefix / "python.exe",
                 Path(sys.executable)):
        if cand.is_file():
            return str(cand)
    return "python3"
