#!/usr/bin/env python3
"""Write the built-in sensor profiles (resources/sensors/*.json) from the band tables in ../shared/data.

    python tools/make_sensor_profiles.py [--data ../shared/data]
Bad bands are the water-vapour ranges the authors masked when building Hyper-400K (0-based, inclusive).
The wavelength windows they span are stored too, so files of the same sensor with another band count
(e.g. the 432-band AVIRIS-NG v1e products) get the same bands masked.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROFILES = {
    "aviris_classic": dict(name="AVIRIS-Classic", sensor="avc", table="avirisc_224_2008_f080702.csv",
                           bad=[(103, 113), (152, 167)], gsd=16.0),
    "aviris_ng": dict(name="AVIRIS-NG", sensor="avng", table="avirisng_425_2017cal.csv",
                      bad=[(0, 0), (194, 210), (280, 318), (420, 424)], gsd=5.0),
    "aviris_3": dict(name="AVIRIS-3", sensor="av3", table="aviris3_284.csv", bad=[(129, 140), (190, 212)], gsd=5.0),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = p.parse_args()
    for key, spec in PROFILES.items():
        table = args.data / "band_metadata" / "derived" / spec["table"]
        rows = [r for r in csv.reader(line for line in table.read_text().splitlines() if not line.startswith("#"))]
        rows = rows[1:]
        wl = [round(float(r[1]), 4) for r in rows]
        fwhm = [round(float(r[2]), 4) for r in rows]
        bad = sorted({i for a, b in spec["bad"] for i in range(a, b + 1)})
        half = lambda i: fwhm[i] / 2  # noqa: E731
        windows = [[round(wl[a] - half(a), 2), round(wl[b] + half(b), 2)] for a, b in spec["bad"]]
        doc = {"name": spec["name"], "sensor": spec["sensor"], "level": None, "wavelength_nm": wl, "fwhm_nm": fwhm,
               "bad_bands": bad, "bad_windows_nm": windows, "gsd": spec["gsd"], "source": f"built-in ({spec['table']})"}
        out = ROOT / "resources" / "sensors" / f"{key}.json"
        out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"{out.relative_to(ROOT)}: {len(wl)} bands, {len(bad)} bad")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
