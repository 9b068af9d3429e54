"""`change`: two dates paired on the first one's grid, a per-pixel change magnitude with a known no-change
distribution, a threshold, and change.tif, magnitude.tif, change.gpkg (polygons with areas) and summary.json,
written together or not at all.

Methods: `specaware` (default; IR-MAD on each date's own bands and SpecAware token features, any two sensors),
`irmad` (IR-MAD on the shared bands) and `cva` (CVA on the standardised shared bands). The magnitude is −log10 of
the p-value of the pixel's change statistic under no change; the default threshold is that significance test.
With a classification bundle both dates are also classified (fromto.tif, transitions); with a change model
(`finetune --task change`) the magnitude is its probability of change.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal

from ...core.errors import EngineError, shorten
from ...core.progress import CancelFn, ProgressFn, check_cancel, no_progress, scaled
from ...core.request import param
from ...core.runtime import Runtime
from ...core.vocabulary import CHANGE_METHODS, THRESHOLD_MODES
from ...io.colors import hex_to_rgb
from ...io.pairing import PairSource, open_pair
from ...io.polygons import polygonize
from ...io.datasets import ground_pixel
from ...io.sensors import SensorProfile
from ...io.stream import stream_predictions
from ...io.writers import OutputSet, georef
from ...learn.mad import MAGNITUDE_CAP, otsu, second_mode
from ...model.bundles import load_bundle
from ...model.factory import feature_encoder
from ...model.segmenter import SpectralInput
from ..classify import bundle_network, check_sensor_overlap
from ..options import BackboneChoice
from .measures import ChangeMeasure
from .supervised import change_probability

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
    method: str = param("specaware", "specaware: each date's own bands and SpecAware features (any two sensors); "
                        "irmad: IR-MAD on the shared bands; cva: CVA on the standardised shared bands",
                        choices=CHANGE_METHODS)
    threshold: str = param("significance", "significance: a chi-square test at --p-value; otsu: Otsu's split of "
                           f"the magnitudes, only when they are bimodal; or a magnitude from 0 to {MAGNITUDE_CAP:g} "
                           "(−log10 p: 3 means p = 0.001)")
    p_value: float = param(0.001, "the significance test's p-value: a pixel changed when its change is this "
                           "unlikely without change", lo=0.0, hi=0.5, lo_open=True)
    min_area: float = param(0.0, "minimum polygon area in m²", lo=0.0)
    model: str | None = param(None, "a change model (finetune --task change) gives the change probability; a "
                                    "land-cover model also classifies both dates (fromto.tif, transitions)",
                              kind="model")
    overwrite: bool = param(False, "replace outputs of these names already in the folder (never done otherwise)")

    def threshold_value(self) -> str | float:
        """'significance', 'otsu', or the magnitude above which a pixel has changed."""
        mode = self.threshold.strip().lower()
        if mode in THRESHOLD_MODES:
            return mode
        try:
            value = float(mode)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= MAGNITUDE_CAP:
            raise EngineError(f"threshold {self.threshold!r} is not allowed: give "
                              f"{' or '.join(repr(m) for m in THRESHOLD_MODES)}, or a magnitude from 0 to "
                              f"{MAGNITUDE_CAP:g} (−log10 p: 3 means p = 0.001)")
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
    with OutputSet(req.out, OUTPUTS) as out:
        work = Path(tempfile.mkdtemp(prefix=".pair-", dir=out.scratch))
        src_a, src_b, facts = open_pair(req.before, req.after, work)
        spec_a, spec_b = SpectralInput.from_source(src_a), SpectralInput.from_source(src_b)
        pair_src = PairSource(src_a, src_b)
        cm, names, colors, meaning, provenance, tile = _measure(req, src_a, src_b, spec_a, spec_b, pair_src,
                                                                runtime, progress, cancel)
        result = write_rasters(pair_src, runtime.model_fn(cm), out, names, colors, req, meaning["probability"],
                               tile, scaled(progress, 0.1, 0.9), cancel)
        shutil.rmtree(work, ignore_errors=True)
        progress(0.95, "vectorising the changed areas")
        gt = georef(src_a.ds)[0]
        grid_area = abs(gt[1] * gt[5] - gt[2] * gt[4])
        px_area = ground_pixel(src_a.ds)[1] or grid_area
        with out.guard("change.gpkg") as gpkg:
            polygons = polygonize(out.path("change.tif"), out.path("magnitude.tif"),
                                  out.path("fromto.tif") if names else None, names, gpkg, req.min_area,
                                  m2_per_area_unit=px_area / grid_area if grid_area else 1.0)
        changed_ha = round(result["changed"] * px_area / 1e4, 4)
        summary = {
            "before": str(req.before), "after": str(req.after), **facts,
            "sensors": {"before": f"{src_a.profile.name} ({src_a.profile.sensor}, {src_a.profile.level}), "
                                  f"{len(src_a.bands)} bands",
                        "after": f"{src_b.profile.name} ({src_b.profile.sensor}, {src_b.profile.level}), "
                                 f"{len(src_b.bands)} bands"},
            "method": meaning["method"], "shared_bands": meaning["shared_bands"], "backbone": provenance,
            "magnitude": meaning["magnitude"], "threshold": result["threshold"],
            "threshold_method": result["threshold_method"],
            "conclusion": f"{changed_ha:g} ha changed" if result["changed"] else "no significant change",
            "changed_pixels": result["changed"], "valid_pixels": result["valid"], "changed_area_ha": changed_ha,
            "pixel_area_m2": px_area, "polygons": polygons, "seconds": round(time.perf_counter() - t0, 2),
        }
        if names:
            K = len(names)
            summary["transitions_ha"] = {f"{names[i]} → {names[j]}": round(int(result["fromto"][i, j]) * px_area
                                                                          / 1e4, 4)
                                         for i in range(K) for j in range(K) if result["fromto"][i, j]}
        out.text("summary.json", json.dumps(summary, indent=1))
        written = [str(p) for p in out.commit()]
    notes = [n for n in (result.get("note"), polygons.get("note")) if n]
    return {**summary, "outputs": written, "warnings": notes}


def _measure(req: ChangeRequest, src_a, src_b, spec_a, spec_b, pair_src, runtime, progress, cancel):
    """(tile → magnitude function, class names, colours, what the magnitude means, backbone, tile size)."""
    bundle = load_bundle(req.model) if req.model else None
    names, colors, classifier = [], [], None
    if bundle is not None:
        net = bundle_network(bundle, src_a, runtime)
        trained_after = SensorProfile.from_dict(bundle.meta.get("profile_after") or bundle.meta["profile"])
        check_sensor_overlap(trained_after, src_b, src_b.path)
        encoder, tile, provenance = net.encoder, bundle.meta["tile"], f"backbone of model {bundle.path}"
        pretrained = bool(bundle.meta.get("backbone_pretrained"))
    else:
        encoder, provenance, pretrained = feature_encoder(req.preset, req.backbone, req.seed, runtime.device)
        tile = 8 * encoder.cfg.patch_size
    supervised = bundle is not None and bundle.meta.get("task") == "change"
    if supervised and bundle.meta["head"] != "logistic":
        raise EngineError(f"the change model {shorten(bundle.path)} was trained by an earlier version of SpecAware "
                          "for QGIS; train it again with finetune --task change")
    if bundle is not None and not supervised:
        names, colors, classifier = bundle.meta["classes"]["names"], bundle.meta["classes"]["colors"], net
    method = bundle.meta.get("change_method", req.method) if supervised else req.method
    measure = ChangeMeasure(method, spec_a, spec_b, len(src_a.bands), encoder if pretrained else None, classifier)
    progress(0.02, f"fitting the no-change distribution of the pair ({method})")
    measure.fit(pair_src, tile, runtime.device, cancel)
    meaning = {"method": method, "shared_bands": measure.shared, "magnitude": measure.describe(),
               "probability": supervised}
    if supervised:
        idx = bundle.meta["classes"]["names"].index(bundle.meta["change_class"])
        meaning["magnitude"] = (f"probability of change from the change model {bundle.path}, which reads the "
                                f"pair's statistics ({measure.describe()})")
        return change_probability(net, measure, idx), [], [], meaning, provenance, tile
    return measure, names, colors, meaning, provenance, tile


def resolve_threshold(req: ChangeRequest, hist: np.ndarray, probability: bool) -> tuple[float, str, str | None]:
    """(magnitude threshold, how it was chosen, a note) from the request and the magnitudes' histogram."""
    mode = req.threshold_value()
    top = 1.0 if probability else MAGNITUDE_CAP
    if not isinstance(mode, str):
        return float(mode), "given", None
    if probability:
        return 0.5, "the change model's probability above 0.5", None
    if mode == "significance":
        return -math.log10(req.p_value), f"significance: chi-square test at p < {req.p_value:g}", None
    t = otsu(hist)
    if not second_mode(hist, t):
        return math.inf, "otsu: not applied (the magnitudes have a single mode)", \
            "the magnitudes have no second mode, so Otsu's split would only divide noise: no significant change"
    return t * top, "otsu (the magnitudes have two modes)", None


def write_rasters(src: PairSource, model_fn, out: OutputSet, names, colors, req: ChangeRequest, probability: bool,
                  tile: int, progress: ProgressFn, cancel: CancelFn | None) -> dict:
    """Pass 1 streams the magnitude (and class scores) to disk with a histogram; pass 2 thresholds it."""
    gt, proj = georef(src.a.ds)
    W, H = src.width, src.height
    K = len(names)
    top = 1.0 if probability else MAGNITUDE_CAP
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
        mag = np.clip(scores[0], 0, top).astype(np.float32)
        mag[~valid] = np.nan
        mag_w.write(mag, 0, y)
        hist[:] += np.bincount(np.minimum((mag[valid] / top * BINS).astype(int), BINS - 1), minlength=BINS)
        if K:
            fa, fb = scores[1:1 + K].argmax(0), scores[1 + K:].argmax(0)
            code = (fa * K + fb + 1).astype(np.uint16)
            code[~valid] = 0
            ft_w.write(code, 0, y)
            np.add.at(fromto, (fa[valid], fb[valid]), 1)

    stream_predictions(src, model_fn, 1 + 2 * K, on_rows, tile, tile // 4, progress=progress, cancel=cancel)
    for w in out.writers:  # flushed, so that they can be read back
        w.close()
    thr, how, note = resolve_threshold(req, hist, probability)
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
    return {"threshold": round(thr, 5) if math.isfinite(thr) else None, "threshold_method": how, "note": note,
            "changed": changed, "valid": int(hist.sum()), "fromto": fromto}
