"""Bad input, table-driven, through the command line and the real worker (the cases are in `bad_inputs.py`):
every case is answered with a sentence that names the file, field or value (exit status 2 or an error event), no
traceback, no output left, no input changed (checksums), and the worker still answers afterwards. Then what
tables cannot show: kill -9 and SIGTERM mid-job, a full disk, a read-only data folder, a resume that belongs to
another run, and worker lines that are not requests."""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bad_inputs import CASES, make_inputs
from conftest import ROOT
from engine.model.bundles import save_bundle
from engine.model.config import preset
from engine.model.segmenter import build_segmenter
from engine.service import cli
from engine.service.jobs import JOBS
from test_worker import WorkerProcess


def checksums(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPECAWARE_DATA_DIR", str(base / "data"))
        mp.delenv("SPECAWARE_CHECKPOINT", raising=False)
        files = make_inputs(base / "inputs")
        model = build_segmenter(preset("tiny", depth=2), "light", 3)
        state = {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
        state["pixel_head.mlp.0.weight"] = torch.full_like(state["pixel_head.mlp.0.weight"], float("nan"))
        save_bundle(Path(files["nan_model"]), state, {
            "preset_config": model.cfg.to_dict(), "head": "light", "tile": 32, "backbone": "random",
            "classes": {"names": ["a", "b", "c"], "colors": ["#000000"] * 3},
            "profile": {"name": "test", "sensor": "others", "level": "L2", "wavelength_nm": list(range(420, 2420, 100)),
                        "fwhm_nm": [10.0] * 20}})
        yield {"files": files, "inputs": base / "inputs", "out": base / "out", "data": base / "data"}


def argv_of(job: str, params: dict) -> list[str]:
    """The command line a user would type for `params`."""
    argv, spec = [job], {name: p for name, _, p, _ in JOBS[job].request.spec()}
    for name, p in spec.items():
        if p.positional and params.get(name) is not None:
            argv += [str(v) for v in (params[name] if isinstance(params[name], list) else [params[name]])]
    for name, value in params.items():
        if spec[name].positional or value is None or value is False:
            continue
        flag = f"--{name.replace('_', '-')}"
        argv += [flag] if value is True else [a for v in (value if isinstance(value, list) else [value])
                                              for a in (flag, str(v))]
    return argv


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_answers_with_a_sentence_and_leaves_nothing(world, case, capsys):
    out = world["out"] / f"cli-{case.id}"
    before = checksums(world["inputs"])
    code = cli.main(argv_of(case.job, case.params(world["files"], out)))
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after any progress lines
    assert code == 2, err
    assert last.startswith("error: ") and re.search(case.expect, last), err
    assert "Traceback" not in err and len(last) < 1000, err
    assert not out.exists() or not any(out.iterdir()), f"{case.id} left {list(out.iterdir())}"
    assert checksums(world["inputs"]) == before, "an input changed"


@pytest.fixture(scope="module")
def worker(world):
    w = WorkerProcess({**os.environ, "PYTHONPATH": str(ROOT), "SPECAWARE_DATA_DIR": str(world["data"])})
    yield w
    w.close()


def test_the_worker_answers_every_case_with_an_error_event_and_keeps_serving(world, worker):
    before = checksums(world["inputs"])
    for case in CASES:
        out = world["out"] / f"worker-{case.id}"
        worker.send({"id": case.id, "job": case.job, "params": case.params(world["files"], out)})
        ev = worker.until_done(case.id)[-1]
        assert ev["event"] == "error" and not ev["cancelled"], (case.id, ev)
        assert re.search(case.expect, ev["message"]) and "internal error" not in ev["message"], (case.id, ev)
        assert not out.exists() or not any(out.iterdir()), case.id
    assert checksums(world["inputs"]) == before
    worker.send({"id": "alive", "job": "info", "params": {"raster": world["files"]["scene"]}})
    assert worker.until_done("alive")[-1]["event"] == "result"


def test_worker_lines_that_are_not_requests(world, worker):
    lines = ["42", "null", "[1, 2]", '"text"', "{not json", '{"id": "a"}', '{"id": "b", "job": "info"}',
             '{"id": "c", "job": "info", "params": [1]}', '{"id": "d", "job": "info", "params": {"raster": "x", '
             '"color": 3}}', '{"id": "' + "i" * 3000 + '", "job": "nope"}']
    for line in lines:
        worker.proc.stdin.write(line + "\n")
        worker.proc.stdin.flush()
        ev = worker.next()
        assert ev["event"] == "error" and len(ev["message"]) < 600, (line[:40], ev)
    worker.send({"id": "alive2", "job": "profiles", "params": {}})
    assert worker.until_done("alive2")[-1]["event"] == "result"


def test_spellings_of_one_class_are_merged_with_a_note(world):
    from engine.service.jobs import call
    r = call("finetune", raster=world["files"]["scene"], polygons=world["files"]["spellings"], class_field="class",
             out=str(world["out"] / "spell"), epochs=1, window=32, frozen_pool=8, windows_per_epoch=8)
    assert r["labels"]["classes"] == ["Sand", "water"]
    assert any("'Sand', 'sand'" in n and "merged into one class 'Sand'" in n for n in r["warnings"])


# --- what a table cannot show ------------------------------------------------------------------------------------

def slow_classify(world, out: Path) -> subprocess.Popen:
    """A CLI classify long enough to be stopped in the middle (clusters on a 2000-line raster)."""
    from test_engine_io import make_tif, spectra, WL20
    from scenes import NORTH_UP
    big = world["inputs"].parent / "big.tif"
    if not big.exists():
        make_tif(big, spectra(20, 2000, 64), gt=NORTH_UP, wavelengths=WL20)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPECAWARE_DATA_DIR": str(world["data"])}
    return subprocess.Popen([sys.executable, "-m", "engine", "classify", "--raster", str(big), "--clusters", "3",
                             "--out", str(out), "--device", "cpu"], cwd=ROOT, env=env, stderr=subprocess.PIPE,
                            text=True)


def wait_for_tiles(proc) -> None:
    for line in proc.stderr:
        if "tiles" in line and "k-means" not in line:
            return
    raise AssertionError("the job ended before it streamed")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_run_leaves_nothing_visible_and_the_next_run_cleans_up(world, sig):
    out = world["out"] / f"killed-{sig.name}"
    out.mkdir(parents=True)
    (out / "mine.txt").write_text("the user's file")
    proc = slow_classify(world, out)
    wait_for_tiles(proc)
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert visible == ["mine.txt"], visible
    hidden = [p for p in out.iterdir() if p.name.startswith(".")]
    if sig == signal.SIGTERM:
        assert code == 143 and hidden == [], "SIGTERM unwinds the job and removes its scratch folder"
    else:
        assert code == -9 and len(hidden) == 1, "kill -9 leaves a hidden scratch folder, and only that"
        from engine.service.jobs import call
        call("classify", raster=world["files"]["scene"], out=str(out), clusters=2)  # the next run in this folder
        assert sorted(p.name for p in out.iterdir()) == ["classes.tif", "classes.tif.aux.xml", "confidence.tif",
                                                          "mine.txt", "report.html", "report.json"]
    assert (out / "mine.txt").read_text() == "the user's file"


@pytest.fixture
def mounted(tmp_path):
    """A tmpfs mounted here (needs root); yields a function mount(folder, size, read_only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; run the tests as root to check full and read-only disks")
    done = []

    def mount(folder: Path, size: str = "300k", read_only: bool = False) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        opts = f"size={size}" + (",ro" if read_only else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")
        done.append(folder)
        return folder
    yield mount
    for folder in reversed(done):
        subprocess.run(["umount", str(folder)], check=False)


def test_a_full_disk_is_a_sentence_and_leaves_nothing(world, mounted, capsys):
    from test_engine_io import make_tif, spectra, WL20
    from scenes import NORTH_UP
    noise = world["inputs"].parent / "noise.tif"
    make_tif(noise, spectra(20, 400, 400, seed=3), gt=NORTH_UP, wavelengths=WL20)
    disk = mounted(world["out"] / "small-disk", "300k")
    code = cli.main(["classify", "--raster", str(noise), "--clusters", "3", "--out", str(disk / "maps")])
    err = capsys.readouterr().err
    assert code == 2 and f"the disk holding {disk / 'maps'} is full; nothing was kept" in err, err
    assert list(disk.iterdir()) == []


def test_a_read_only_data_folder_fails_before_training(world, mounted, monkeypatch, capsys):
    data = mounted(world["out"] / "ro-data", read_only=True)
    monkeypatch.setenv("SPECAWARE_DATA_DIR", str(data))
    f = world["files"]
    t0 = time.monotonic()
    code = cli.main(["finetune", "--raster", f["scene"], "--polygons", f["polygons"], "--class-field", "class",
                     "--out", "m"])
    err = capsys.readouterr().err
    assert code == 2 and "is read-only; the model could not be saved there" in err, err
    assert time.monotonic() - t0 < 5, "it must fail before any training"


def test_resume_belongs_to_its_run(world, monkeypatch):
    from engine.core.errors import Cancelled, EngineError
    from engine.service.jobs import call
    f = world["files"]
    params = dict(raster=f["scene"], polygons=f["polygons"], class_field="class", out=str(world["out"] / "resumed"),
                  epochs=4, window=32, frozen_pool=8, windows_per_epoch=8, head="light")  # epochs to resume
    seen = []
    with pytest.raises(Cancelled):
        call("finetune", lambda fr, m: seen.append(m), lambda: sum("epoch" in m for m in seen) >= 2, **params)
    other = str(Path(f["polygons"]).with_name("spell.gpkg"))
    with pytest.raises(EngineError, match="cannot resume: the interrupted run had other polygons"):
        call("finetune", **{**params, "polygons": other}, resume=True)
    # Another run of the same model name into another folder keeps its own state and leaves this one alone.
    call("finetune", **{**params, "out": str(world["out"] / "elsewhere" / "resumed"), "epochs": 1})
    r = call("finetune", **params, resume=True)
    assert r["epochs_run"] == 4 and [h["epoch"] for h in json.loads(
        (Path(r["bundle"]) / "model.json").read_text())["history"]] == [1, 2, 3, 4]


def test_a_folder_named_like_a_model_in_the_working_directory_is_not_that_model(world, monkeypatch, tmp_path):
    from engine.core.errors import EngineError
    from engine.service.jobs import call
    (tmp_path / "shadow").mkdir()
    (tmp_path / "shadow" / "model.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EngineError, match="no model 'shadow': give a bundle folder or one of the saved models"):
        call("classify", raster=world["files"]["scene"], out=str(tmp_path / "o"), model="shadow")


@pytest.mark.parametrize("job,params", [
    ("suggest", lambda f: {"raster": f["scene"], "model": "any", "count": 3}),
    ("classify-cells", lambda f: {"raster": f["scene"], "model": "any", "cell_size": 8}),
    ("adapt", lambda f: {"raster": [f["scene"]], "minutes": 0.1}),
])
def test_an_existing_output_file_is_left_alone_unless_overwrite_is_asked(world, tmp_path, job, params):
    """An analyst's own file under the output name (labelled points, say) is never replaced by accident."""
    from engine.core.errors import EngineError
    from engine.service.jobs import parse
    mine = tmp_path / ("mine.pth" if job == "adapt" else "mine.gpkg")
    mine.write_bytes(b"the analyst's labelled points")
    with pytest.raises(EngineError, match=r"out: .*mine\.(gpkg|pth) exists already and is left alone; choose another"):
        parse(job, {**params(world["files"]), "out": str(mine)}).validate()
    assert mine.read_bytes() == b"the analyst's labelled points"
    parse(job, {**params(world["files"]), "out": str(mine), "overwrite": True}).validate()  # asked for: allowed


@pytest.mark.parametrize("job,params,name", [
    ("classify", lambda f: {"raster": f["scene"], "clusters": 3}, "report.html"),
    ("change", lambda f: {"before": f["scene"], "after": f["scene"]}, "summary.json"),
])
def test_an_output_folder_holding_files_of_the_output_names_is_left_alone_unless_overwrite(world, tmp_path, job,
                                                                                           params, name):
    """The analyst's own report.html (or an earlier run's map) in the chosen folder is never replaced by accident;
    with `overwrite` the job runs and replaces it."""
    from engine.core.errors import EngineError
    from engine.service.jobs import call
    mine = tmp_path / "project" / name
    mine.parent.mkdir()
    mine.write_text("the analyst's notes")
    with pytest.raises(EngineError, match=rf"out: .*project holds {name} already, left alone; choose another folder"):
        call(job, **params(world["files"]), out=str(mine.parent))
    assert mine.read_text() == "the analyst's notes" and [p.name for p in mine.parent.iterdir()] == [name]
    call(job, **params(world["files"]), out=str(mine.parent), overwrite=True)
    assert mine.read_text() != "the analyst's notes"
