"""Change detection stays within the streaming driver's memory bound: the same pipeline on a pair four times
longer must not need more memory.

Makes two synthetic AVIRIS-NG-like pairs (425 bands, int16, 600 px wide, 1500 and 6000 lines; the second date has
a changed block and a different no-data value) under `bench_out/change_memory/`, runs `detect_change`
(unsupervised, tiny preset, with polygons) on each in a fresh process, and prints peak RSS, the 4×/1× ratio
(target ≤ 1.1) and the time.

    python3 build.py bench change-memory [--keep]
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _common import peak_rss_mib  # noqa: E402
from streaming import make_envi  # noqa: E402

OUT = ROOT / "bench_out" / "change_memory"
SIZES = {"1x": 1500, "4x": 6000}


def changed_copy(src: Path, dst: Path) -> Path:
    """The second date: the first with a bright block every 1000 lines, no-data -1 in the first line."""
    import numpy as np
    if not dst.exists():
        data = np.memmap(src, dtype="<i2", mode="r")
        out = np.memmap(dst, dtype="<i2", mode="w+", shape=data.shape)
        out[:] = data
        lines = data.size // (425 * 600)
        cube = out.reshape(lines, 425, 600)  # BIL
        for y in range(200, lines, 1000):
            cube[y:y + 100, :, 100:220] = 6000
        cube[0] = -1
        out.flush()
        hdr = src.with_suffix(".hdr").read_text() + "data ignore value = -1\n"
        dst.with_suffix(".hdr").write_text(hdr)
    return dst


def child(before: str, after: str, out: str) -> None:
    from engine.service.jobs import call
    t0 = time.perf_counter()
    r = call("change", before=before, after=after, out=out, min_area=100, overwrite=True)  # the bench's own folder
    print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mib": peak_rss_mib(),
                      "changed_ha": r["changed_area_ha"], "polygons": r["polygons"]["count"]}))


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    res = {}
    for name, lines in SIZES.items():
        a = make_envi(OUT / f"before_{name}.img", lines)
        b = changed_copy(a, OUT / f"after_{name}.img")
        run = subprocess.run([sys.executable, __file__, "--child", str(a), str(b), str(OUT / f"change_{name}")],
                             capture_output=True, text=True, cwd=ROOT)
        if run.returncode:
            print(run.stderr[-3000:])
            return 1
        res[name] = json.loads(run.stdout.strip().splitlines()[-1])
        gb = 2 * a.stat().st_size / 1e9
        print(f"{name}: pair of 600×{lines}×425 int16 ({gb:.2f} GB): {res[name]['seconds']:.0f} s, peak RSS "
              f"{res[name]['peak_rss_mib']:.0f} MiB, {res[name]['polygons']} change polygons", flush=True)
    ratio = res["4x"]["peak_rss_mib"] / res["1x"]["peak_rss_mib"]
    print(f"peak RSS 4x/1x: {ratio:.2f} (target ≤ 1.1)")
    if "--keep" not in sys.argv:
        shutil.rmtree(OUT)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        sys.exit(main())
