"""The real engine worker process: JSON lines, info, a classify-shaped job, cancel, errors, keep serving."""
import json
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

from conftest import DATA, ROOT, need_shared
from test_engine_io import WL20, make_tif, spectra


class WorkerProcess:
    """The real worker; stdout and stderr are drained by threads so a chatty job can never block on a full pipe."""

    def __init__(self, env):
        env = {**env, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
        self.proc = subprocess.Popen([sys.executable, "-m", "engine.service.worker", "--device", "cpu",
                                      "--extra-jobs", "standin_jobs"], cwd=ROOT, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=lambda: [self.lines.put(x) for x in self.proc.stdout] + [self.lines.put("")],
                         daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        assert self.next()["event"] == "ready"

    def send(self, msg):
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def next(self, timeout: float = 120):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event from the worker in {timeout} s; stderr: {''.join(self.stderr)[-2000:]}")
        assert line, f"the worker exited; stderr: {''.join(self.stderr)[-2000:]}"
        return json.loads(line)

    def until_done(self, job_id):
        events = []
        while True:
            ev = self.next()
            if ev.get("id") == job_id:
                events.append(ev)
                if ev["event"] in ("result", "error"):
                    return events

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture
def worker(engine_env, tmp_path):
    w = WorkerProcess({**engine_env, "SPECAWARE_DATA_DIR": str(tmp_path / "data")})
    yield w
    w.close()


def test_info_job_reports_device(worker):
    path = need_shared(DATA / "change_landsat_taizhou" / "Taizhou_2000TM")
    worker.send({"id": "a", "job": "info", "params": {"raster": str(path)}})
    ev = worker.until_done("a")[-1]
    assert ev["event"] == "result" and ev["device"] == "CPU"
    assert ev["result"]["sensor"] == "others" and ev["result"]["bands"] == 6


def test_failed_job_then_keeps_serving(worker, tmp_path):
    worker.send({"id": "b", "job": "info", "params": {"raster": str(tmp_path / "missing.tif")}})
    ev = worker.until_done("b")[-1]
    assert ev["event"] == "error" and "missing.tif" in ev["message"] and not ev["cancelled"]
    worker.send({"id": "c", "job": "no-such-job", "params": {}})
    assert "unknown job" in worker.until_done("c")[-1]["message"]
    path = make_tif(tmp_path / "ok.tif", spectra(), wavelengths=WL20)
    worker.send({"id": "d", "job": "info", "params": {"raster": str(path)}})
    assert worker.until_done("d")[-1]["event"] == "result"


def test_classify_shaped_job_progress_and_outputs(worker, tmp_path):
    path = make_tif(tmp_path / "in.tif", spectra(h=40, w=40), wavelengths=WL20)
    worker.send({"id": "e", "job": "classify-standin", "params": {"raster": str(path), "out": str(tmp_path / "o")}})
    events = worker.until_done("e")
    assert events[-1]["event"] == "result", events[-1]
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert (tmp_path / "o" / "classes.tif").is_file()


def test_cancel_stops_within_two_seconds_and_cleans_up(worker, tmp_path):
    path = make_tif(tmp_path / "big.tif", spectra(h=96, w=96), wavelengths=WL20)
    worker.send({"id": "f", "job": "classify-standin",
                 "params": {"raster": str(path), "out": str(tmp_path / "o"), "delay": 0.3, "batch_size": 1}})
    while worker.next()["event"] != "progress":
        pass
    # A second job while busy is refused clearly.
    worker.send({"id": "g", "job": "info", "params": {"raster": str(path)}})
    t0 = time.monotonic()
    worker.send({"cancel": "f"})
    events = {}
    while len(events) < 2:
        ev = worker.next()
        if ev["event"] in ("result", "error"):
            events[ev["id"]] = ev
    assert time.monotonic() - t0 < 2.0
    assert "busy" in events["g"]["message"]
    assert events["f"]["event"] == "error" and events["f"]["cancelled"]
    assert not (tmp_path / "o").exists(), "the cancelled run removes the output folder it made"


def test_finetune_then_classify_in_the_worker_and_cancel_leaves_no_bundle(worker, tmp_path):
    from scenes import labelled_raster, stripe_polygons, write_polygons
    raster, truth = labelled_raster(tmp_path / "s.tif")
    polygons = write_polygons(tmp_path / "p.gpkg", stripe_polygons())
    params = {"raster": str(raster), "polygons": str(polygons), "class_field": "class", "epochs": 3, "window": 32,
              "batch_size": 4, "windows_per_epoch": 32, "frozen_pool": 16, "lr": 3e-3, "head": "light"}
    worker.send({"id": "t1", "job": "finetune", "params": {**params, "out": "m"}})
    events = worker.until_done("t1")
    assert events[-1]["event"] == "result", events[-1]
    assert any("epoch 3/3" in e.get("message", "") for e in events)
    worker.send({"id": "c1", "job": "classify", "params": {"raster": str(raster), "model": "m",
                                                          "out": str(tmp_path / "map")}})
    ev = worker.until_done("c1")[-1]
    assert ev["event"] == "result" and ev["device"] == "CPU"
    assert ev["result"]["kind"] == "supervised" and (tmp_path / "map" / "classes.tif").is_file()

    worker.send({"id": "t2", "job": "finetune", "params": {**params, "out": "cancelled", "epochs": 50}})
    while True:  # the previous job's end was sent, so this one is accepted at once (no "busy")
        ev = worker.next()
        assert ev["event"] == "progress", ev
        if "epoch" in ev["message"]:
            break
    t0 = time.monotonic()
    worker.send({"cancel": "t2"})
    ev = worker.until_done("t2")[-1]
    assert time.monotonic() - t0 < 2.0
    assert ev["event"] == "error" and ev["cancelled"]
    assert sorted(p.name for p in (tmp_path / "data" / "models").iterdir()) == ["m"]
