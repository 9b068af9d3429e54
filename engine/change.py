"""Change detection between two dates: pair the rasters on the first one's grid, measure per-pixel change from
SpecAware features (each date with its own sensor profile) and the spectral angle on shared bands, threshold
(Otsu or a value), and export change.tif, magnitude.tif, change.gpkg (polygons with areas) and summary.json.

With a classification bundle both dates are also classified, giving fromto.tif and a transition matrix.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from osgeo import gdal, ogr, osr

from .bundles import load_bundle
from .errors import Cancelled, EngineError
from .infer import stream_predictions, torch_model_fn
from .model.segmenter import PairInput, SpectralInput
from .raster import GeoTiffWriter, RasterSource, check_writable, georef, open_raster
from .report import atomic_write_text
from .runtime import Runtime
from .samples import hex_to_rgb, raster_footprint, spatial_ref
from .tiling import TileGrid

NODATA = 255
BINS = 1024
SCALE_SAMPLE_TILES = 16


# --- pairing ---------------------------------------------------------------------------------------------------

def _overlap_window(a, b) -> tuple[int, int, int, int] | None:
    """The part of `a`'s pixel grid that `b` covers: (x, y, w, h), or None."""
    fb = raster_footprint(b)
    sa, sb = spatial_ref(a.GetProjection()), spatial_ref(b.GetProjection())
    if sa and sb and not sa.IsSame(sb):
        fb.Transform(osr.CoordinateTransformation(sb, sa))
    inter = fb.Intersection(raster_footprint(a))
    if inter is None or inter.IsEmpty() or inter.GetArea() <= 0:
        return None
    inv = gdal.InvGeoTransform(a.GetGeoTransform())
    ring = inter.GetGeometryRef(0) if inter.GetGeometryCount() else inter
    pts = [gdal.ApplyGeoTransform(inv, *ring.GetPoint_2D(i)) for i in range(ring.GetPointCount())]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, y0 = max(0, math.floor(min(xs) + 1e-6)), max(0, math.floor(min(ys) + 1e-6))
    x1, y1 = min(a.RasterXSize, math.ceil(max(xs) - 1e-6)), min(a.RasterYSize, math.ceil(max(ys) - 1e-6))
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def _extent(ds) -> str:
    gt = ds.GetGeoTransform()
    corners = [gdal.ApplyGeoTransform(gt, x, y) for x, y in ((0, 0), (ds.RasterXSize, ds.RasterYSize))]
    srs = osr.SpatialReference(wkt=ds.GetProjection()) if ds.GetProjection() else None
    return f"{corners[0][0]:.1f}, {corners[0][1]:.1f} to {corners[1][0]:.1f}, {corners[1][1]:.1f} " \
           f"({srs.GetName() if srs else 'no CRS'})"


def pair(before: str, after: str, workdir: Path) -> tuple[str, str, dict]:
    """VRTs of both dates on the first date's grid over their intersection, and facts about the overlap.

    The second date is warped with `gdal.Warp` into a VRT (no copy). A rotated first grid cannot be a warp
    target for a VRT, so there, unless both grids already coincide, the warp goes to a temporary GeoTIFF.
    """
    a, b = open_raster(before), open_raster(after)
    win = _overlap_window(a, b)
    if win is None:
        raise EngineError(f"{before} and {after} do not overlap: the first covers {_extent(a)}, the second "
                          f"{_extent(b)}; choose two rasters of the same area")
    a_vrt = str(workdir / "before.vrt")
    gdal.Translate(a_vrt, a, format="VRT", srcWin=list(win))
    ga = gdal.Open(a_vrt)
    gt, proj, (W, H) = ga.GetGeoTransform(), ga.GetProjection(), (ga.RasterXSize, ga.RasterYSize)
    b_gt = b.GetGeoTransform()
    same_crs = osr.SpatialReference(wkt=proj).IsSame(osr.SpatialReference(wkt=b.GetProjection())) if proj else True
    inv_b = gdal.InvGeoTransform(b_gt)
    bx, by = gdal.ApplyGeoTransform(inv_b, gt[0], gt[3])
    same_grid = same_crs and np.allclose(gt[1:3] + gt[4:6], b_gt[1:3] + b_gt[4:6], rtol=1e-9) and \
        abs(bx - round(bx)) < 1e-6 and abs(by - round(by)) < 1e-6 and \
        0 <= round(bx) and round(bx) + W <= b.RasterXSize and 0 <= round(by) and round(by) + H <= b.RasterYSize
    b_path = str(workdir / "after.vrt")
    if same_grid:
        gdal.Translate(b_path, b, format="VRT", srcWin=[int(round(bx)), int(round(by)), W, H])
        how = "same grid (window, no resampling)"
    elif gt[2] == 0 and gt[4] == 0:
        bounds = [gt[0], gt[3] + H * gt[5], gt[0] + W * gt[1], gt[3]]
        gdal.Warp(b_path, b, format="VRT", dstSRS=proj, outputBounds=bounds, width=W, height=H,
                  resampleAlg="bilinear", dstNodata=-9999)
        how = "warped into a VRT (bilinear)"
    else:
        b_path = str(workdir / "after_warped.tif")
        dst = gdal.GetDriverByName("GTiff").Create(b_path, W, H, b.RasterCount, gdal.GDT_Float32,
                                                   ["TILED=YES", "BIGTIFF=IF_SAFER"])
        dst.SetGeoTransform(gt)
        dst.SetProjection(proj)
        for i in range(1, b.RasterCount + 1):
            dst.GetRasterBand(i).SetNoDataValue(-9999)
            dst.GetRasterBand(i).Fill(-9999)
        gdal.Warp(dst, b, resampleAlg="bilinear", dstNodata=-9999)
        dst = None
        how = "warped onto the rotated grid (temporary GeoTIFF)"
    pixel_area = abs(gt[1] * gt[5] - gt[2] * gt[4])
    return a_vrt, b_path, {"overlap_px": [W, H], "overlap_window_in_before": list(win),
                           "overlap_area_ha": round(W * H * pixel_area / 1e4, 4), "pairing": how}


def open_pair(before: str, after: str, workdir: Path, profile=None, sensor=None, level=None):
    """(source before, source after, pairing facts): both dates on the first one's grid, each with its own
    sensor profile (`profile`, `sensor` and `level` apply to the first date)."""
    a_path, b_path, facts = pair(before, after, workdir)
    sources = []
    for path, user_path, opts in ((a_path, before, (profile, sensor, level)), (b_path, after, (None, None, None))):
        src = RasterSource.open(user_path, *opts, ds=gdal.Open(path))  # profile from the user's file name
        sources.append(src)
    return sources[0], sources[1], facts


class PairSource:
    """Both dates as one source for the streaming driver: values are [Ca + Cb, h, w], valid where both are."""

    def __init__(self, a: RasterSource, b: RasterSource):
        self.a, self.b = a, b
        self.path = f"{a.path} + {b.path}"
        self.width, self.height = a.width, a.height
        self.bands = list(range(len(a.bands) + len(b.bands)))

    def read(self, x, y, w, h):
        va, ma = self.a.read(x, y, w, h)
        vb, mb = self.b.read(x, y, w, h)
        return np.concatenate([va, vb]), ma & mb


# --- change measures ---------------------------------------------------------------------------------------------

def shared_bands(wa: np.ndarray, wb: np.ndarray, fwhm_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i in A, j in B) of bands whose centres lie within max(5 nm, FWHM/2) of each other."""
    ia, ib = [], []
    for i, w in enumerate(wa):
        j = int(np.abs(wb - w).argmin())
        if abs(wb[j] - w) <= max(5.0, fwhm_a[i] / 2):
            ia.append(i)
            ib.append(j)
    return np.asarray(ia, int), np.asarray(ib, int)


def spectral_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] angle between the spectra, divided by π/2 (0 same shape, 1 orthogonal)."""
    cos = F.cosine_similarity(a, b, dim=1, eps=1e-8).clamp(-1, 1)
    return (torch.arccos(cos) / (math.pi / 2)).unsqueeze(1)


class ChangeModel:
    """Per-pixel change terms of a tile pair: feature distance (1 − cos of the encoder's last-block tokens,
    position-free, upsampled) and the spectral angle on shared bands; plus class scores when a bundle is given."""

    def __init__(self, encoder, spec_a: SpectralInput, spec_b: SpectralInput, n_a: int, pairs, classifier=None):
        self.encoder, self.n_a, self.pairs, self.classifier = encoder, n_a, pairs, classifier
        self.spec_a, self.spec_b = spec_a, spec_b
        self.noise, self.high = torch.ones(2), torch.full((2,), math.e - 1)  # set by `calibrate`

    def _tokens(self, x, spec):
        s = dataclasses.replace(spec, gsd=0.0)  # same position code for every token: content only
        wl, fw, gsd = s.tensors(x.shape[0], x.device)
        return self.encoder.features(x, wl, fw, gsd, s.sensor, s.level)[-1]

    def terms(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 2, H, W]: feature distance and spectral angle (zeros when fewer than 3 bands are shared)."""
        xa, xb = x[:, :self.n_a], x[:, self.n_a:]
        fa, fb = self._tokens(xa, self.spec_a), self._tokens(xb, self.spec_b)
        dist = (1 - F.cosine_similarity(fa, fb, dim=1)).unsqueeze(1)
        dist = F.interpolate(dist, x.shape[-2:], mode="bilinear", align_corners=False)
        if len(self.pairs[0]) >= 3:
            sam = spectral_angle(xa[:, self.pairs[0]], xb[:, self.pairs[1]])
        else:
            sam = torch.zeros_like(dist)
        return torch.cat([dist, sam], dim=1)

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] in 0–1: each term on a log scale between its typical (unchanged) level and its 99th
        percentile, then averaged; subtle and strong changes both stand well above the unchanged floor."""
        noise, high = (v.to(x.device).view(1, 2, 1, 1) for v in (self.noise, self.high))
        t = torch.log1p(self.terms(x) / noise) / torch.log1p(high / noise)
        used = 2 if len(self.pairs[0]) >= 3 else 1
        return t[:, :used].clamp(0, 1).mean(dim=1, keepdim=True)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        magnitude = self.magnitude(x)
        if self.classifier is None:
            return magnitude
        pa = self.classifier(x[:, :self.n_a], self.spec_a).softmax(1)
        pb = self.classifier(x[:, self.n_a:], self.spec_b).softmax(1)
        return torch.cat([magnitude, pa, pb], dim=1)


def calibrate(model: ChangeModel, source: PairSource, tile: int, device) -> None:
    """Each term's median (the unchanged level, as most pixels do not change) and 99th percentile, over tiles
    spread across the pair."""
    grid = TileGrid(source.width, source.height, tile)
    values = [[], []]
    for x, y, w, h in grid.spread(SCALE_SAMPLE_TILES):
        v, valid = source.read(x, y, w, h)
        if not valid.any():
            continue
        with torch.inference_mode():
            t = model.terms(torch.from_numpy(grid.pad(v)[None]).to(device))[0, :, :h, :w].cpu().numpy()
        for k in range(2):
            values[k].append(t[k][valid])
    if not values[0]:
        raise EngineError(f"the overlap of {source.a.path} and {source.b.path} holds no pixel valid on both "
                          "dates (one date is all no-data there)")
    merged = [np.concatenate(v) for v in values]
    model.noise = torch.tensor([max(float(np.median(v)), 1e-6) for v in merged])
    model.high = torch.maximum(torch.tensor([float(np.percentile(v, 99)) for v in merged]), 2 * model.noise)


def otsu(hist: np.ndarray) -> float:
    """Otsu's threshold on a histogram over [0, 1]."""
    p = hist.astype(np.float64) / max(hist.sum(), 1)
    centers = (np.arange(len(hist)) + 0.5) / len(hist)
    w0 = np.cumsum(p)
    mu = np.cumsum(p * centers)
    between = (mu[-1] * w0 - mu) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    return float(centers[int(np.argmax(between))] + 0.5 / len(hist))


# --- the job -----------------------------------------------------------------------------------------------------

def detect_change(before: str, after: str, out: str, model: str | None = None, threshold: str | float = "otsu",
                  min_area: float = 0.0, preset_name: str = "tiny", backbone=None, seed: int = 0,
                  runtime: Runtime | None = None, progress=None, cancel=None) -> dict:
    """Write change.tif, magnitude.tif, change.gpkg and summary.json (and fromto.tif with a bundle) into `out`."""
    t0 = time.perf_counter()
    runtime = runtime or Runtime("cpu")
    progress = progress or (lambda f, m: None)
    out_dir = check_writable(out)
    if threshold != "otsu":
        try:
            threshold = float(threshold)
        except ValueError:
            raise EngineError(f"--threshold {threshold!r}: use 'otsu' or a number between 0 and 1") from None
    work = Path(tempfile.mkdtemp(prefix=".specaware-pair-", dir=out_dir))
    outputs: list[GeoTiffWriter] = []
    try:
        src_a, src_b, facts = open_pair(before, after, work)
        spec_a, spec_b = SpectralInput.from_source(src_a), SpectralInput.from_source(src_b)
        pairs = shared_bands(src_a.wavelength, src_b.wavelength, src_a.fwhm)
        classifier, names, colors = None, [], []
        if model:
            bundle = load_bundle(model)
            net = runtime.cached(bundle.cache_key, lambda: bundle.build().to(runtime.device))
            classifier, encoder = net, net.encoder
            names, colors = bundle.meta["classes"]["names"], bundle.meta["classes"]["colors"]
            provenance = f"backbone of model {bundle.path}"
            tile = bundle.meta["tile"]
        else:
            from .finetune import init_model
            torch.manual_seed(seed)
            seg, provenance, _ = init_model(preset_name, "light", 2, backbone)
            encoder = seg.encoder.to(runtime.device).eval()
            tile = 8 * encoder.cfg.patch_size
        pair_src = PairSource(src_a, src_b)
        supervised = bool(model) and bundle.meta.get("task") == "change"
        if supervised:  # a fine-tuned change model: the magnitude is its probability of change
            idx = bundle.meta["classes"]["names"].index(bundle.meta["change_class"])
            pair_in = PairInput(spec_a, spec_b, len(src_a.bands))
            cm = lambda x: net(x, pair_in).softmax(1)[:, idx:idx + 1]  # noqa: E731
            names, colors = [], []
            threshold = 0.5 if threshold == "otsu" else threshold
            measure = f"probability of change from model {bundle.path}"
        else:
            cm = ChangeModel(encoder, spec_a, spec_b, len(src_a.bands), pairs, classifier)
            progress(0.02, "calibrating the change measures")
            calibrate(cm, pair_src, tile, runtime.device)
            measure = "mean of feature distance" + (" and spectral angle" if len(pairs[0]) >= 3 else
                                                    " only (fewer than 3 shared bands)")
        result = _write_outputs(pair_src, cm, out_dir, names, colors, threshold, tile, runtime, progress, cancel,
                                outputs)
        progress(0.95, "vectorising the changed areas")
        polygons = polygonize(out_dir / "change.tif", out_dir / "magnitude.tif",
                              out_dir / "fromto.tif" if names else None, names, out_dir / "change.gpkg", min_area)
    except BaseException:
        for w in outputs:
            w.abort()
        for name in ("change.tif", "magnitude.tif", "fromto.tif", "change.gpkg"):
            for p in (out_dir / name, out_dir / f"{name}.aux.xml"):
                if p.exists() and p.stat().st_mtime >= t0 - 1:
                    p.unlink()
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    gt = georef(src_a.ds)[0]
    px_area = abs(gt[1] * gt[5] - gt[2] * gt[4])
    summary = {
        "before": str(before), "after": str(after), **facts,
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
        summary["transitions_ha"] = {f"{names[i]} → {names[j]}": round(int(result["fromto"][i, j]) * px_area / 1e4, 4)
                                     for i in range(K) for j in range(K) if result["fromto"][i, j]}
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1))
    outputs_list = [str(out_dir / n) for n in ("change.tif", "magnitude.tif", "change.gpkg", "summary.json")]
    if names:
        outputs_list.insert(2, str(out_dir / "fromto.tif"))
    warnings_out = [polygons["note"]] if polygons.get("note") else []
    return {**summary, "outputs": outputs_list, "warnings": warnings_out}


def _write_outputs(src: PairSource, cm: ChangeModel, out_dir: Path, names, colors, threshold, tile, runtime,
                   progress, cancel, writers: list) -> dict:
    """Pass 1 streams the magnitude (and class scores) to disk with a histogram; pass 2 thresholds it."""
    gt, proj = georef(src.a.ds)
    W, H = src.width, src.height
    K = len(names)
    mag_w = GeoTiffWriter(out_dir / "magnitude.tif", W, H, 1, gdal.GDT_Float32, gt, proj, nodata=float("nan"))
    writers.append(mag_w)
    if K:
        labels = [f"{a} → {b}" for a in names for b in names]
        palette = {0: (0, 0, 0, 0)}
        for i in range(K):
            for j in range(K):
                palette[i * K + j + 1] = (200, 200, 200) if i == j else hex_to_rgb(colors[j])
        ft_w = GeoTiffWriter(out_dir / "fromto.tif", W, H, 1, gdal.GDT_UInt16, gt, proj, nodata=0,
                             color_table=palette, category_names=["no data", *labels])
        writers.append(ft_w)
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

    stream_predictions(src, torch_model_fn(cm, runtime.device), 1 + 2 * K, on_rows, tile, tile // 4,
                       progress=lambda f, m: progress(0.05 + 0.8 * f, m), cancel=cancel)
    for w in writers:
        w.commit()
    valid = int(hist.sum())
    thr = otsu(hist) if threshold == "otsu" else float(threshold)
    change_w = GeoTiffWriter(out_dir / "change.tif", W, H, 1, gdal.GDT_Byte, gt, proj, nodata=NODATA,
                             color_table={0: (220, 220, 220, 0), 1: (215, 25, 28, 255), NODATA: (0, 0, 0, 0)},
                             category_names=["no change", "change"])
    writers.append(change_w)
    mag_ds = gdal.Open(str(out_dir / "magnitude.tif"))
    changed = 0
    for y0 in range(0, H, 256):
        if cancel and cancel():
            raise Cancelled("cancelled by the user")
        h = min(256, H - y0)
        m = mag_ds.ReadAsArray(0, y0, W, h)
        c = np.where(np.isnan(m), NODATA, (m > thr).astype(np.uint8)).astype(np.uint8)
        changed += int((c == 1).sum())
        change_w.write(c, 0, y0)
    mag_ds = None
    change_w.commit()
    return {"threshold": round(thr, 5), "changed": changed, "valid": valid, "fromto": fromto}


def polygonize(change_tif: Path, magnitude_tif: Path, fromto_tif: Path | None, names: list[str], out: Path,
               min_area: float) -> dict:
    """Changed areas as polygons (`gdal.Polygonize`) with area_m2, mean magnitude and from/to classes."""
    scratch = Path(tempfile.mkdtemp(prefix=".specaware-polygonize-", dir=out.parent))
    try:
        return _polygonize(change_tif, magnitude_tif, fromto_tif, names, out, min_area, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _scratch_raster(path: Path, like, dtype):
    """A tiled single-band GeoTIFF on the grid of `like`: full-size helper rasters live on disk, not in memory,
    so polygonizing a long flight line stays within the streaming driver's memory bound."""
    ds = gdal.GetDriverByName("GTiff").Create(str(path), like.RasterXSize, like.RasterYSize, 1, dtype,
                                              ["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"])
    ds.SetGeoTransform(like.GetGeoTransform())
    ds.SetProjection(like.GetProjection())
    return ds


def _polygonize(change_tif, magnitude_tif, fromto_tif, names, out: Path, min_area: float, scratch: Path) -> dict:
    ds = gdal.Open(str(change_tif))
    band = ds.GetRasterBand(1)
    W, H = ds.RasterXSize, ds.RasterYSize
    mem = _scratch_raster(scratch / "changed.tif", ds, gdal.GDT_Byte)
    for y0 in range(0, H, 256):
        h = min(256, H - y0)
        mem.GetRasterBand(1).WriteArray((band.ReadAsArray(0, y0, W, h) == 1).astype(np.uint8), 0, y0)
    tmp = out.with_name(f".{out.name}.tmp.gpkg")
    if tmp.exists():
        tmp.unlink()
    vds = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp))
    srs = osr.SpatialReference(wkt=ds.GetProjection()) if ds.GetProjection() else None
    lyr = vds.CreateLayer("change", srs, ogr.wkbPolygon)
    for name, kind in (("value", ogr.OFTInteger), ("area_m2", ogr.OFTReal), ("mean_magnitude", ogr.OFTReal),
                       ("from_class", ogr.OFTString), ("to_class", ogr.OFTString)):
        lyr.CreateField(ogr.FieldDefn(name, kind))
    gdal.Polygonize(mem.GetRasterBand(1), mem.GetRasterBand(1), lyr, 0)
    # Zonal statistics: burn each polygon's FID, then average the magnitude and count from/to codes per FID.
    fids = [f.GetFID() for f in lyr]
    ids = _scratch_raster(scratch / "ids.tif", ds, gdal.GDT_Int32)
    if fids:
        _burn_fids(ids, lyr)
    n = max(fids) + 1 if fids else 1
    sums, counts = np.zeros(n), np.zeros(n)
    K = len(names)
    codes = np.zeros((n, K * K + 1), np.int64) if fromto_tif else None
    mag = gdal.Open(str(magnitude_tif))
    ft = gdal.Open(str(fromto_tif)) if fromto_tif else None
    for y0 in range(0, H, 256):
        h = min(256, H - y0)
        fid = ids.ReadAsArray(0, y0, W, h).ravel()
        keep = fid > 0
        m = np.nan_to_num(mag.ReadAsArray(0, y0, W, h).ravel())
        np.add.at(sums, fid[keep], m[keep])
        np.add.at(counts, fid[keep], 1)
        if ft is not None:
            np.add.at(codes, (fid[keep], ft.ReadAsArray(0, y0, W, h).ravel()[keep].astype(int)), 1)
    kept = dropped = 0
    lyr.ResetReading()
    for f in list(lyr):
        area = f.GetGeometryRef().GetArea()
        if area < min_area:
            lyr.DeleteFeature(f.GetFID())
            dropped += 1
            continue
        i = f.GetFID()
        f.SetField("area_m2", round(area, 3))
        f.SetField("mean_magnitude", round(sums[i] / max(counts[i], 1), 5))
        if codes is not None and codes[i, 1:].any():
            c = int(codes[i, 1:].argmax())
            f.SetField("from_class", names[c // K])
            f.SetField("to_class", names[c % K])
        lyr.SetFeature(f)
        kept += 1
    vds = None
    tmp.replace(out)
    note = None
    if kept == 0:
        note = ("no changed area" + (f" of at least {min_area:g} m²" if min_area else "") +
                f": {out.name} is written with an empty layer")
    return {"count": kept, "dropped_below_min_area": dropped, "min_area_m2": min_area, "note": note}


def _burn_fids(ids_ds, layer) -> None:
    """Burn each feature's FID into `ids_ds` (0 = no polygon)."""
    layer.ResetReading()
    vds = gdal.GetDriverByName("Memory").Create("", 0, 0, 0, gdal.GDT_Unknown)
    tmp = vds.CreateLayer("ids", layer.GetSpatialRef(), ogr.wkbPolygon)
    tmp.CreateField(ogr.FieldDefn("fid_value", ogr.OFTInteger64))
    for f in layer:
        g = ogr.Feature(tmp.GetLayerDefn())
        g.SetGeometry(f.GetGeometryRef())
        g.SetField("fid_value", f.GetFID())
        tmp.CreateFeature(g)
    gdal.Rasterize(ids_ds, vds, layers=["ids"], attribute="fid_value")
