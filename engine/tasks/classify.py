"""`classify`: a whole raster through the streaming driver with a model bundle (or k-means clusters of the
encoder's features, unsupervised) into `classes.tif`, `confidence.tif` and a report with class areas, all
written together or not at all."""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from osgeo import gdal

from ..core.errors import EngineError, SpecAwareWarning, shorten
from ..core.progress import CancelFn, ProgressFn, check_cancel, no_progress, scaled
from ..core.request import param
from ..core.runtime import Runtime
from ..io.colors import hex_to_rgb, palette
from ..io.datasets import ground_pixel
from ..io.raster import RasterSource
from ..io.report import report_files
from ..io.sensors import SensorProfile
from ..io.stream import stream_predictions
from ..io.tiling import TileGrid
from ..io.writers import OutputSet, georef
from ..learn.cluster import kmeans, soft_assign
from ..model.bundles import Bundle, load_bundle
from ..model.factory import feature_encoder
from ..model.segmenter import SpectralInput, position_free_tokens
from .options import BackboneChoice, SensorChoice
from .validation import map_validation

CLUSTER_SAMPLE_TILES = 24


@dataclass(kw_only=True)
class ClassifyRequest(SensorChoice, BackboneChoice):
    job = "classify"
    summary = "classify a raster with a model bundle, or cluster it (unsupervised)"
    computes = True
    raster: str = param(help="the raster to classify", kind="raster")
    model: str | None = param(None, "model name or bundle folder", kind="model")
    clusters: int | None = param(None, "unsupervised: k-means with this many clusters", lo=2, hi=64)
    out: str = param(help="output folder", kind="out-dir")
    probabilities: bool = param(False, "also write probabilities.tif (one band per class)")
    validation: str | None = param(None, "independent validation layer (points or polygons of the model's classes): "
                                         "the report then gives accuracy with 95 % intervals and error-adjusted "
                                         "class areas", kind="vector")
    class_field: str = param("class", "the validation layer's class field")
    overwrite: bool = param(False, "replace outputs of these names already in the folder (never done otherwise)")

    def check(self) -> None:
        if (self.model is None) == (self.clusters is None):
            raise EngineError("give either a model (a bundle name or folder) or a number of clusters for an "
                              "unsupervised map, not both")
        if self.validation and self.model is None:
            raise EngineError("a validation layer checks a model's classes; clusters have none, so classify with a "
                              "model to validate the map")

    def output_paths(self) -> list[Path]:
        return [Path(self.out) / n for n in output_names(self.probabilities)]


def output_names(probabilities: bool) -> list[str]:
    return ["classes.tif", "confidence.tif", *(["probabilities.tif"] if probabilities else []), "report.json",
            "report.html"]


def check_sensor_overlap(trained: SensorProfile, source: RasterSource, raster: str) -> None:
    """Error when the raster shares no wavelengths with the training sensor; warn on any cross-sensor use."""
    twl = np.asarray(trained.wavelength_nm)[trained.good_bands()]
    lo, hi = max(twl.min(), source.wavelength.min()), min(twl.max(), source.wavelength.max())
    if lo >= hi:
        raise EngineError(f"{shorten(raster)} covers {source.wavelength.min():.0f}–{source.wavelength.max():.0f} nm "
                          f"but the model was trained on {trained.name} at {twl.min():.0f}–{twl.max():.0f} nm: no "
                          "overlap, so it cannot classify this raster; fine-tune a model on this sensor")
    p = source.profile
    same_bands = len(twl) == len(source.bands) and np.abs(twl - source.wavelength).max() <= 2.0
    tfw = np.asarray(trained.fwhm_nm)[trained.good_bands()]
    differs = [what for what, differ in (
        ("band wavelengths", not same_bands),
        ("band widths (FWHM)",  # what the hypernetwork sees too: a header without FWHM, say
         same_bands and np.abs(tfw - np.asarray(source.fwhm)).max() > max(2.0, 0.2 * float(np.median(tfw)))),
        ("sensor", trained.sensor != p.sensor), ("processing level", trained.level != p.level)) if differ]
    if differs:
        warnings.warn(f"cross-sensor use ({', '.join(differs)} differ): the model was trained on {trained.name} "
                      f"({trained.sensor}, {len(twl)} bands, {trained.level}) and {shorten(raster)} is {p.name} "
                      f"({p.sensor}, {len(source.bands)} bands, {p.level}); SpecAware's hypernetwork adapts to the "
                      "bands, but check the map against known areas", SpecAwareWarning, stacklevel=2)


def bundle_network(bundle, source: RasterSource, runtime: Runtime):
    """A bundle's network on the runtime's device (kept warm), after checking the raster's bands against it."""
    check_sensor_overlap(SensorProfile.from_dict(bundle.meta["profile"]), source, source.path)
    return runtime.cached(bundle.cache_key, lambda: bundle.build().to(runtime.device))


def bundle_classifier(bundle: Bundle, source: RasterSource, runtime: Runtime):
    """(probabilities of a tile batch, class names, colours, tile size, facts) for a bundle on this raster."""
    net = bundle_network(bundle, source, runtime)
    spec = SpectralInput.from_source(source)
    classes = bundle.meta["classes"]
    facts = {"model": str(bundle.path), "backbone": bundle.meta.get("backbone"), "head": bundle.meta["head"]}
    return (lambda x: net(x, spec).softmax(1)), classes["names"], classes["colors"], bundle.meta["tile"], facts


def stream_overlap(head: str | None, tile: int) -> int:
    """Tile overlap when streaming: none for the per-pixel linear head (it has no spatial context to blend across
    tile edges), a quarter tile for heads that read neighbouring pixels."""
    return 0 if head == "linear" else tile // 4


def cluster_classifier(req: ClassifyRequest, source: RasterSource, runtime: Runtime, progress: ProgressFn,
                       cancel: CancelFn | None):
    """k-means on the encoder's token features of tiles spread over the raster; pixels get the upsampled soft
    membership."""
    k = req.clusters
    encoder, provenance, _ = feature_encoder(req.preset, req.backbone, req.seed, runtime.device)
    token_features = position_free_tokens(encoder, SpectralInput.from_source(source))
    tile = 8 * encoder.cfg.patch_size
    grid = TileGrid(source.width, source.height, tile)
    windows = grid.spread(CLUSTER_SAMPLE_TILES)
    feats = []
    for n, (x, y, w, h) in enumerate(windows):
        check_cancel(cancel, "clustering")
        values, valid = source.read(x, y, w, h)
        if not valid.any():
            continue
        with torch.inference_mode():
            f = token_features(torch.from_numpy(grid.pad(values)[None]).to(runtime.device))[0]
        k_ = encoder.cfg.patch_size
        token_valid = torch.from_numpy(np.pad(valid, ((0, tile - h), (0, tile - w)))[::k_, ::k_].copy())
        feats.append(f.flatten(1).T[token_valid.flatten().to(f.device)].cpu())
        progress(0.1 * (n + 1) / len(windows), f"sampling features for k-means: {n + 1}/{len(windows)} tiles")
    if not feats:
        raise EngineError(f"{shorten(source.path)} has no valid pixels to cluster")
    centroids = kmeans(torch.cat(feats), k, seed=req.seed).to(runtime.device)

    def forward(x):
        member = soft_assign(token_features(x), centroids)
        return F.interpolate(member, x.shape[-2:], mode="bilinear", align_corners=False)

    facts = {"model": f"unsupervised: k-means with {k} clusters on encoder token features", "backbone": provenance}
    return forward, [f"cluster {i + 1}" for i in range(k)], palette(k), tile, facts


def classify_to_geotiffs(source: RasterSource, model_fn, class_names: list[str], colors: list[tuple],
                         outputs: OutputSet, tile: int, overlap: int = 0, batch_size: int | None = None,
                         progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                         write_probabilities: bool = False) -> dict:
    """Stream class scores into `classes.tif` (ids 1…K, 0 = no data, palette) and `confidence.tif` (and
    `probabilities.tif`) of `outputs`; the caller commits the set."""
    K = len(class_names)
    gt, proj = georef(source.ds)
    W, H = source.width, source.height
    dtype = gdal.GDT_Byte if K < 255 else gdal.GDT_UInt16
    colour_table = {0: (0, 0, 0, 0), **{i + 1: tuple(c) for i, c in enumerate(colors)}}
    writers = [outputs.geotiff("classes.tif", W, H, 1, dtype, gt, proj, nodata=0, color_table=colour_table,
                               category_names=["no data", *class_names]),
               outputs.geotiff("confidence.tif", W, H, 1, gdal.GDT_Float32, gt, proj, nodata=float("nan"))]
    if write_probabilities:
        writers.append(outputs.geotiff("probabilities.tif", W, H, K, gdal.GDT_Float32, gt, proj,
                                       nodata=float("nan"), band_names=class_names))
    counts = np.zeros(K + 1, np.int64)

    def on_rows(y, scores, valid):
        cls = (scores.argmax(axis=0) + 1).astype(np.uint16)
        cls[~valid] = 0
        conf = scores.max(axis=0).astype(np.float32)
        conf[~valid] = np.nan
        writers[0].write(cls, 0, y)
        writers[1].write(conf, 0, y)
        if write_probabilities:
            probs = scores.astype(np.float32)
            probs[:, ~valid] = np.nan
            writers[2].write(probs, 0, y)
        counts[:] += np.bincount(cls.ravel(), minlength=K + 1)[:K + 1]

    stats = stream_predictions(source, model_fn, K, on_rows, tile, overlap, batch_size, progress, cancel)
    warnings_out = []
    if stats.valid_pixels == 0:
        warnings_out.append(f"{shorten(source.path)} has no valid pixels (all no-data); the outputs are all no-data")
    pixel_area = ground_pixel(source.ds)[1]
    return {"outputs": [str(outputs.final(w.path.name)) for w in writers],
            "pixel_counts": {name: int(counts[i + 1]) for i, name in enumerate(class_names)},
            "nodata_pixels": int(counts[0]), "pixel_area_m2": pixel_area, "tiles": stats.tiles,
            "seconds": round(stats.seconds, 3), "warnings": warnings_out}


def classify(req: ClassifyRequest, runtime: Runtime | None = None, progress: ProgressFn | None = None,
             cancel: CancelFn | None = None) -> dict:
    """Write classes.tif, confidence.tif (and probabilities.tif) and report.json/html into `req.out`."""
    t0 = time.perf_counter()
    runtime = runtime or Runtime("cpu")
    progress = progress or no_progress
    with warnings.catch_warnings(record=True) as caught, OutputSet(req.out, output_names(req.probabilities)) as out:
        warnings.simplefilter("always", SpecAwareWarning)
        source = RasterSource.open(req.raster, req.profile, req.sensor, req.level)
        if req.model is not None:
            forward, names, colors, tile, facts = bundle_classifier(load_bundle(req.model), source, runtime)
        else:
            forward, names, colors, tile, facts = cluster_classifier(req, source, runtime, progress, cancel)
        offset = 0.1 if req.clusters else 0.0
        result = classify_to_geotiffs(source, runtime.model_fn(forward), names, [hex_to_rgb(c) for c in colors],
                                      out, tile=tile, overlap=stream_overlap(facts.get("head"), tile),
                                      progress=scaled(progress, offset, 1.0),
                                      cancel=cancel, write_probabilities=req.probabilities)
        report = class_report(req, source, result, names, colors, facts, runtime)
        if req.validation:
            out.writers[0].close()  # classes.tif complete in the scratch folder, read back around the validation
            checked = map_validation(req.validation, req.class_field, source.ds, out.path("classes.tif"), names,
                                     result["pixel_counts"], result["pixel_area_m2"])
            report["warnings"] += checked.pop("warnings")
            report.update(checked, validation_title=f"Accuracy on the validation layer {req.validation}")
        report["warnings"] = [str(w.message) for w in caught if issubclass(w.category, SpecAwareWarning)] + \
            report["warnings"]
        report["facts"]["seconds"] = round(time.perf_counter() - t0, 2)
        for name, text in report_files(report).items():
            out.text(name, text)
        out.commit()
    return {**report, "report": str(out.final("report.json")), "report_html": str(out.final("report.html"))}


def class_report(req: ClassifyRequest, source: RasterSource, result: dict, names, colors, facts,
                 runtime: Runtime) -> dict:
    prof, area = source.profile, result["pixel_area_m2"]
    kind = "unsupervised" if req.clusters else "supervised"
    return {
        "title": f"SpecAware classification of {req.raster}", "kind": kind, "raster": str(req.raster),
        "outputs": result["outputs"], "classes": {"names": names, "colors": colors},
        "pixel_counts": result["pixel_counts"], "nodata_pixels": result["nodata_pixels"], "pixel_area_m2": area,
        "areas_ha": {n: round(c * area / 1e4, 4) for n, c in result["pixel_counts"].items()} if area else None,
        "facts": {**facts, "kind": kind, "raster": str(req.raster),
                  "sensor": f"{prof.name} ({prof.sensor}, {prof.level}), {len(source.bands)} bands used",
                  "device": runtime.device_name, "tiles": result["tiles"]},
        "warnings": result["warnings"],
    }
