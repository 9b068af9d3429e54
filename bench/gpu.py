"""GPU check: SpecAware-Base throughput (fp32 vs bf16), MAE training rate and memory, model FLOPs utilisation,
and whether Classify keeps up with reading the file. Finishes within about 8 minutes on one GPU.

    python3 build.py bench gpu [--quick]

Without a CUDA device it says so and exits cleanly. Figures go to bench_out/gpu.json with the device name.
`--cpu-dry-run` runs every part with the tiny preset on the CPU, to check the script itself before GPU time.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench_out"
TILE, BANDS = 224, 425
# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, matched on the device name.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0,
                    "H100 NVL": 835.0, "H100": 756.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                    "A10G": 70.0, "RTX 4090": 165.0, "V100": 125.0}


def peak_tflops(name: str) -> float | None:
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def spectral_inputs(batch: int, device):
    from engine.io.sensors import builtin_profiles
    prof = builtin_profiles()["aviris_ng"]
    wl = torch.tensor(prof.wavelength_nm, dtype=torch.float32, device=device).expand(batch, -1)
    fw = torch.tensor(prof.fwhm_nm, dtype=torch.float32, device=device).expand(batch, -1)
    return wl, fw, torch.full((batch,), 3.0, device=device)


DEV = torch.device("cuda")
PRESET = "base"


def sync() -> None:
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, seconds: float = 10.0, warmup: int = 3) -> tuple[float, int]:
    """(seconds per call, calls) for `fn` run for about `seconds` after warm-up, synchronised."""
    for _ in range(warmup):
        fn()
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    sync()
    return (time.perf_counter() - t0) / n, n


def encoder_throughput(batch: int, seconds: float) -> dict:
    from torch.utils.flop_counter import FlopCounterMode
    from engine.model import SpecAwareEncoder, preset
    dev = DEV
    model = SpecAwareEncoder(preset(PRESET)).to(dev).eval()
    x = torch.rand(batch, BANDS, TILE, TILE, device=dev) * 0.5
    wl, fw, gsd = spectral_inputs(batch, dev)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            model(x, wl, fw, gsd, "avng", "L2")
        flops = counter.get_total_flops()
    out = {"batch": batch, "flops_per_tile": flops / batch}
    for precision in ("fp32", "bf16"):
        def run():
            with torch.inference_mode(), torch.autocast(DEV.type, torch.bfloat16, enabled=precision == "bf16"):
                model(x, wl, fw, gsd, "avng", "L2")
        per_call, calls = timed(run, seconds)
        tiles = batch / per_call
        out[precision] = {"tiles_per_s": round(tiles, 2), "mpx_per_s": round(tiles * TILE * TILE / 1e6, 2),
                          "tflops_achieved": round(flops / per_call / 1e12, 2), "calls": calls}
    return out


def mae_step_rate(batch: int, seconds: float) -> dict:
    from engine.model import preset
    from engine.model.mae import SpecAwareMAE
    dev = DEV
    model = SpecAwareMAE(preset(PRESET)).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(batch, BANDS, TILE, TILE, device=dev) * 0.5
    wl, fw, gsd = spectral_inputs(batch, dev)
    if DEV.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        with torch.autocast(DEV.type, torch.bfloat16):
            loss = model(x, wl, fw, gsd, "avng", "L2")["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    per_call, calls = timed(step, seconds, warmup=2)
    return {"batch": batch, "samples_per_s": round(batch / per_call, 2), "steps": calls,
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if DEV.type == "cuda" else None}


def classify_model_throughput(batch: int, seconds: float) -> dict:
    """The classification model (encoder, light head, per-pixel head) in bf16: what Classify asks of the GPU."""
    from engine.model import preset
    from engine.model.segmenter import SpectralInput, build_segmenter
    from engine.io.sensors import builtin_profiles
    prof = builtin_profiles()["aviris_ng"]
    model = build_segmenter(preset(PRESET), "light", 6).to(DEV).eval()
    spec = SpectralInput(tuple(prof.wavelength_nm), tuple(prof.fwhm_nm), 3.0, "avng", "L2")
    x = torch.rand(batch, BANDS, TILE, TILE, device=DEV) * 0.5

    def run():
        with torch.inference_mode(), torch.autocast(DEV.type, torch.bfloat16):
            model(x, spec)
    per_call, calls = timed(run, seconds)
    return {"batch": batch, "tiles_per_s": round(batch / per_call, 2),
            "mpx_per_s": round(batch * TILE * TILE / per_call / 1e6, 2), "calls": calls}


def classify_vs_read(lines: int) -> dict:
    """Classify a synthetic AVIRIS-NG raster with a Base-sized bundle; compare with a raw read of its windows."""
    from streaming import OUT as SOUT
    from streaming import make_envi
    from engine.core.runtime import Runtime
    from engine.io.raster import RasterSource
    from engine.io.sensors import builtin_profiles
    from engine.io.tiling import TileGrid
    from engine.model.bundles import save_bundle
    from engine.model.config import preset
    from engine.model.segmenter import build_segmenter
    from engine.service.jobs import call
    SOUT.mkdir(parents=True, exist_ok=True)
    path = make_envi(SOUT / f"gpu_{lines}.img", lines)
    cfg = preset(PRESET)
    model = build_segmenter(cfg, "light", 6)
    prof = builtin_profiles()["aviris_ng"]
    meta = {"preset_config": cfg.to_dict(), "head": "light", "tile": TILE,
            "classes": {"names": [f"c{i}" for i in range(6)], "colors": ["#000000"] * 6},
            "profile": prof.to_dict(), "backbone": "random (throughput only)"}
    bundle = save_bundle(SOUT / "models" / "gpu-bench", model.state_dict(), meta, overwrite=True)
    src = RasterSource.open(str(path))
    grid = TileGrid(src.width, src.height, TILE, 32)
    bands = [b + 1 for b in src.bands]

    def raw_read():
        for y0 in grid.rows:
            for x0 in grid.columns:
                src.ds.ReadAsArray(*grid.window(x0, y0), band_list=bands)
    raw_read()  # page cache warm for both arms
    t0 = time.perf_counter()
    raw_read()
    raw = time.perf_counter() - t0
    runtime = Runtime(DEV.type)
    job = dict(raster=str(path), out=str(SOUT / "gpu_classified"), model=str(bundle))
    call("classify", runtime=runtime, **job)  # warm: cuDNN, cache
    t0 = time.perf_counter()
    call("classify", runtime=runtime, **job)
    pipe = time.perf_counter() - t0
    gb = path.stat().st_size / 1e9
    return {"raster_gb": round(gb, 2), "raw_read_s": round(raw, 2), "classify_s": round(pipe, 2),
            "keeps_up_ratio": round(raw / pipe, 3), "classify_mpx_per_s": round(src.width * src.height / pipe / 1e6, 3)}


def main() -> int:
    global DEV, PRESET
    dry = "--cpu-dry-run" in sys.argv
    if dry:
        DEV, PRESET = torch.device("cpu"), "tiny"
    elif not torch.cuda.is_available():
        print("no CUDA device: `bench gpu` measures CUDA throughput, so there is nothing to measure on this machine")
        return 0
    quick = "--quick" in sys.argv or dry
    name = torch.cuda.get_device_name(0) if not dry else "CPU dry run (tiny preset; figures mean nothing)"
    print(f"device: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    res = {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda}
    res["encoder"] = enc = encoder_throughput(2 if dry else 16, 2 if dry else 5 if quick else 20)
    print(f"{PRESET} encoder, {TILE} px × {BANDS} bands, batch {enc['batch']}: fp32 {enc['fp32']['tiles_per_s']} tiles/s "
          f"({enc['fp32']['mpx_per_s']} Mpx/s), bf16 {enc['bf16']['tiles_per_s']} tiles/s "
          f"({enc['bf16']['mpx_per_s']} Mpx/s): bf16/fp32 {enc['bf16']['tiles_per_s'] / enc['fp32']['tiles_per_s']:.2f}×",
          flush=True)
    peak = peak_tflops(name)
    res["mfu_bf16"] = round(enc["bf16"]["tflops_achieved"] / peak, 4) if peak else None
    print(f"model FLOPs {enc['flops_per_tile'] / 1e9:.1f} GFLOP/tile; achieved {enc['bf16']['tflops_achieved']} "
          f"TFLOP/s in bf16" + (f" = {100 * res['mfu_bf16']:.1f} % of the {peak:.0f} TFLOP/s bf16 peak"
                                 if peak else " (no bf16 peak known for this card)"), flush=True)
    torch.cuda.empty_cache()
    res["mae"] = mae = mae_step_rate(2 if dry else 8, 2 if dry else 5 if quick else 20)
    print(f"MAE training, {PRESET}, batch {mae['batch']}, bf16: {mae['samples_per_s']} samples/s, peak GPU memory "
          f"{mae['peak_memory_gib']} GiB", flush=True)
    torch.cuda.empty_cache()
    res["classify_model"] = cm = classify_model_throughput(2 if dry else 16, 2 if dry else 5 if quick else 20)
    print(f"classification model ({PRESET}, light head, per-pixel head), bf16: {cm['tiles_per_s']} tiles/s, "
          f"{cm['mpx_per_s']} Mpx/s", flush=True)
    if importlib.util.find_spec("osgeo") is None:  # Classify end to end streams through GDAL
        print("GDAL's Python bindings are not installed here: Classify end to end against a raw read was skipped")
    else:
        res["classify"] = cl = classify_vs_read(300 if dry else 1000 if quick else 4000)
        print(f"Classify {cl['raster_gb']} GB: raw read {cl['raw_read_s']} s, classify {cl['classify_s']} s: "
              f"read/classify {cl['keeps_up_ratio']} (target ≥ 0.9), {cl['classify_mpx_per_s']} Mpx/s", flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / ("gpu_dry_run.json" if dry else "gpu.json")).write_text(json.dumps(res, indent=1))
    if "--keep" not in sys.argv:
        shutil.rmtree(OUT / "streaming", ignore_errors=True)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
