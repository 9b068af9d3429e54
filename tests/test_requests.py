"""Typed job requests: the CLI is built from them, the plugin's job chains validate against them, and every
numeric field out of range is answered with a sentence that names it (never a traceback)."""
import math
from dataclasses import MISSING

import pytest

from engine.core.errors import EngineError
from engine.core.vocabulary import HEADS, PRESETS, TASKS
from engine.model.config import PRESETS as MODEL_PRESETS
from engine.model.linear import build_model
from engine.service import cli
from engine.service.jobs import JOBS, parse
from scenes import labelled_raster, stripe_polygons, write_polygons
from specaware_qgis import workflows


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECAWARE_DATA_DIR", str(tmp_path / "data"))
    raster, _ = labelled_raster(tmp_path / "scene.tif")
    polygons = write_polygons(tmp_path / "train.gpkg", stripe_polygons())
    (tmp_path / "list.txt").write_text(f"{raster}\n")
    return {"raster": str(raster), "polygons": str(polygons), "dir": tmp_path, "list": str(tmp_path / "list.txt")}


def valid_params(job: str, f: dict) -> dict:
    """The smallest valid parameters of every job, on real files."""
    d = f["dir"]
    return {
        "info": {"raster": f["raster"]},
        "classify": {"raster": f["raster"], "out": str(d / "out"), "clusters": 3},
        "finetune": {"raster": f["raster"], "polygons": f["polygons"], "class_field": "class", "out": "m"},
        "change": {"before": f["raster"], "after": f["raster"], "out": str(d / "chg")},
        "classify-cells": {"raster": f["raster"], "model": "m", "cell_size": 8, "out": str(d / "cells.gpkg")},
        "adapt": {"raster": [f["raster"]], "minutes": 1, "out": str(d / "a.pth")},
        "pretrain": {"data": [f["raster"]], "out": str(d / "run")},
        "make-patches": {"raster": [f["raster"]], "out": str(d / "patches")},
        "classify-batch": {"rasters": f["list"], "model": "m", "out": str(d / "maps")},
        "models": {"action": "list"},
        "profiles": {},
        "inspect-weights": {"path": f["polygons"]},
        "verify-golden": {"files": [f["polygons"]]},
        "diagnostics": {},
        "validate": {"name": "info", "params": {"raster": f["raster"]}},
        "suggest": {"raster": f["raster"], "model": "m", "out": str(d / "next.gpkg")},
    }[job]


def test_every_job_has_valid_parameters_in_this_table(files):
    for job in JOBS:
        assert parse(job, valid_params(job, files)).job == job


def bad_values(p, integer: bool) -> list:
    """Values outside a numeric field's range, and values that are no number at all."""
    out = ["abc", math.nan, math.inf]
    if p.lo is not None:
        out.append(p.lo if p.lo_open else p.lo - 1)
    if p.hi is not None:
        out.append(p.hi + 1)
    if integer:
        out.append(2.5)
    return out


CASES = [(job, name, typ, p) for job, j in JOBS.items() for name, typ, p, _ in j.request.spec()
         if p.lo is not None or p.hi is not None]


def test_the_table_covers_the_numeric_fields_of_the_big_jobs():
    fields = {(job, name) for job, name, _, _ in CASES}
    assert {("finetune", "epochs"), ("finetune", "batch_size"), ("finetune", "window"), ("finetune", "lr"),
            ("classify", "clusters"), ("change", "min_area"), ("adapt", "minutes"), ("pretrain", "mask_ratio"),
            ("classify-cells", "cell_size")} <= fields
    assert len(CASES) >= 30


@pytest.mark.parametrize("job,name,typ,p", CASES, ids=[f"{c[0]}.{c[1]}" for c in CASES])
def test_out_of_range_numbers_are_a_sentence_naming_the_field(files, job, name, typ, p):
    integer = "int" in str(typ)
    for value in bad_values(p, integer):
        with pytest.raises(EngineError) as e:
            parse(job, {**valid_params(job, files), name: value})
        message = str(e.value)
        assert message.startswith(f"{name} ") and "give" in message, message
        assert "Traceback" not in message


@pytest.mark.parametrize("job", ["finetune", "classify", "change", "adapt"])
def test_the_cli_answers_out_of_range_values_with_exit_2_and_the_same_sentence(files, job, capsys):
    j = JOBS[job]
    name, typ, p = next((n, t, p) for n, t, p, _ in j.request.spec() if p.lo is not None and p.cli)
    params = {**valid_params(job, files), name: (p.lo - 1)}
    argv = [job]
    for k, v in params.items():
        for item in v if isinstance(v, list) else [v]:
            argv += [f"--{k.replace('_', '-')}", str(item)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {name} ") and "out of range" in err, err


def test_cli_commands_are_built_from_the_requests():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(JOBS)
    for job, j in JOBS.items():
        cli_only = {"help", "json"} | ({"device"} if getattr(j.request, "computes", False) else set())
        dests = {a.dest for a in sub.choices[job]._actions} - cli_only
        assert dests == {name for name, _, p, _ in j.request.spec() if p.cli}, job
        text = sub.choices[job].format_help()  # what `--help` prints: argparse formats every help with %
        assert all(p.help.split("(")[0].split(",")[0][:20] in " ".join(text.split())
                   for _, _, p, _ in j.request.spec() if p.cli and p.help), job
    assert "95 % intervals" in " ".join(sub.choices["classify"].format_help().split())


def test_unknown_missing_and_mistyped_parameters(files):
    base = valid_params("finetune", files)
    with pytest.raises(EngineError, match="has no parameter epoch;"):
        parse("finetune", {**base, "epoch": 3})
    with pytest.raises(EngineError, match="needs the parameter 'class_field'"):
        parse("finetune", {k: v for k, v in base.items() if k != "class_field"})
    with pytest.raises(EngineError, match="head 'unet' is not allowed: give one of linear, light, upernet"):
        parse("finetune", {**base, "head": "unet"})
    assert parse("finetune", {**base, "backbone_mode": "last-3"}).backbone_mode == "last-3"
    with pytest.raises(EngineError, match="must be a JSON object"):
        parse("finetune", [1, 2])
    with pytest.raises(EngineError, match="unknown job"):
        parse(42, {})
    assert parse("finetune", {**base, "epochs": "7", "overwrite": "false"}).epochs == 7


def test_required_fields_have_no_default_and_defaults_validate(files):
    for job, j in JOBS.items():
        req = parse(job, valid_params(job, files))
        for name, _, p, default in j.request.spec():
            if default is MISSING:
                assert getattr(req, name) is not None


def test_vocabulary_agrees_with_the_model():
    assert set(PRESETS) == set(MODEL_PRESETS)
    cfg = MODEL_PRESETS["tiny"]
    from engine.model.config import SpecAwareConfig
    for head in HEADS:
        build_model(SpecAwareConfig(**cfg), head, 3)
    for task in TASKS:
        build_model(SpecAwareConfig(**cfg), "light", 2, task)


def test_the_plugins_job_chains_validate_against_the_requests(files):
    """Every step the dock and Processing send is a valid request (field names, values) for the engine."""
    d = files["dir"]
    train = {"raster": files["raster"], "polygons": files["polygons"], "layer": None, "class_field": "class",
             "out": "m", "preset": "tiny", "head": "light", "epochs": 3, "backbone_mode": "frozen",
             "val_fraction": 0.3, "lr": 1e-3, "windows_per_epoch": 64, "seed": 0, "val_polygons": None,
             "samples": files["polygons"], "colors": {"water": "#0000ff"}, "profile": None}
    chains = [workflows.classify(files["raster"], str(d / "o"), clusters=4),
              workflows.finetune(train, d / "weights", adapt_minutes=0.5, list_models=True),
              workflows.suggest(files["raster"], "m", 20, str(d / "next.gpkg")),
              workflows.change(files["raster"], files["raster"], str(d / "c"), threshold=0.5, min_area=10),
              workflows.change(files["raster"], files["raster"], str(d / "c2"),
                               samples={"polygons": files["polygons"], "layer": None, "class_field": "class",
                                        "preset": "tiny", "epochs": 2})]
    done = [{"backbone": str(d / "weights" / "a.pth"), "bundle": str(d / "bundle")}]
    for steps in chains:
        for job, params in steps:
            parse(job, params(done) if callable(params) else params)
