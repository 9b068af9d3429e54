"""The engine worker: JSON lines over stdin/stdout, one job at a time, cancellable.

Request:  {"id": "7", "job": "info", "params": {...}}     Cancel: {"cancel": "7"}
Events:   {"id": "7", "event": "progress", "fraction": 0.4, "message": "..."}
          {"id": "7", "event": "result", "result": {...}, "warnings": [...], "device": "CPU"}
          {"id": "7", "event": "error", "message": "...", "cancelled": false}
Run it as `python -m engine.service.worker [--device cpu|cuda|auto] [--extra-jobs MODULE]`. Every line gets an
answer: a line that is not a JSON object with a known job and valid parameters gets an error event, and the
worker stays alive.
"""
from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import threading
import traceback

from ..core.errors import Cancelled, EngineError, shorten
from ..core.runtime import Runtime
from .jobs import parse, run_request


class Worker:
    def __init__(self, out=None, device: str | None = None):
        self.out = out or sys.stdout
        self.runtime = Runtime(device)
        self.lock = threading.Lock()
        self.current: tuple[str, threading.Event] | None = None  # the running job; None once its end is sent
        self.thread: threading.Thread | None = None

    def emit(self, msg: dict) -> None:
        with self.lock:
            self.out.write(json.dumps(msg, default=str) + "\n")
            self.out.flush()

    def error(self, job_id, message: str) -> None:
        self.emit({"id": job_id, "event": "error", "cancelled": False, "message": message})

    def handle(self, line: str) -> None:
        try:
            msg = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            self.error(None, f"not a JSON request ({shorten(e, 120)}): {shorten(line.strip(), 80)}")
            return
        if not isinstance(msg, dict):
            self.error(None, "a request is a JSON object with 'id', 'job' and 'params', not "
                             f"{shorten(line.strip(), 80)}")
            return
        if "cancel" in msg:
            if self.current and self.current[0] == shorten(msg["cancel"], 80):
                self.current[1].set()
            return
        job_id = shorten(msg.get("id", ""), 80)
        running = self.current
        if running:
            self.error(job_id, f"the engine is busy with job {running[0]}; wait for it or cancel it")
            return
        try:
            request = parse(msg.get("job"), msg.get("params"))
        except EngineError as e:
            self.error(job_id, str(e))
            return
        cancel = threading.Event()
        self.current = (job_id, cancel)
        self.thread = threading.Thread(target=self.run, args=(job_id, request, cancel), daemon=True)
        self.thread.start()

    def run(self, job_id: str, request, cancel: threading.Event) -> None:
        def progress(fraction: float, message: str = "") -> None:
            self.emit({"id": job_id, "event": "progress", "fraction": round(float(fraction), 4), "message": message})

        name = request.job
        try:
            result, warnings = run_request(request, progress, cancel.is_set, self.runtime)
            end = {"id": job_id, "event": "result", "result": result, "warnings": warnings,
                   "device": self.runtime.device_name}
        except Cancelled:
            end = {"id": job_id, "event": "error", "cancelled": True, "message": "cancelled; nothing was written"}
        except EngineError as e:
            end = {"id": job_id, "event": "error", "cancelled": False, "message": str(e)}
        except Exception as e:  # noqa: BLE001 - the worker must survive any job failure
            end = {"id": job_id, "event": "error", "cancelled": False,
                   "message": f"internal error in job {name!r}: {type(e).__name__}: {shorten(e, 400)}",
                   "detail": traceback.format_exc()}
        self.current = None  # before the end event: a client may send its next request the moment it reads it
        self.emit(end)

    def terminate(self, signum, frame) -> None:
        """SIGTERM: cancel the running job, let it remove what it was writing, then exit."""
        running = self.current
        if running:
            running[1].set()
        if self.thread:
            self.thread.join(timeout=30)
        raise SystemExit(128 + signum)

    def serve(self, stdin=None) -> None:
        for line in stdin or sys.stdin:
            if line.strip():
                self.handle(line)
        if self.thread:
            self.thread.join()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.service.worker", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--extra-jobs", action="append", default=[], help="module that registers more jobs (tests)")
    args = p.parse_args(argv)
    for mod in args.extra_jobs:
        importlib.import_module(mod)
    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    worker = Worker(out, args.device)
    signal.signal(signal.SIGTERM, worker.terminate)
    worker.emit({"id": None, "event": "ready", "device": worker.runtime.device_name})
    worker.serve(sys.stdin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
