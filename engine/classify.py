"""Classify a whole raster with a model bundle (or k-means clusters of the encoder's features, unsupervised),
through the streaming driver, into `classes.tif`, `confidence.tif` and a report with class areas."""
from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .bundles import load_bundle
from .cluster import kmeans, soft_assign
from .errors import Cancelled, EngineError, SpecAwareWarning
from .infer import classify_to_geotiffs, torch_model_fn
from .model.segmenter import SpectralInput
from .raster import RasterSource, check_writable
from .report import write_report
from .runtime import Runtime
from .samples import PALETTE, hex_to_rgb
from .sensors import SensorProfile
from .tiling import TileGrid

CLUSTER_SAMPLE_TILES = 24


def check_sensor_overlap(trained: SensorProfile, source: RasterSource, raster: str) -> None:
    """Error when the raster shares no wavelengths with the training sensor; warn on any cross-sensor use."""
    twl = np.asarray(trained.wavelength_nm)[trained.good_bands()]
    lo, hi = max(twl.min(), source.wavelength.min()), min(twl.max(), source.wavelength.max())
    if lo >= hi:
        raise EngineError(f"{raster} covers {source.wavelength.min():.0f}–{source.wavelength.max():.0f} nm but the "
                          f"model was trained on {trained.name} at {twl.min():.0f}–{twl.max():.0f} nm: no overlap, "
                          "so it cannot classify this raster; fine-tune a model on this sensor")
    p = source.profile
    same_bands = len(twl) == len(source.bands) and np.abs(twl - source.wavelength).max() <= 2.0
    if not same_bands or (trained.sensor, trained.level) != (p.sensor, p.level):
        warnings.warn(f"cross-sensor use: the model was trained on {trained.name} ({trained.sensor}, {len(twl)} "
                      f"bands, {trained.level}) and {raster} is {p.name} ({p.sensor}, {len(source.bands)} bands, "
                      f"{p.level}); SpecAware's hypernetwork adapts to the bands, but check the map against "
                      "known areas", SpecAwareWarning, stacklevel=2)


def bundle_network(bundle, source: RasterSource, raster: str, runtime: Runtime):
    """A bundle's network on the runtime's device (kept warm), after checking the raster's bands against it."""
    check_sensor_overlap(SensorProfile.from_dict(bundle.meta["profile"]), source, raster)
    return runtime.cached(bundle.cache_key, lambda: bundle.build().to(runtime.device))


def bundle_classifier(model: str, source: RasterSource, raster: str, runtime: Runtime):
    """(probabilities of a tile batch, class names, colours, tile size, facts) for a bundle on this raster."""
    bundle = load_bundle(model)
    net = bundle_network(bundle, source, raster, runtime)
    spec = SpectralInput.from_source(source)
    classes = bundle.meta["classes"]
    facts = {"model": str(bundle.path), "backbone": bundle.meta.get("backbone"), "head": bundle.meta["head"]}
    return (lambda x: net(x, spec).softmax(1)), classes["names"], classes["colors"], bundle.meta["tile"], facts


def _cluster_classifier(k: int, source: RasterSource, runtime: Runtime, preset_name: str, backbone, seed: int,
                        progress, cancel):
    """k-means on the encoder's last-block token features of tiles spread over the raster; pixels get the
    upsampled soft membership."""
    from .finetune import init_model
    torch.manual_seed(seed)
    model, provenance, _ = init_model(preset_name, "light", k, backbone)
    encoder = model.encoder.to(runtime.device).eval()
    # Position-free features (GSD 0 makes every token's position code the same): clusters then follow
    # materials, not places. With random weights the position code would otherwise dominate the tokens.
    spec = dataclasses.replace(SpectralInput.from_source(source), gsd=0.0)
    tile = 8 * encoder.cfg.patch_size
    grid = TileGrid(source.width, source.height, tile)
    windows = grid.spread(CLUSTER_SAMPLE_TILES)

    def token_features(x: torch.Tensor) -> torch.Tensor:
        wl, fw, gsd = spec.tensors(x.shape[0], x.device)
        return encoder.features(x, wl, fw, gsd, spec.sensor, spec.level)[-1]  # [B, E, h, w]

    feats = []
    for n, (x, y, w, h) in enumerate(windows):
        if cancel and cancel():
            raise Cancelled("cancelled by the user")
        values, valid = source.read(x, y, w, h)
        if not valid.any():
            continue
        with torch.inference_mode():
            f = token_features(torch.from_numpy(grid.pad(values)[None]).to(runtime.device))[0]
        k_ = encoder.cfg.patch_size
        token_valid = torch.from_numpy(np.pad(valid, ((0, tile - h), (0, tile - w)))[::k_, ::k_].copy())
        feats.append(f.flatten(1).T[token_valid.flatten().to(f.device)].cpu())
        if progress:
            progress(0.1 * (n + 1) / len(windows), f"sampling features for k-means: {n + 1}/{len(windows)} tiles")
    if not feats:
        raise EngineError(f"{source.path} has no valid pixels to cluster")
    centroids = kmeans(torch.cat(feats), k, seed=seed).to(runtime.device)

    def forward(x):
        member = soft_assign(token_features(x), centroids)
        return F.interpolate(member, x.shape[-2:], mode="bilinear", align_corners=False)

    names = [f"cluster {i + 1}" for i in range(k)]
    facts = {"model": f"unsupervised: k-means with {k} clusters on encoder token features",
             "backbone": provenance}
    return forward, names, [PALETTE[i % len(PALETTE)] for i in range(k)], tile, facts


def classify(raster: str, out: str, model: str | None = None, clusters: int | None = None, profile=None,
             sensor=None, level=None, probabilities: bool = False, preset_name: str = "tiny", backbone=None,
             seed: int = 0, runtime: Runtime | None = None, progress=None, cancel=None) -> dict:
    """Write classes.tif, confidence.tif (and probabilities.tif) and report.json/html into `out`."""
    if (model is None) == (clusters is None):
        raise EngineError("give either a model (a bundle name or folder) or a number of clusters for an "
                          "unsupervised map")
    if clusters is not None and not 2 <= clusters <= 64:
        raise EngineError(f"--clusters {clusters}: use 2 to 64 clusters")
    t0 = time.perf_counter()
    runtime = runtime or Runtime("cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecAwareWarning)
        report = _classify(raster, out, model, clusters, profile, sensor, level, probabilities, preset_name,
                           backbone, seed, runtime, progress, cancel)
    report["warnings"] = [str(w.message) for w in caught if issubclass(w.category, SpecAwareWarning)] + \
        report["warnings"]
    report["facts"]["seconds"] = round(time.perf_counter() - t0, 2)
    out_dir = Path(report["out"])
    paths = write_report(out_dir, {k: v for k, v in report.items() if k != "out"})
    return {**report, "report": str(paths[0]), "report_html": str(paths[1])}


def _classify(raster, out, model, clusters, profile, sensor, level, probabilities, preset_name, backbone, seed,
              runtime, progress, cancel) -> dict:
    out_dir = check_writable(out)
    source = RasterSource.open(raster, profile, sensor, level)
    prof = source.profile
    if model is not None:
        forward, names, colors, tile, facts = bundle_classifier(model, source, raster, runtime)
    else:
        forward, names, colors, tile, facts = _cluster_classifier(clusters, source, runtime, preset_name, backbone,
                                                                  seed, progress, cancel)
    offset = 0.1 if clusters else 0.0

    def stream_progress(f, m):
        if progress:
            progress(offset + (1 - offset) * f, m)

    result = classify_to_geotiffs(source, torch_model_fn(forward, runtime.device), names,
                                  [hex_to_rgb(c) for c in colors], out_dir, tile=tile, overlap=tile // 4,
                                  progress=stream_progress, cancel=cancel, write_probabilities=probabilities)
    area = result["pixel_area_m2"]
    report = {
        "title": f"SpecAware classification of {raster}", "kind": "unsupervised" if clusters else "supervised",
        "raster": str(raster), "outputs": result["outputs"], "classes": {"names": names, "colors": colors},
        "pixel_counts": result["pixel_counts"], "nodata_pixels": result["nodata_pixels"],
        "pixel_area_m2": area,
        "areas_ha": {n: round(c * area / 1e4, 4) for n, c in result["pixel_counts"].items()} if area else None,
        "facts": {**facts, "kind": "unsupervised" if clusters else "supervised", "raster": str(raster),
                  "sensor": f"{prof.name} ({prof.sensor}, {prof.level}), {len(source.bands)} bands used",
                  "device": runtime.device_name, "tiles": result["tiles"]},
        "warnings": result["warnings"], "out": str(out_dir),
    }
    return report
