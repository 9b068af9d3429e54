"""`python3 build.py demo`: the analyst's main job on a built-in example, from nothing to a QGIS project.

Builds a synthetic AVIRIS-NG scene with a known class map, fine-tunes SpecAware on a few polygons, classifies
the whole scene, scores the map against the known classes, and writes a QGIS project with styled layers.
Nothing is downloaded: the spectra come from the installed `earthlib` package.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from osgeo import gdal  # noqa: E402

from engine.core.files import atomic_write_text  # noqa: E402
from engine.io.synthetic import make_scene  # noqa: E402
from engine.learn.metrics import score  # noqa: E402
from engine.service.jobs import call  # noqa: E402


def progress(fraction: float, message: str) -> None:
    print(f"  [{100 * fraction:5.1f}%] {message}", flush=True)


def write_project(out: Path, scene, bundle_meta: dict, classified: Path) -> Path:
    """A .qgz with the scene (false-colour), training polygons, the class map, confidence and the known map."""
    from qgis.core import QgsApplication
    app = QgsApplication([], False)
    app.initQgis()
    try:
        return _styled_project(out, scene, bundle_meta, classified)
    finally:
        gc.collect()  # every layer object goes before QGIS does, or the interpreter crashes at exit
        app.exitQgis()


def _styled_project(out: Path, scene, bundle_meta: dict, classified: Path) -> Path:
    from qgis.core import QgsProject
    from specaware_qgis import layers
    names, colors = bundle_meta["classes"]["names"], bundle_meta["classes"]["colors"]
    wl = np.asarray(bundle_meta["profile"]["wavelength_nm"])
    nir_red_green = tuple(int(np.abs(wl - w).argmin()) + 1 for w in (860, 650, 550))
    project = QgsProject.instance()
    project.clear()
    for layer in [layers.rgb_layer(scene.raster, nir_red_green, "scene (false colour: NIR, red, green)"),
                  layers.class_layer(scene.truth, names, colors, "known classes (truth)"),
                  layers.confidence_layer(classified / "confidence.tif"),
                  layers.class_layer(classified / "classes.tif", names, colors, "SpecAware classes"),
                  layers.polygon_layer(scene.polygons, "class", names, colors)]:
        project.addMapLayer(layer)
    truth = project.mapLayersByName("known classes (truth)")[0]
    project.layerTreeRoot().findLayer(truth).setItemVisibilityChecked(False)
    path = out / "demo.qgz"
    if not project.write(str(path)):
        raise RuntimeError(f"QGIS could not write {path}")
    project.clear()
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "demo_out"), help="output folder (default: demo_out/)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out).resolve()
    t0 = time.perf_counter()

    print("1/4 building the synthetic AVIRIS-NG scene from earthlib spectra", flush=True)
    scene = make_scene(out / "scene", seed=args.seed)
    print(f"  {scene.raster} (128 × 128 px, 425 bands), {scene.polygons}, known map {scene.truth}")

    print("2/4 fine-tuning SpecAware (tiny preset, light head) on the training polygons", flush=True)
    trained = call("finetune", progress, raster=str(scene.raster), polygons=str(scene.polygons), class_field="class",
                   out=str(out / "models" / "demo"), epochs=args.epochs, seed=args.seed, overwrite=True)
    meta = json.loads((Path(trained["bundle"]) / "model.json").read_text())

    print("3/4 classifying the whole scene", flush=True)
    result = call("classify", progress, raster=str(scene.raster), out=str(out / "classified"), model=trained["bundle"])

    truth = gdal.Open(str(scene.truth)).ReadAsArray()
    pred = gdal.Open(str(out / "classified" / "classes.tif")).ReadAsArray()
    full = score(truth, pred, meta["classes"]["names"])
    atomic_write_text(out / "accuracy_full_map.json", json.dumps(full, indent=1))

    print("4/4 writing the QGIS project", flush=True)
    project = write_project(out, scene, meta, out / "classified")

    val = trained["validation"]
    print("\nDone in %.0f s." % (time.perf_counter() - t0))
    print(f"  backbone          {trained['backbone']}")
    if val:
        print(f"  held-out polygons OA {100 * val['oa']:.1f} %, kappa {val['kappa']:.3f}, mIoU {val['miou']:.3f} "
              f"({val['pixels']} px)")
    print(f"  full known map    OA {100 * full['oa']:.1f} %, AA {100 * full['aa']:.1f} %, kappa {full['kappa']:.3f}, "
          f"mIoU {full['miou']:.3f} ({full['pixels']} px)")
    print(f"  model bundle      {trained['bundle']}")
    print(f"  class map         {out / 'classified' / 'classes.tif'} (+ confidence.tif)")
    print(f"  reports           {trained['report']}, {result['report_html']}")
    print(f"  QGIS project      {project}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
