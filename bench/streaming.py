"""Streaming driver: bounded memory and overhead over a raw GDAL read.

Makes synthetic ENVI rasters (425-band int16 AVIRIS-NG-like BIL, ~1 GB and four times that) under
`bench_out/streaming/`, then runs three arms, each in a fresh process, interleaved and repeated (median):
- `raw`: GDAL reads of the same tile windows and bands as the pipeline reads (the issue's yardstick);
- `lines`: a plain read of the same rows' bytes, one read per row of tiles (no GDAL, no conversion): the speed
  of the disk, here of the page cache, to show what the pipeline costs beyond reading;
- `pipeline`: the whole classify pipeline (read → tile → batch → blend → write GeoTIFFs) with a model that costs
  nothing: its scores are the batch's first four bands (a view), so the outputs vary like real ones and their
  compression costs what it would.
Prints pipeline / raw (targets ≤ 1.1 at 4×, ≤ 1.25 at 1×), pipeline / lines, peak RSS of both sizes and their
ratio (target ≤ 1.1 and ≤ 2 GB), and the load average, as the machine may be shared.

    python3 build.py bench streaming [--keep] [--repeats N]
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _common import peak_rss_mib  # noqa: E402
OUT = ROOT / "bench_out" / "streaming"
BANDS, WIDTH, TILE, OVERLAP = 425, 600, 224, 32
SIZES = {"1x": 2000, "4x": 8000}  # lines
ARMS = ("raw", "lines", "pipeline")


def make_envi(path: Path, lines: int, wavelength=None, fwhm=None) -> Path:
    """A BIL int16 ENVI file, written in chunks (never whole in memory); AVIRIS-NG's wavelengths and FWHM unless
    given (reading the built-in profiles needs GDAL, which a GPU machine may lack)."""
    if path.exists() and path.stat().st_size == lines * WIDTH * BANDS * 2:
        return path
    if wavelength is None:
        from engine.io.sensors import builtin_profiles
        prof = builtin_profiles()["aviris_ng"]
        wavelength, fwhm = prof.wavelength_nm, prof.fwhm_nm
    rng = np.random.default_rng(0)
    base = (rng.random((BANDS, WIDTH)) * 4000 + 500).astype(np.int16)
    with open(path, "wb") as f:
        for y in range(0, lines, 100):
            n = min(100, lines - y)
            block = np.broadcast_to(base[None], (n, BANDS, WIDTH)) + rng.integers(0, 50, (n, 1, WIDTH), np.int16)
            f.write(np.ascontiguousarray(block, dtype="<i2").tobytes())
    hdr = (f"ENVI\nsamples = {WIDTH}\nlines = {lines}\nbands = {BANDS}\nheader offset = 0\nfile type = ENVI Standard\n"
           f"data type = 2\ninterleave = bil\nbyte order = 0\nwavelength units = Nanometers\n"
           f"map info = {{UTM, 1, 1, 500000, 4100000, 5, 5, 11, North, WGS-84, units=Meters}}\n"
           f"reflectance scale factor = 10000\n"
           f"wavelength = {{{', '.join(f'{w:.2f}' for w in wavelength)}}}\n"
           f"fwhm = {{{', '.join(f'{w:.2f}' for w in fwhm)}}}\n")
    path.with_suffix(".hdr").write_text(hdr)
    return path


def child(mode: str, path: str) -> None:
    from engine.io.raster import RasterSource
    from engine.io.tiling import TileGrid
    from engine.io.writers import OutputSet
    from engine.tasks.classify import classify_to_geotiffs
    src = RasterSource.open(path)
    grid = TileGrid(src.width, src.height, TILE, OVERLAP)
    bands = [b + 1 for b in src.bands]
    t0 = time.perf_counter()
    if mode == "raw":
        for y0 in grid.rows:
            for x0 in grid.columns:
                x, y, w, h = grid.window(x0, y0)
                src.ds.ReadAsArray(x, y, w, h, band_list=bands)
    elif mode == "lines":  # the same rows' bytes, one plain read each: the speed of the disk (or page cache)
        line_bytes = src.width * BANDS * 2
        buf = bytearray(TILE * line_bytes)
        with open(path, "rb") as f:
            for y0 in grid.rows:
                _, y, _, h = grid.window(0, y0)
                f.seek(y * line_bytes)
                f.readinto(memoryview(buf)[:h * line_bytes])
    else:
        out = Path(path).with_name(Path(path).stem + "_out")
        with OutputSet(out, ["classes.tif", "confidence.tif"]) as outputs:
            classify_to_geotiffs(src, lambda b: b[:, :4], ["a", "b", "c", "d"], [(0, 0, 0)] * 4, outputs,
                                 tile=TILE, overlap=OVERLAP, batch_size=4)
            outputs.commit()
    print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mib": peak_rss_mib()}))


def run_child(mode: str, path: Path) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", mode, str(path)], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(res.stdout.strip().splitlines()[-1])


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if os.path.exists("/proc/loadavg") else "?"


def main() -> int:
    repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 3
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {loadavg()}", flush=True)
    results = {}
    for name, lines in SIZES.items():
        path = make_envi(OUT / f"synthetic_{name}.img", lines)
        gb = path.stat().st_size / 1e9
        run_child("raw", path)  # warm the page cache so every arm reads from memory alike
        runs = {arm: [] for arm in ARMS}
        for _ in range(repeats):
            for arm in ARMS:
                runs[arm].append(run_child(arm, path))
        med = {arm: float(np.median([r["seconds"] for r in runs[arm]])) for arm in ARMS}
        rss = max(r["peak_rss_mib"] for r in runs["pipeline"])
        times = [r["seconds"] for r in runs["pipeline"]]
        results[name] = (med, rss)
        print(f"{name}: {WIDTH}×{lines}×{BANDS} int16 ({gb:.2f} GB), median of {repeats}: "
              f"raw read {med['raw']:.2f} s, plain read {med['lines']:.2f} s, pipeline {med['pipeline']:.2f} s "
              f"(pipeline runs: {', '.join(f'{t:.2f}' for t in times)}); "
              f"pipeline / raw {med['pipeline'] / med['raw']:.2f}, pipeline / plain read "
              f"{med['pipeline'] / med['lines']:.2f}; peak RSS {rss:.0f} MiB (raw read alone "
              f"{max(r['peak_rss_mib'] for r in runs['raw']):.0f} MiB); load {loadavg()}", flush=True)
    (m1, r1), (m4, r4) = results["1x"], results["4x"]
    print(f"peak RSS 4x/1x: {r4 / r1:.2f} (target ≤ 1.1; largest {max(r1, r4):.0f} MiB, target ≤ 2048)")
    print(f"pipeline / raw read: {m4['pipeline'] / m4['raw']:.2f} at 4x (target ≤ 1.1), "
          f"{m1['pipeline'] / m1['raw']:.2f} at 1x (target ≤ 1.25)")
    print(f"pipeline / plain read: {m4['pipeline'] / m4['lines']:.2f} at 4x, "
          f"{m1['pipeline'] / m1['lines']:.2f} at 1x; load average after: {loadavg()}")
    if "--keep" not in sys.argv:
        shutil.rmtree(OUT)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main())
