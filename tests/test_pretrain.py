"""Pre-training: patches and their rules, the multi-view schedule, torchrun DDP on two CPU ranks (gloo) with real
scenes, resume with another world size, the exported backbone, scene adaptation, and batch classification."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import DATA, ROOT, need_shared
from scenes import NORTH_UP, labelled_raster, stripe_polygons, write_polygons
from test_engine_io import WL20, make_tif, spectra

from engine.model.weights import load_checkpoint
from engine.learn.patches import (GroupedBatchSampler, PatchSet, find_records, manifest_records, raster_records,
                                  write_patches)
from engine.learn.pretrain import PretrainConfig, make_view, pretrain, view_for
from engine.service.jobs import call


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECAWARE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("SPECAWARE_CHECKPOINT", raising=False)


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory):
    """Jasper Ridge, Moffett Field and SAMSON as GeoTIFFs with their band tables."""
    need_shared(DATA / "jasper_ridge")
    from real_scenes import jasper, moffett, samson, write_geotiff
    folder = tmp_path_factory.mktemp("real")
    for scene in (jasper(), moffett(), samson()):
        write_geotiff(folder / f"{scene.name}.tif", scene)
    return folder


def torchrun(*args, nproc=2, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
                        "--master-port", str(29500 + os.getpid() % 1000), "-m", "engine", *map(str, args)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_invalid_patches_are_skipped_and_water_vapour_bands_zeroed(tmp_path):
    from engine.io.sensors import builtin_profiles
    prof = builtin_profiles()["aviris_ng"]
    cube = np.full((prof.n_bands, 64, 64), 0.3, np.float32)
    cube[:, :32, :32][:, :, :20] = np.nan  # 62 % of the top-left patch: skipped
    cube[:, 32:, 32:][:, :3, :] = -0.1  # 9 % of the bottom-right patch: kept, values set to 0
    path = make_tif(tmp_path / "ang20200101t000000_rfl.tif", cube, gt=NORTH_UP, wavelengths=prof.wavelength_nm)
    records = raster_records([path], patch=32)
    assert sorted(r.window[:2] for r in records) == [(0, 32), (32, 0), (32, 32)]
    patch = PatchSet(records)[[r.window[:2] for r in records].index((32, 32))]
    assert (patch[:, :3, :] == 0).all() and np.isfinite(patch).all()
    wl = np.asarray(prof.wavelength_nm)
    vapour = (wl > 1350) & (wl < 1400)
    assert vapour.any() and (patch[vapour] == 0).all()
    assert np.allclose(patch[(wl > 500) & (wl < 900)][:, 3:, :], 0.3)


def test_hyper400k_patches_round_trip(tmp_path):
    path = make_tif(tmp_path / "scene.tif", spectra(20, 64, 64), gt=NORTH_UP, wavelengths=WL20)
    manifest = write_patches([path], tmp_path / "h400k", patch=32)
    rows = list(csv.DictReader(open(manifest)))
    assert len(rows) == 4 and list(rows[0]) == ["id", "filename", "GSD", "wavelength", "fwhm", "sensor", "level"]
    with np.load(tmp_path / "h400k" / rows[0]["filename"]) as z:
        assert z["data"].dtype == np.float16 and z["data"].shape == (20, 32, 32)
    records = manifest_records(tmp_path / "h400k")
    assert records[0].wavelength == pytest.approx(tuple(WL20), abs=1e-3) and records[0].gsd == 2.0
    assert find_records(tmp_path / "h400k")[0].source.endswith(".npz")
    s = pretrain([str(tmp_path / "h400k")], str(tmp_path / "run"),
                 PretrainConfig(steps=3, batch_size=2, patch=32, checkpoint_every=0, warmup_steps=1))
    assert s["steps"] == 3 and (tmp_path / "run" / "backbone.pth").is_file()


def test_batches_hold_one_group_and_ranks_get_equal_disjoint_shares():
    groups = {("avng", "L2", (1.0,)): list(range(0, 10)), ("avc", "L1", (2.0,)): list(range(10, 17)),
              ("others", "L2", (3.0,)): [17]}
    by_index = {i: g for g, ix in groups.items() for i in ix}
    samplers = [GroupedBatchSampler(groups, 3, rank, 2, seed=5) for rank in (0, 1)]
    for s in samplers:
        s.set_epoch(4)
    shares = [list(s) for s in samplers]
    assert len(shares[0]) == len(shares[1]) == len(samplers[0])
    for batch in shares[0] + shares[1]:
        assert len(batch) == 3 and len({by_index[i] for i in batch}) == 1
    again = GroupedBatchSampler(groups, 3, 0, 2, seed=5)
    again.set_epoch(4)
    assert list(again) == shares[0], "the same (seed, epoch) gives the same batches on every process"
    again.set_epoch(5)
    assert list(again) != shares[0]


def test_progressive_views_grow_and_subset_bands_consistently():
    k = 8
    early, late = view_for(0.1, 64, 200, k, "progressive"), view_for(0.9, 64, 200, k, "progressive")
    assert early == (32, 100) and late == (64, 200) and view_for(0.1, 64, 200, k, "full") == (64, 200)
    rng = np.random.default_rng(0)
    x = torch.arange(2 * 10 * 8 * 8, dtype=torch.float32).reshape(2, 10, 8, 8)
    wl = torch.arange(10, dtype=torch.float32) * 100
    for _ in range(20):
        v, vwl, vfw = make_view(x, wl, wl.clone(), 4, 5, rng)
        assert v.shape == (2, 5, 4, 4)
        bands = (vwl / 100).long()
        assert torch.equal((v[0, :, 0, 0] // 64 % 10).long(), bands), "pixels and wavelengths keep together"
        idx = bands.tolist()
        assert idx == sorted(idx) and (np.diff(idx).min() >= 1) and len(set(np.diff(idx))) == 1
        assert torch.equal(vfw, vwl)


def test_two_rank_ddp_on_real_scenes_then_resume_on_one(real_folder, tmp_path):
    run = tmp_path / "run"
    common = ["--data", real_folder, "--out", run, "--batch-size", "4", "--patch", "32", "--checkpoint-every", "6",
              "--warmup-steps", "3", "--lr", "1e-3", "--device", "cpu", "--json"]
    out = torchrun("pretrain", "--steps", "12", *common)
    first = json.loads(out.stdout[out.stdout.index("{"):])
    assert first["world_size"] == 2 and first["steps"] == 12
    assert len(set(first["rank_checksums"])) == 1, "both ranks hold identical weights"
    rows = list(csv.DictReader(open(run / "loss.csv")))
    losses = [float(r["loss"]) for r in rows]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), f"the loss must fall: {losses}"
    assert [int(r["view_px"]) for r in rows][0] < [int(r["view_px"]) for r in rows][-1]  # progressive views
    assert (run / "loss.png").stat().st_size > 1000

    r = subprocess.run([sys.executable, "-m", "engine", "pretrain", "--steps", "15", "--resume", *map(str, common)],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = json.loads(r.stdout[r.stdout.index("{"):])
    assert resumed["world_size"] == 1 and resumed["steps"] == 15 and resumed["init"].endswith("step-00000012.pt")
    steps = [int(r["step"]) for r in csv.DictReader(open(run / "loss.csv"))]
    assert steps == list(range(1, 16)), "the resumed run continues the step count"
    assert len(list((run / "checkpoints").glob("step-*.pt"))) <= 3

    ckpt = load_checkpoint(run / "backbone.pth")  # the official-checkpoint loader
    assert ckpt.has_decoder and ckpt.config.embed_dim == 192
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["steps"] == 15 and manifest["data"]["sources"] == 3


def test_adapt_then_finetune_from_the_adapted_backbone(tmp_path):
    raster, _ = labelled_raster(tmp_path / "scene.tif")
    polygons = write_polygons(tmp_path / "train.gpkg", stripe_polygons())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "engine", "adapt", "--raster", str(raster), "--minutes", "0.1",
                        "--patch", "32", "--out", str(tmp_path / "adapted.pth"), "--device", "cpu", "--json"],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    adapted = json.loads(r.stdout[r.stdout.index("{"):])
    assert adapted["steps"] > 0 and Path(adapted["manifest"]).is_file()
    out = call("finetune", raster=str(raster), polygons=str(polygons), class_field="class", out="adapted-model",
               backbone=str(tmp_path / "adapted.pth"), epochs=2, window=32, batch_size=4, windows_per_epoch=16,
               frozen_pool=8)
    assert "adapted.pth" in out["backbone"] and "pretrained checkpoint" in out["backbone"]


def test_classify_batch_on_two_ranks_then_restart_skips(tmp_path):
    raster, _ = labelled_raster(tmp_path / "scene.tif")
    polygons = write_polygons(tmp_path / "train.gpkg", stripe_polygons())
    call("finetune", raster=str(raster), polygons=str(polygons), class_field="class", out=str(tmp_path / "bundle"),
         epochs=2, window=32, batch_size=4, windows_per_epoch=16, frozen_pool=8)
    names = []
    for i in range(4):
        p = make_tif(tmp_path / f"line{i}.tif", spectra(20, 24 + 8 * i, 32, seed=i), gt=NORTH_UP, wavelengths=WL20)
        names.append(p.name)
    (tmp_path / "list.txt").write_text("\n".join(names) + "\n")
    torchrun("classify-batch", "--rasters", tmp_path / "list.txt", "--model", tmp_path / "bundle", "--out",
             tmp_path / "maps", "--device", "cpu")
    summary = json.loads((tmp_path / "maps" / "summary.json").read_text())
    assert summary["classified"] == 4 and {i["rank"] for i in summary["items"]} == {0, 1}
    for i in range(4):
        assert (tmp_path / "maps" / f"line{i}" / "classes.tif").is_file()
    (tmp_path / "maps" / "line2" / "report.json").unlink()  # as if stopped while writing line2
    torchrun("classify-batch", "--rasters", tmp_path / "list.txt", "--model", tmp_path / "bundle", "--out",
             tmp_path / "maps", "--device", "cpu")
    summary = json.loads((tmp_path / "maps" / "summary.json").read_text())
    assert summary["classified"] == 1 and summary["skipped"] == 3
