"""`change`: two dates paired on the first one's grid, a per-pixel change magnitude, a threshold, and
change.tif, magnitude.tif, change.gpkg (polygons with areas) and summary.json, written together or not at all.

With a classification bundle both dates are also classified, giving fromto.tif and a transition matrix; with a
change model (`finetune --task change`) the magnitude is its probability of change.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal

from ...core.errors import EngineError
from ...core.progress import CancelFn, ProgressFn, check_cancel, no_progress, scaled
from ...core.request import param
from ...core.runtime import Runtime
from ...core.vocabulary import THRESHOLD_MODES
from ...io.colors import hex_to_rgb
from ...io.pairing import PairSource, open_pair
from ...io.polygons import polygonize
from ...io.sensors import SensorProfile
from ...io.stream import stream_predictions
from ...io.writers import OutputSet, georef
from ...model.bundles import load_bundle
from ...model.factory import feature_encoder
from ...model.segmenter import PairInput, SpectralInput
from ..classify import bundle_network, check_sensor_overlap
from ..options import BackboneChoice
from .measures import ChangeModel, calibrate, otsu, shared_bands

NODATA = 255
BINS = 1024
OUTPUTS = ["change.tif", "magnitude.tif", "fromto.tif", "change.gpkg", "summary.json"]


@dataclass(kw_only=True)
class ChangeRequest(BackboneChoice):
    job = "change"
    summary = "change between two dates: change.tif, magnitude.tif, change.gpkg, summary.json"
    computes = True
    before: str = param(help="the first date", kind="raster")
    after: str = param(help="the second date (any CRS, resolution, extent or sensor)", kind="raster")
    out: str = param(help="output folder", kind="out-dir")
    model: str | None = param(None, "a change model (finetune --task change) gives the change probability; a "
                                    "land-cover model also classifies both dates (fromto.tif, transitions)",
                             kind="model")
    threshold: str = param("otsu", f"{' or '.join(THRESHOLD_MODES[1:])} or a magnitude between 0 and 1")
    min_area: float = param(0.0, "minimum polygon area in m²", lo=0.0)

    def threshold_value(self) -> str | float:
        """'otsu', or the magnitude above which a pixel has changed."""
        mode = self.threshold.strip().lower()
        if mode in THRESHOLD_MODES[1:]:
            return mode
        try:
            value = float(mode)
        except ValueError:
            value = float("nan")
        if not 0.0 <= value <= 1.0:
            raise EngineError(f"threshold {self.threshold!r} is not allowed: give "
                              f"{' or '.join(repr(m) for m in THRESHOLD_MODES[1:])} or a magnitude from 0 to 1")
        return value

    def check(self) -> None:
        self.threshold_value()

    def output_paths(self) -> list[Path]:
        return [Path(self.out) / n for n in OUTPUTS]


def detect_change(req: ChangeRequest, runtime: Runtime | None = None, progress: ProgressFn | None = None,
                  cancel: CancelFn | None = None) -> dict:
    """Write change.tif, magnitude.tif, change.gpkg and summary.json (and fromto.tif with a bundle) into `req.out`."""
    t0 = time.perf_counter()
    runtime = runtime or Runtime("cpu")
    progress = progress or no_progress
    threshold = req.threshold_value()
    with OutputSet(req.out, OUTPUTS) as out:
        work = Path(tempfile.mkdtemp(prefix=".pair-", dir=out.scratch))
        src_a, src_b, facts = open_pair(req.before, req.after, work)
        spec_a, spec_b = SpectralInput.from_source(src_a), SpectralInput.from_source(src_b)
        pairs = shared_bands(src_a.wavelength, src_b.wavelength, src_a.fwhm)
        names, colors, bundle = [], [], None
        if req.model:
            bundle = load_bundle(req.model)
            net = bundle_network(bundle, src_a, runtime)
            trained_after = SensorProfile.from_dict(bundle.meta.get("profile_after") or bundle.meta["profile"])
            check_sensor_overlap(trained_after, src_b, src_b.path)
            encoder, tile = net.encoder, bundle.meta["tile"]
            provenance = f"backbone of model {bundle.path}"
        else:
            encoder, provenance = feature_encoder(req.preset, req.backbone, req.seed, runtime.device)
            tile = 8 * encoder.cfg.patch_size
        pair_src = PairSource(src_a, src_b)
        supervised = bundle is not None and bundle.meta.get("task") == "change"
        if supervised:  # a fine-tuned change model: the magnitude is its probability of change
            idx = bundle.meta["classes"]["names"].index(bundle.meta["change_class"])
            pair_in = PairInput(spec_a, spec_b, len(src_a.bands))
            cm = lambda x: net(x, pair_in).softmax(1)[:, idx:idx + 1]  # noqa: E731
            threshold = 0.5 if threshold == "otsu" else threshold
            measure = f"probability of change from model {bundle.path}"
        else:
            if bundle is not None:
                names, colors = bundle.meta["classes"]["names"], bundle.meta["classes"]["colors"]
            cm = ChangeModel(encoder, spec_a, spec_b, len(src_a.bands), pairs, net if bundle else None)
            progress(0.02, "calibrating the change measures")
            calibrate(cm, pair_src, tile, runtime.device)
            measure = "mean of feature distance" + (" and spectral angle" if len(pairs[0]) >= 3 else
                                                    " only (fewer than 3 shared bands)")
        result = write_rasters(pair_src, runtime.model_fn(cm), out, names, colors, threshold, tile,
                               scaled(progress, 0.05, 0.9), cancel)
        shutil.rmtree(work, ignore_errors=True)
        progress(0.95, "vectorising the changed areas")
        with out.guard("change.gpkg") as gpkg:
            polygons = polygonize(out.path("change.tif"), out.path("magnitude.tif"),
                                  out.path("fromto.tif") if names else None, names, gpkg, req.min_area)
        gt = georef(src_a.ds)[0]
        px_area = abs(gt[1] * gt[5] - gt[2] * gt[4])
        summary = {
            "before": str(req.before), "after": str(req.after), **facts,
            "sensors": {"before": f"{src_a.profile.name} ({src_a.profile.sensor}, {src_a.profile.level}), "
                                  f"{len(src_a.bands)} bands",
                        "after": f"{src_b.profile.name} ({src_b.profile.sensor}, {src_b.profile.level}), "
                                 f"{len(src_b.bands)} bands"},
            "shared_bands": int(len(pairs[0])), "backbone": provenance,
            "measure": measure, "threshold": result["threshold"],
            "threshold_method": "otsu" if threshold == "otsu" else ("model, p > 0.5" if supervised and
                                                                    threshold == 0.5 else "given"),
            "changed_pixels": result["changed"], "valid_pixels": result["valid"],
            "changed_area_ha": round(result["changed"] * px_area / 1e4, 4), "pixel_area_m2": px_area,
            "polygons": polygons, "seconds": round(time.perf_counter() - t0, 2),
        }
        if names:
            K = len(names)
            summary["transitions_ha"] = {f"{names[i]} → {names[j]}": round(int(result["fromto"][i, j]) * px_area
                                                                          / 1e4, 4)
                                         for i in range(K) for j in range(K) if result["fromto"][i, j]}
        out.text("summary.json", json.dumps(summary, indent=1))
        written = [str(p) for p in out.commit()]
    warnings_out = [polygons["note"]] if polygons.get("note") else []
    return {**summary, "outputs": written, "warnings": warnings_out}


def write_rasters(src: PairSource, model_fn, out: OutputSet, names, colors, threshold, tile,
                  progress: ProgressFn, cancel: CancelFn | None) -> dict:
    """Pass 1 streams the magnitude (and class scores) to disk with a histogram; pass 2 thresholds it."""
    gt, proj = georef(src.a.ds)
    W, H = src.width, src.height
    K = len(names)
    mag_w = out.geotiff("magnitude.tif", W, H, 1, gdal.GDT_Float32, gt, proj, nodata=float("nan"))
    if K:
        labels = [f"{a} → {b}" for a in names for b in names]
        palette = {0: (0, 0, 0, 0)}
        for i in range(K):
            for j in range(K):
                palette[i * K + j + 1] = (200, 200, 200) if i == j else hex_to_rgb(colors[j])
        ft_w = out.geotiff("fromto.tif", W, H, 1, gdal.GDT_UInt16, gt, proj, nodata=0, color_table=palette,
                           category_names=["no data", *labels])
    hist = np.zeros(BINS, np.int64)
    fromto = np.zeros((max(K, 1), max(K, 1)), np.int64)

    def on_rows(y, scores, valid):
        mag = np.clip(scores[0], 0, 1).astype(np.float32)
        mag[~valid] = np.nan
        mag_w.write(mag, 0, y)
        hist[:] += np.bincount(np.minimum((mag[valid] * BINS).astype(int), BINS - 1), minlength=BINS)
        if K:
            fa, fb = scores[1:1 + K].argmax(0), scores[1 + K:].argmax(0)
            code = (fa * K + fb + 1).astype(np.uint16)
            code[~valid] = 0
            ft_w.write(code, 0, y)
            np.add.at(fromto, (fa[valid], fb[valid]), 1)

    stream_predictions(src, model_fn, 1 + 2 * K, on_rows, tile, tile // 4, progress=progress, cancel=cancel)
    for w in out.writers:  # flushed, so that they can be read back
        w.close()
    valid = int(hist.sum())
    thr = otsu(hist) if threshold == "otsu" else float(threshold)
    change_w = out.geotiff("change.tif", W, H, 1, gdal.GDT_Byte, gt, proj, nodata=NODATA,
                           color_table={0: (220, 220, 220, 0), 1: (215, 25, 28, 255), NODATA: (0, 0, 0, 0)},
                           category_names=["no change", "change"])
    mag_ds = gdal.Open(str(mag_w.path))
    changed = 0
    for y0 in range(0, H, 256):
        check_cancel(cancel, "change detection")
        h = min(256, H - y0)
        m = mag_ds.ReadAsArray(0, y0, W, h)
        c = np.where(np.isnan(m), NODATA, (m > thr).astype(np.uint8)).astype(np.uint8)
        changed += int((c == 1).sum())
        change_w.write(c, 0, y0)
    mag_ds = None
    change_w.close()
    return {"threshold": round(thr, 5), "changed": changed, "valid": valid, "fromto": fromto}
