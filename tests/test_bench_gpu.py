"""`bench gpu --cpu-dry-run`: every part of the GPU benchmark runs on the CPU with the tiny preset (the script is
checked here before device time is spent on it), prints each figure as a ratio and writes its JSON."""
import json
import os
import subprocess
import sys

from conftest import ROOT


def test_gpu_bench_dry_run_prints_every_ratio_and_classifies_every_pixel():
    out = ROOT / "bench_out" / "gpu_dry_run.json"
    out.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--cpu-dry-run"], capture_output=True,
                         text=True, cwd=ROOT, env=env, timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    text = res.stdout
    for line in ("per-pixel branch / encoder", "encoder / classification model", "encoder MFU",
                 "classification model / encoder throughput", "read / classify"):
        assert line in text and "target" in text.split(line, 1)[1].splitlines()[0], f"no ratio with target: {line}"
    figures = json.loads(out.read_text())
    assert figures["device"].startswith("CPU dry run")
    for key in ("cpu_pixel_branch_over_encoder", "cpu_encoder_over_model"):
        assert figures["cpu"][key] > 0
    assert figures["model"]["model_over_encoder_throughput"] > 0 and figures["model"]["pixel_branch_over_encoder"] > 0
    ku = figures["keep_up"]
    assert ku["pixels_classified"] == 600 * 64, "the pipeline handed on every pixel of the 600 × 64 px file"
    assert ku["raw_read_s"] > 0 and ku["keep_up"] > 0
    assert not (ROOT / "bench_out" / "streaming" / "gpu_64.img").exists(), "the synthetic raster is removed"
