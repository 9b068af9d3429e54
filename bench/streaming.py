"""Streaming driver: bounded memory and overhead over a raw GDAL read, with a zero-cost model.

Makes synthetic ENVI rasters (425-band int16 AVIRIS-NG-like, ~1 GB and four times that) under
`bench_out/streaming/`, then, each in a fresh process: a raw GDAL read of the same tile windows, and the whole
classify pipeline (read → tile → batch → blend → write GeoTIFFs). Prints peak RSS of both sizes and their ratio
(target ≤ 1.1 and ≤ 2 GB) and pipeline time over raw-read time (target ≤ 1.25).

    python3 build.py bench streaming [--keep]
"""
from __future__ import annotations

import json
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


def make_envi(path: Path, lines: int) -> Path:
    """A BIL int16 ENVI file with AVIRIS-NG wavelengths, written in chunks (never whole in memory)."""
    if path.exists() and path.stat().st_size == lines * WIDTH * BANDS * 2:
        return path
    from engine.io.sensors import builtin_profiles
    prof = builtin_profiles()["aviris_ng"]
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
           f"wavelength = {{{', '.join(f'{w:.2f}' for w in prof.wavelength_nm)}}}\n"
           f"fwhm = {{{', '.join(f'{w:.2f}' for w in prof.fwhm_nm)}}}\n")
    path.with_suffix(".hdr").write_text(hdr)
    return path


def child(mode: str, path: str) -> None:
    from engine.io.raster import RasterSource
    from engine.io.tiling import TileGrid
    from engine.io.writers import OutputSet
    from engine.tasks.classify import classify_to_geotiffs
    src = RasterSource.open(path)
    t0 = time.perf_counter()
    if mode == "raw":
        grid = TileGrid(src.width, src.height, TILE, OVERLAP)
        bands = [b + 1 for b in src.bands]
        for y0 in grid.rows:
            for x0 in grid.columns:
                x, y, w, h = grid.window(x0, y0)
                src.ds.ReadAsArray(x, y, w, h, band_list=bands)
    else:
        out = Path(path).with_name(Path(path).stem + "_out")
        with OutputSet(out, ["classes.tif", "confidence.tif"]) as outputs:
            classify_to_geotiffs(src, lambda b: np.zeros((b.shape[0], 4) + b.shape[2:], np.float32),
                                 ["a", "b", "c", "d"], [(0, 0, 0)] * 4, outputs, tile=TILE, overlap=OVERLAP,
                                 batch_size=4)
            outputs.commit()
    print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mib": peak_rss_mib()}))


def run_child(mode: str, path: Path) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", mode, str(path)], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, lines in SIZES.items():
        path = make_envi(OUT / f"synthetic_{name}.img", lines)
        gb = path.stat().st_size / 1e9
        run_child("raw", path)  # warm the page cache so both arms read from memory alike
        raw = run_child("raw", path)
        pipe = run_child("pipeline", path)
        results[name] = (gb, raw, pipe)
        print(f"{name}: {WIDTH}×{lines}×{BANDS} int16 ({gb:.2f} GB): raw read {raw['seconds']:.1f} s, "
              f"pipeline {pipe['seconds']:.1f} s ({pipe['seconds'] / raw['seconds']:.2f}× raw), "
              f"peak RSS {pipe['peak_rss_mib']:.0f} MiB (raw read alone {raw['peak_rss_mib']:.0f} MiB)")
    r1, r4 = results["1x"][2]["peak_rss_mib"], results["4x"][2]["peak_rss_mib"]
    ratio_t = results["4x"][2]["seconds"] / results["4x"][1]["seconds"]
    print(f"peak RSS 4x/1x: {r4 / r1:.2f} (target ≤ 1.1; largest {max(r1, r4):.0f} MiB, target ≤ 2048)")
    print(f"pipeline / raw read time at 4x: {ratio_t:.2f} (target ≤ 1.25)")
    if "--keep" not in sys.argv:
        shutil.rmtree(OUT)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main())
