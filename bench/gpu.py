"""Issue 17's figures, each printed as a ratio against its target, in one run:

CPU (every run; Base, one 224 px tile of 425 bands, arms interleaved, medians):
  per-pixel branch (projection + per-pixel head) / encoder time        target ≤ 0.15
  encoder / classification model time (the model's share of encoder speed)   target ≥ 0.85
GPU (CUDA only; random Base weights, bf16):
  encoder MFU (achieved / the card's dense bf16 peak), best of batches 16, 32, 64   target ≥ 0.40
  classification model / encoder throughput                              target ≥ 0.85
  per-pixel branch / encoder time                                        target ≤ 0.15
  keep-up: a plain memory-mapped read of the tile windows of a synthetic AVIRIS-NG-like ENVI file (the device's
  own disk, page cache warm) / the classify pipeline on the same file                        target ≥ 0.9
plus the MAE training rate and its memory. The GPU part reads no file through GDAL (GPU machines may lack it):
the pipeline reads the ENVI file with the engine's own line reader and hands the classes and confidence to a
consumer that keeps them in memory (GeoTIFF writing is left out there).

    python3 build.py bench gpu [--quick] [--compile] [--keep]
    python3 build.py bench gpu --cpu-dry-run     (tiny preset, small sizes: checks the script, figures mean nothing)

Without CUDA it prints the CPU part, says the GPU part needs CUDA, and exits 0. `--compile` adds a
torch.compile arm for the encoder (minutes of compilation). Figures go to bench_out/gpu.json with the device.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from streaming import TILE, WIDTH, loadavg, make_envi  # noqa: E402

from engine.core.runtime import Runtime  # noqa: E402
from engine.io.stream import stream_predictions  # noqa: E402
from engine.io.strips import LineReader  # noqa: E402
from engine.io.tiling import TileGrid  # noqa: E402
from engine.model import SpecAwareEncoder, preset  # noqa: E402
from engine.model.mae import SpecAwareMAE  # noqa: E402
from engine.model.segmenter import SpectralInput, build_segmenter, spectral_projection  # noqa: E402

OUT = ROOT / "bench_out"
BANDS = 425
WAVELENGTH = np.linspace(377.0, 2500.0, BANDS)  # AVIRIS-NG's range and spacing; the values do not change costs
FWHM = np.full(BANDS, 5.8)
# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, matched on the device name.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0,
                    "H100 NVL": 835.0, "H100": 756.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                    "A10G": 70.0, "RTX 4090": 165.0, "V100": 125.0}
TARGETS = {"cpu_pixel_branch_over_encoder": ("≤", 0.15), "cpu_encoder_over_model": ("≥", 0.85),
           "mfu_bf16": ("≥", 0.40), "model_over_encoder_throughput": ("≥", 0.85),
           "pixel_branch_over_encoder": ("≤", 0.15), "keep_up": ("≥", 0.9)}


def peak_tflops(name: str) -> float | None:
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def spec() -> SpectralInput:
    return SpectralInput(tuple(map(float, WAVELENGTH)), tuple(map(float, FWHM)), 5.0, "avng", "L2")


def sync(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, dev, seconds: float, warmup: int = 3) -> float:
    """Seconds per call of `fn`, run for about `seconds` after warm-up, synchronised."""
    for _ in range(warmup):
        fn()
    sync(dev)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n == 0:
        fn()
        n += 1
    sync(dev)
    return (time.perf_counter() - t0) / n


def interleaved(arms: dict, dev, repeats: int) -> dict:
    """Median seconds per arm, the arms run in turn `repeats` times (a shared machine's load hits all alike)."""
    for fn in arms.values():
        fn()
    times = {k: [] for k in arms}
    for _ in range(repeats):
        for k, fn in arms.items():
            sync(dev)
            t0 = time.perf_counter()
            fn()
            sync(dev)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def model_parts(name: str, batch: int, tile: int, dev):
    """A classification model (encoder, light head, per-pixel head, 6 classes) and the three ways to run it."""
    model = build_segmenter(preset(name), "light", 6).to(dev).eval()
    x = torch.rand(batch, BANDS, tile, tile, device=dev) * 0.5
    s = spec()
    wl, fw, gsd = s.tensors(batch, dev)
    enhanced = model.encoder(x, wl, fw, gsd, s.sensor, s.level, return_all=True)["enhanced_meta_embedding"]
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=dev.type == "cuda")

    def run(fn):
        def go():
            with torch.inference_mode(), autocast:
                fn()
        return go
    return {"encoder": run(lambda: model.encoder(x, wl, fw, gsd, s.sensor, s.level, return_all=True)),
            "pixel branch": run(lambda: model.pixel_head(spectral_projection(x, enhanced))),
            "model": run(lambda: model(x, s))}


def cpu_part(name: str, tile: int, repeats: int) -> dict:
    dev = torch.device("cpu")
    t = interleaved(model_parts(name, 1, tile, dev), dev, repeats)
    return {"preset": name, "threads": torch.get_num_threads(), "seconds": {k: round(v, 4) for k, v in t.items()},
            "cpu_pixel_branch_over_encoder": round(t["pixel branch"] / t["encoder"], 3),
            "cpu_encoder_over_model": round(t["encoder"] / t["model"], 3)}


def encoder_mfu(name: str, batches: list[int], tile: int, seconds: float, dev, peak: float | None,
                compile_: bool) -> dict:
    from torch.utils.flop_counter import FlopCounterMode
    model = SpecAwareEncoder(preset(name)).to(dev).eval()
    s = spec()
    out = {"per_batch": {}}
    for batch in batches:
        x = torch.rand(batch, BANDS, tile, tile, device=dev) * 0.5
        wl, fw, gsd = s.tensors(batch, dev)
        if "flops_per_tile" not in out:
            with torch.inference_mode(), FlopCounterMode(display=False) as counter:
                model(x, wl, fw, gsd, s.sensor, s.level)
            out["flops_per_tile"] = counter.get_total_flops() / batch
        arms = {"bf16": model}
        if compile_:
            arms["bf16 compiled"] = torch.compile(model)
        for arm, m in arms.items():
            def run(m=m):
                with torch.inference_mode(), torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
                    m(x, wl, fw, gsd, s.sensor, s.level)
            per_call = timed(run, dev, seconds)
            tflops = out["flops_per_tile"] * batch / per_call / 1e12
            out["per_batch"][f"{arm}, batch {batch}"] = {"tiles_per_s": round(batch / per_call, 1),
                                                         "tflops": round(tflops, 1),
                                                         "mfu": round(tflops / peak, 4) if peak else None}
        del x
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    best = max(out["per_batch"].items(), key=lambda kv: kv[1]["tiles_per_s"])
    out["best"] = best[0]
    out["mfu_bf16"] = best[1]["mfu"]
    return out


def model_vs_encoder(name: str, batch: int, tile: int, repeats: int, dev) -> dict:
    t = interleaved(model_parts(name, batch, tile, dev), dev, repeats)
    return {"batch": batch, "tiles_per_s": {k: round(batch / v, 1) for k, v in t.items()},
            "model_over_encoder_throughput": round(t["encoder"] / t["model"], 3),
            "pixel_branch_over_encoder": round(t["pixel branch"] / t["encoder"], 3)}


def mae_rate(name: str, batch: int, tile: int, seconds: float, dev) -> dict:
    model = SpecAwareMAE(preset(name)).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(batch, BANDS, tile, tile, device=dev) * 0.5
    s = spec()
    wl, fw, _ = s.tensors(batch, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        with torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
            loss = model(x, wl, fw, torch.full((batch,), 5.0, device=dev), s.sensor, s.level)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    per_call = timed(step, dev, seconds, warmup=2)
    return {"batch": batch, "samples_per_s": round(batch / per_call, 2),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if dev.type == "cuda" else None}


class EnviStrips:
    """The synthetic BIL file as the streaming driver's source, through the engine's line reader (no GDAL)."""

    def __init__(self, path: Path, lines: int):
        self.reader = LineReader(path, WIDTH, lines, BANDS, "<i2", "bil")
        self.width, self.height, self.bands = WIDTH, lines, list(range(BANDS))

    def read_strip(self, x, y, w, h, reuse=None, pool=None):
        assert x == 0 and w == self.width, "the driver reads whole lines of a raster this narrow"
        return self.reader.strip(y, h, self.bands, {-9999.0}, 1e-4, reuse, pool)


def keep_up(name: str, lines: int, batch: int, tile: int, dev) -> dict:
    """Plain memory-mapped reads of the tile windows against the classify pipeline on the same file."""
    (OUT / "streaming").mkdir(parents=True, exist_ok=True)
    path = make_envi(OUT / "streaming" / f"gpu_{lines}.img", lines, WAVELENGTH, FWHM)
    grid = TileGrid(WIDTH, lines, tile, tile // 7)  # 32 px overlap for 224 px tiles, as in bench streaming
    cube = np.memmap(path, "<i2", "r", shape=(lines, BANDS, WIDTH))

    def raw_read():
        for y0 in grid.rows:
            for x0 in grid.columns:
                x, y, w, h = grid.window(x0, y0)
                np.array(cube[y:y + h, :, x:x + w])
    model = build_segmenter(preset(name), "light", 6).to(dev).eval()
    s = spec()
    model_fn = Runtime(dev.type).model_fn(lambda x: model(x, s).softmax(1))
    counts = np.zeros(7, np.int64)

    def on_rows(y, scores, valid):  # what classify computes for its two GeoTIFFs
        cls = (scores.argmax(axis=0) + 1).astype(np.uint16)
        cls[~valid] = 0
        conf = scores.max(axis=0).astype(np.float32)
        conf[~valid] = np.nan
        counts[:] += np.bincount(cls.ravel(), minlength=7)

    strips = EnviStrips(path, lines)

    def classify():
        counts[:] = 0
        stream_predictions(strips, model_fn, 6, on_rows, tile, tile // 7, batch_size=batch)
    raw_read()  # the page cache warm for both arms
    t = interleaved({"raw": raw_read, "classify": classify}, dev, 2)
    gb = path.stat().st_size / 1e9
    del cube
    strips.reader.close()
    if "--keep" not in sys.argv:  # only the files made here: bench streaming's rasters may lie beside them
        path.unlink()
        path.with_suffix(".hdr").unlink()
    return {"raster_gb": round(gb, 2), "tiles": len(grid), "batch": batch, "raw_read_s": round(t["raw"], 3),
            "classify_s": round(t["classify"], 3), "keep_up": round(t["raw"] / t["classify"], 3),
            "classify_gb_per_s": round(gb / t["classify"], 3), "pixels_classified": int(counts.sum())}


def verdict(key: str, value) -> str:
    op, target = TARGETS[key]
    if value is None:
        return f"(target {op} {target})"
    met = value <= target if op == "≤" else value >= target
    return f"(target {op} {target}: {'met' if met else 'NOT met'})"


def main() -> int:
    dry = "--cpu-dry-run" in sys.argv
    quick = "--quick" in sys.argv or dry
    name, tile = ("tiny", 64) if dry else ("base", TILE)
    load = loadavg()
    res = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "cuda": torch.version.cuda,
           "preset": name, "load_before": load}
    print(f"{name} preset, {tile} px tiles × {BANDS} bands, torch {torch.__version__}; load average {load}",
          flush=True)
    res["cpu"] = cpu = cpu_part(name, tile, 3 if quick else 5)
    print(f"CPU ({cpu['threads']} threads), one tile: encoder {cpu['seconds']['encoder']:.3f} s, per-pixel branch "
          f"{cpu['seconds']['pixel branch']:.3f} s, classification model {cpu['seconds']['model']:.3f} s\n"
          f"  per-pixel branch / encoder {cpu['cpu_pixel_branch_over_encoder']} "
          f"{verdict('cpu_pixel_branch_over_encoder', cpu['cpu_pixel_branch_over_encoder'])}\n"
          f"  encoder / classification model {cpu['cpu_encoder_over_model']} "
          f"{verdict('cpu_encoder_over_model', cpu['cpu_encoder_over_model'])}", flush=True)
    if dry:
        dev, device_name = torch.device("cpu"), "CPU dry run (tiny preset; figures mean nothing)"
    elif torch.cuda.is_available():
        dev, device_name = torch.device("cuda"), torch.cuda.get_device_name(0)
    else:
        print("no CUDA device: the GPU figures (MFU, model / encoder, per-pixel branch, keep-up) need one; "
              "run `python3 build.py bench gpu` on a CUDA machine")
        save(res, "gpu_cpu_only.json")
        return 0
    res["device"] = device_name
    peak = peak_tflops(device_name)
    print(f"device: {device_name}", flush=True)
    seconds = 1 if dry else 4 if quick else 8
    batches = [2] if dry else [16, 32, 64]
    res["encoder"] = enc = encoder_mfu(name, batches, tile, seconds, dev, peak, "--compile" in sys.argv)
    for arm, f in enc["per_batch"].items():
        print(f"  encoder {arm}: {f['tiles_per_s']} tiles/s, {f['tflops']} TFLOP/s"
              + (f", MFU {f['mfu']:.3f}" if f["mfu"] is not None else ""), flush=True)
    print(f"encoder MFU (bf16, {enc['best']}, {enc['flops_per_tile'] / 1e9:.0f} GFLOP/tile): {enc['mfu_bf16']} "
          f"{verdict('mfu_bf16', enc['mfu_bf16'])}" + ("" if peak else " — no bf16 peak known for this device"),
          flush=True)
    res["model"] = mv = model_vs_encoder(name, 2 if dry else 16, tile, 3 if quick else 6, dev)
    print(f"tiles/s at batch {mv['batch']}: {mv['tiles_per_s']}\n"
          f"  classification model / encoder throughput {mv['model_over_encoder_throughput']} "
          f"{verdict('model_over_encoder_throughput', mv['model_over_encoder_throughput'])}\n"
          f"  per-pixel branch / encoder {mv['pixel_branch_over_encoder']} "
          f"{verdict('pixel_branch_over_encoder', mv['pixel_branch_over_encoder'])}", flush=True)
    res["mae"] = mae = mae_rate(name, 2 if dry else 8, tile, seconds, dev)
    print(f"MAE training, batch {mae['batch']}: {mae['samples_per_s']} samples/s, peak memory "
          f"{mae['peak_memory_gib']} GiB", flush=True)
    res["keep_up"] = ku = keep_up(name, 64 if dry else 1000 if quick else 4000, 2 if dry else 16, tile, dev)
    print(f"keep-up on {ku['raster_gb']} GB ({ku['tiles']} tiles): memory-mapped read {ku['raw_read_s']} s, "
          f"classify {ku['classify_s']} s ({ku['classify_gb_per_s']} GB/s): read / classify {ku['keep_up']} "
          f"{verdict('keep_up', ku['keep_up'])}", flush=True)
    save(res, "gpu_dry_run.json" if dry else "gpu.json")
    return 0


def save(res: dict, name: str) -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / name).write_text(json.dumps(res, indent=1))
    print(f"wrote {OUT / name}")


if __name__ == "__main__":
    sys.exit(main())
