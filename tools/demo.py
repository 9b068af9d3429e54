"""`python3 build.py demo`: the analyst's three jobs on a built-in example, from nothing to a QGIS project.

Builds a synthetic AVIRIS-NG scene with a known class map, fine-tunes SpecAware on a few polygons, classifies
the whole scene and scores the map against the known classes; then flies the scene again with a few known changed
blocks, detects the change, exports the change polygons and scores the change map; and writes a QGIS project with
styled layers that opens on the scene. Nothing is downloaded: the spectra come from the installed `earthlib`
package.
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
from engine.io.synthetic import make_scene, make_second_date  # noqa: E402
from engine.learn.metrics import score  # noqa: E402
from engine.service.jobs import call  # noqa: E402


def progress(fraction: float, message: str) -> None:
    print(f"  [{100 * fraction:5.1f}%] {message}", flush=True)


def step(t0: float, text: str) -> None:
    """A step's heading with the seconds spent so far."""
    print(f"{text} ({time.perf_counter() - t0:.0f} s)", flush=True)


def write_project(out: Path, scene, second, bundle_meta: dict, classified: Path, change: Path) -> tuple[Path, Path]:
    """A .qgz with the scene (false-colour), training polygons, the class map, confidence and the known map, and a
    change group: the exported change polygons, change, magnitude, the known change and the second date. Returns
    the project and the exported change polygons."""
    from qgis.core import QgsApplication
    app = QgsApplication([], False)
    app.initQgis()
    try:
        return _styled_project(out, scene, second, bundle_meta, classified, change)
    finally:
        gc.collect()  # every layer object goes before QGIS does, or the interpreter crashes at exit
        app.exitQgis()


def _styled_project(out: Path, scene, second, bundle_meta: dict, classified: Path, change: Path) -> tuple[Path, Path]:
    from qgis.core import QgsProject
    from specaware_qgis import layers
    names, colors = bundle_meta["classes"]["names"], bundle_meta["classes"]["colors"]
    wl = np.asarray(bundle_meta["profile"]["wavelength_nm"])
    nir_red_green = tuple(int(np.abs(wl - w).argmin()) + 1 for w in (860, 650, 550))
    project = QgsProject.instance()
    project.clear()
    exported = out / "exported" / "change_polygons.gpkg"
    layers.export_vectors(change / "change.gpkg", exported, project.transformContext())
    first = layers.rgb_layer(scene.raster, nir_red_green, "scene 2023 (false colour: NIR, red, green)")
    for layer in [first, layers.class_layer(scene.truth, names, colors, "known classes (truth)"),
                  layers.confidence_layer(classified / "confidence.tif"),
                  layers.class_layer(classified / "classes.tif", names, colors, "SpecAware classes"),
                  layers.polygon_layer(scene.polygons, "class", names, colors)]:
        project.addMapLayer(layer)
    hidden = [layers.change_layer(change / "change.tif"), layers.magnitude_layer(change / "magnitude.tif"),
              layers.class_layer(second.change, ["no change", "change"], ["#00bdbdbd", layers.CHANGE_RED],
                                 "known change (truth)"),
              layers.rgb_layer(second.after, nir_red_green, "scene 2024 (false colour)")]
    group = layers.add_group("SpecAware change 2023 → 2024",
                             [layers.change_polygons_layer(exported, "change polygons (exported)"), *hidden], project)
    root = project.layerTreeRoot()
    for layer in hidden + project.mapLayersByName("known classes (truth)"):
        root.findLayer(layer).setItemVisibilityChecked(False)
    group.setExpanded(True)
    layers.open_on(project, first)
    path = out / "demo.qgz"
    if not project.write(str(path)):
        raise RuntimeError(f"QGIS could not write {path}")
    project.clear()
    return path, exported


def change_accuracy(truth_path: Path, change_path: Path) -> dict:
    """The change map scored against the known change (1 no change, 2 change): OA, κ and the changed class's
    precision, recall and F1."""
    truth = gdal.Open(str(truth_path)).ReadAsArray().astype(np.int64)
    pred = gdal.Open(str(change_path)).ReadAsArray().astype(np.int64)
    return score(truth, np.where(pred == 255, 0, pred + 1), ["no change", "change"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "demo_out"), help="output folder (default: demo_out/)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out).resolve()
    t0 = time.perf_counter()

    step(t0, "1/5 building the synthetic AVIRIS-NG scene from earthlib spectra")
    scene = make_scene(out / "scene", seed=args.seed)
    print(f"  {scene.raster} (128 × 128 px, 425 bands), {scene.polygons}, known map {scene.truth}")

    step(t0, "2/5 fine-tuning SpecAware (tiny preset, the default linear head) on the training polygons")
    trained = call("finetune", progress, raster=str(scene.raster), polygons=str(scene.polygons), class_field="class",
                   out=str(out / "models" / "demo"), epochs=args.epochs, seed=args.seed, overwrite=True)
    meta = json.loads((Path(trained["bundle"]) / "model.json").read_text())

    step(t0, "3/5 classifying the whole scene")
    result = call("classify", progress, raster=str(scene.raster), out=str(out / "classified"), model=trained["bundle"],
                  overwrite=True)  # the demo's own folder: a second run replaces the first's map
    truth = gdal.Open(str(scene.truth)).ReadAsArray()
    pred = gdal.Open(str(out / "classified" / "classes.tif")).ReadAsArray()
    full = score(truth, pred, meta["classes"]["names"])
    atomic_write_text(out / "accuracy_full_map.json", json.dumps(full, indent=1))

    step(t0, "4/5 flying the scene again a year later (known changed blocks) and detecting the change")
    second = make_second_date(scene, out / "scene_2024", seed=args.seed + 1)
    for was, now, x, y, side in second.blocks:
        print(f"  {was} → {now}: {side} × {side} px at ({x}, {y})")
    changed = call("change", progress, before=str(scene.raster), after=str(second.after), out=str(out / "change"),
                   min_area=9 * 9.0, overwrite=True)
    change_acc = change_accuracy(second.change, out / "change" / "change.tif")
    atomic_write_text(out / "accuracy_change.json", json.dumps(change_acc, indent=1))

    step(t0, "5/5 exporting the change polygons and writing the QGIS project")
    project, exported = write_project(out, scene, second, meta, out / "classified", out / "change")

    val = trained["validation"]
    c = change_acc["per_class"]["change"]
    print("\nDone in %.0f s." % (time.perf_counter() - t0))
    print(f"  backbone          {trained['backbone']}")
    if val:
        print(f"  held-out polygons OA {100 * val['oa']:.1f} %, kappa {val['kappa']:.3f}, mIoU {val['miou']:.3f} "
              f"({val['pixels']} px)")
    print(f"  full known map    OA {100 * full['oa']:.1f} %, AA {100 * full['aa']:.1f} %, kappa {full['kappa']:.3f}, "
          f"mIoU {full['miou']:.3f} ({full['pixels']} px)")
    print(f"  known change      OA {100 * change_acc['oa']:.1f} %, kappa {change_acc['kappa']:.3f}, changed: "
          f"precision {c['precision']:.3f}, recall {c['recall']:.3f}, F1 {c['f1']:.3f} "
          f"({changed['polygons']['count']} polygons, {changed['changed_area_ha']:g} ha)")
    print(f"  model bundle      {trained['bundle']}")
    print(f"  class map         {out / 'classified' / 'classes.tif'} (+ confidence.tif)")
    print(f"  change map        {out / 'change' / 'change.tif'} (+ magnitude.tif, change.gpkg)")
    print(f"  change polygons   {exported}")
    print(f"  reports           {trained['report']}, {result['report_html']}")
    print(f"  QGIS project      {project}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
