"""Accuracy from a confusion matrix: OA, AA, Cohen's κ, per-class precision, recall, F1 and IoU, and mIoU; 95 %
intervals by a bootstrap over validation polygons; the warnings an honest report needs; and error-adjusted class
areas from an independent sample (Olofsson et al. 2014, the stratified estimator)."""
from __future__ import annotations

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
BOOTSTRAP_DRAWS = 1000
FEW_UNITS = 10  # fewer validation polygons than this: the intervals are rough
FEW_PIXELS = 30  # fewer validation pixels of a class than this: its F1 says little


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """[K, K] counts, rows = reference class, columns = predicted; ids 1…K, 0 (unlabelled) is ignored."""
    t, p = np.asarray(truth).ravel(), np.asarray(pred).ravel()
    keep = (t > 0) & (p > 0)
    idx = (t[keep].astype(np.int64) - 1) * num_classes + (p[keep].astype(np.int64) - 1)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.full(np.shape(a), np.nan), where=np.asarray(b) > 0)


def _clean(x):
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def _oa_kappa_f1(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OA, κ and per-class F1 of one or many confusion matrices [..., K, K] (NaN where undefined)."""
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum(axis=(-2, -1))
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    ref, predicted = cm.sum(axis=-1), cm.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        oa = tp.sum(axis=-1) / n
        pe = (ref * predicted).sum(axis=-1) / n ** 2
        kappa = np.where(pe < 1, (oa - pe) / (1 - pe), np.nan)
        f1 = 2 * tp / (ref + predicted)
    return oa, kappa, f1


def accuracy(cm: np.ndarray, names: list[str]) -> dict:
    """All the scores of a confusion matrix; classes absent from the reference are left out of AA and mIoU."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    ref, predicted = cm.sum(axis=1), cm.sum(axis=0)
    recall, precision = _ratio(tp, ref), _ratio(tp, predicted)
    iou = _ratio(tp, ref + predicted - tp)
    present = ref > 0
    oa, kappa, f1 = _oa_kappa_f1(cm)
    return {
        "pixels": int(cm.sum()), "oa": _clean(oa), "aa": _clean(np.nanmean(recall[present]) if present.any() else None),
        "kappa": _clean(kappa), "miou": _clean(np.nanmean(iou[present]) if present.any() else None),
        "per_class": {name: {"precision": _clean(precision[i]), "recall": _clean(recall[i]), "f1": _clean(f1[i]),
                             "iou": _clean(iou[i]), "reference_pixels": int(ref[i])} for i, name in enumerate(names)},
        "confusion": {"rows": "reference", "columns": "predicted", "classes": names,
                      "matrix": cm.astype(np.int64).tolist()},
    }


def score(truth: np.ndarray, pred: np.ndarray, names: list[str]) -> dict:
    return accuracy(confusion_matrix(truth, pred, len(names)), names)


def bootstrap_intervals(truth: np.ndarray, pred: np.ndarray, units: np.ndarray | None, names: list[str],
                        draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> dict:
    """95 % percentile intervals of OA, κ and each class's F1.

    The validation units (polygons; `units` gives each pixel's, 0 = none) are resampled with replacement within
    each reference class, so the pixels of one polygon, which look alike, count as one sample and not as many.
    Without units, or when a class has a single polygon (nothing to resample), every pixel is its own unit and
    the interval is too narrow: the method says so."""
    t, p = np.asarray(truth).ravel(), np.asarray(pred).ravel()
    keep = (t > 0) & (p > 0)
    t, p = t[keep].astype(np.int64), p[keep].astype(np.int64)
    u = np.asarray(units).ravel()[keep] if units is not None else None
    if u is not None and any(len(np.unique(u[t == c])) < 2 for c in np.unique(t)):
        u = None
    kind = "polygons" if u is not None else "pixels"
    u = u if u is not None else np.arange(1, len(t) + 1)
    K = len(names)
    ids, inverse = np.unique(u, return_inverse=True)
    cms = np.zeros((len(ids), K * K))
    np.add.at(cms, (inverse, (t - 1) * K + (p - 1)), 1)
    unit_class = np.zeros(len(ids), np.int64)
    np.maximum.at(unit_class, inverse, t)  # a polygon holds one class
    rng = np.random.default_rng(seed)
    weights = np.zeros((draws, len(ids)))
    for c in np.unique(unit_class):
        members = np.flatnonzero(unit_class == c)
        picks = rng.integers(0, len(members), (draws, len(members)))
        np.add.at(weights, (np.arange(draws)[:, None], members[picks]), 1)
    oa, kappa, f1 = _oa_kappa_f1((weights @ cms).reshape(draws, K, K))
    lo_hi = (lambda a: [_clean(np.nanpercentile(a, 2.5)), _clean(np.nanpercentile(a, 97.5))]
             if np.isfinite(a).any() else [None, None])
    per_class_units = {names[c - 1]: int((unit_class == c).sum()) for c in range(1, K + 1)}
    single = kind == "pixels" and units is not None  # polygons were known, but a class had only one
    method = f"bootstrap over {len(ids)} validation {kind}, resampled within each class ({draws} draws)"
    if single:
        method += ("; a class has a single validation polygon, so pixels are resampled as if independent and the "
                   "true interval is wider")
    return {"level": 0.95, "method": method, "units": len(ids), "unit_kind": kind, "single_polygon_class": single,
            "units_per_class": per_class_units, "oa": lo_hi(oa), "kappa": lo_hi(kappa),
            "f1": {name: lo_hi(f1[:, i]) for i, name in enumerate(names)}}


def near_boundary(class_map: np.ndarray, radius: int = 2) -> np.ndarray:
    """Pixels with another class (of the map; 0 = no data is ignored) within `radius` px."""
    m = np.asarray(class_map)
    H, W = m.shape
    lo = np.where(m > 0, m, np.iinfo(np.int32).max).astype(np.int32)
    hi = m.astype(np.int32)
    pad_lo = np.pad(lo, radius, mode="edge")
    pad_hi = np.pad(hi, radius, mode="edge")
    mn, mx = lo.copy(), hi.copy()
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            mn = np.minimum(mn, pad_lo[dy:dy + H, dx:dx + W])
            mx = np.maximum(mx, pad_hi[dy:dy + H, dx:dx + W])
    return (mx > mn) & (m > 0)


def accuracy_warnings(acc: dict, intervals: dict, boundary: tuple[float, float] | None = None) -> list[str]:
    """Sentences for a report when its accuracy rests on too little, or on easy pixels only.

    `boundary` is (share of validation pixels near a class boundary of the map, share of all mapped pixels)."""
    out = []
    few = [f"{n} ({c['reference_pixels']} px)" for n, c in acc["per_class"].items()
           if 0 < c["reference_pixels"] < FEW_PIXELS]
    if few:
        out.append(f"few validation pixels for {', '.join(few)}: fewer than {FEW_PIXELS}, so their F1 says little; "
                   "draw more validation polygons for them")
    if intervals["single_polygon_class"]:
        out.append("a class has a single validation polygon: the 95 % intervals treat its pixels as independent and "
                   "are too narrow; hold out at least two polygons per class")
    elif intervals["unit_kind"] == "polygons" and intervals["units"] < FEW_UNITS:
        out.append(f"the accuracy rests on {intervals['units']} validation polygons only, so its 95 % interval is "
                   f"rough (OA {_pct(intervals['oa'])}); draw at least {FEW_UNITS} validation "
                   "polygons spread over the scene")
    if boundary is not None:
        near, overall = boundary
        if overall > 0.02 and near < 0.25 * overall:
            out.append(f"the validation pixels lie far from class boundaries ({100 * near:.0f} % are within 2 px of "
                       f"one, against {100 * overall:.0f} % of the map): mixed and edge pixels are not measured, so "
                       "expect the map's accuracy to be lower than this; add validation polygons across boundaries")
    return out


def _pct(pair) -> str:
    return "–" if pair[0] is None else f"{100 * pair[0]:.1f}–{100 * pair[1]:.1f} %"


def boundary_shares(class_map: np.ndarray, validation: np.ndarray) -> tuple[float, float] | None:
    """(share of the validation pixels within 2 px of a class boundary of `class_map`, share of all its mapped
    pixels), or None when the map covers no validation pixel."""
    near = near_boundary(class_map)
    mapped = class_map > 0
    val = validation & mapped
    return (float(near[val].mean()), float(near[mapped].mean())) if val.any() else None


def honest_accuracy(truth: np.ndarray, pred: np.ndarray, names: list[str], units: np.ndarray | None = None,
                    boundary: tuple[float, float] | None = None, seed: int = 0) -> dict:
    """`score` with 95 % intervals (polygons as the sampling units) and the warnings of `accuracy_warnings`."""
    acc = score(truth, pred, names)
    acc["intervals"] = bootstrap_intervals(truth, pred, units, names, seed=seed)
    if boundary is not None:
        acc["near_boundary"] = {"validation": round(boundary[0], 4), "map": round(boundary[1], 4)}
    acc["warnings"] = accuracy_warnings(acc, acc["intervals"], boundary)
    return acc


def stratified_areas(cm: np.ndarray, mapped_pixels, names: list[str], pixel_area_m2: float | None) -> dict:
    """Error-adjusted class areas, user's, producer's and overall accuracy with 95 % intervals from an independent
    sample, the map classes being the strata (Olofsson et al. 2014, Remote Sens. Environ. 148, eqs. 2–10).

    `cm` has rows = reference and columns = map class (as `confusion_matrix`); `mapped_pixels` holds each class's
    pixel count in the map. Areas are in hectares when `pixel_area_m2` is known, else in pixels."""
    n = np.asarray(cm, dtype=np.float64).T  # Olofsson's layout: rows = map class i, columns = reference class j
    N = np.asarray(mapped_pixels, dtype=np.float64)
    total = N.sum()
    W = N / total
    n_i = n.sum(axis=1)
    sampled = n_i > 0
    share = np.divide(n, n_i[:, None], out=np.zeros_like(n), where=sampled[:, None])  # n_ij / n_i.
    p = W[:, None] * share  # estimated area proportion of map class i and reference class j
    p_j = p.sum(axis=0)
    dof = np.where(n_i > 1, n_i - 1, np.nan)
    cell_var = (W ** 2)[:, None] * share * (1 - share) / dof[:, None]  # eq. 10's terms
    se_p_j = np.sqrt(np.nansum(cell_var, axis=0))
    users = np.divide(np.diag(n), n_i, out=np.full(len(N), np.nan), where=sampled)
    producers = _ratio(np.diag(p), p_j)
    oa = float(np.trace(p))
    se_oa = float(np.sqrt(np.nansum(W ** 2 * users * (1 - users) / dof)))
    se_users = np.sqrt(users * (1 - users) / dof)
    N_j = total * p_j  # estimated reference pixels of class j
    se_producers = np.full(len(N), np.nan)
    for j in range(len(N)):
        if N_j[j] <= 0 or not sampled[j]:
            continue
        own = N[j] ** 2 * (1 - producers[j]) ** 2 * users[j] * (1 - users[j]) / dof[j]
        others = sum(N[i] ** 2 * share[i, j] * (1 - share[i, j]) / dof[i] for i in range(len(N))
                     if i != j and sampled[i] and np.isfinite(dof[i]))
        se_producers[j] = np.sqrt((own + producers[j] ** 2 * others) / N_j[j] ** 2)
    unit = pixel_area_m2 / 1e4 if pixel_area_m2 else 1.0
    interval = (lambda v, se: [_clean(v - Z95 * se), _clean(v + Z95 * se)] if np.isfinite(se) else [None, None])
    unsampled = [names[i] for i in range(len(N)) if N[i] > 0 and not sampled[i]]
    return {
        "method": "stratified estimator with the map classes as strata (Olofsson et al. 2014), 95 % intervals; it "
                  "assumes the validation pixels are a random sample within each map class (hand-drawn polygons "
                  "are not, and then the intervals are too narrow)",
        "unit": "ha" if pixel_area_m2 else "pixels", "sample_pixels": int(n.sum()),
        "overall_accuracy": {"estimate": _clean(oa), "ci95": interval(oa, se_oa)},
        "classes": {name: {"mapped": _clean(N[j] * unit), "adjusted": _clean(total * p_j[j] * unit),
                           "ci95": interval(total * p_j[j] * unit, total * se_p_j[j] * unit),
                           "margin": _clean(Z95 * total * se_p_j[j] * unit),
                           "users_accuracy": {"estimate": _clean(users[j]), "ci95": interval(users[j], se_users[j])},
                           "producers_accuracy": {"estimate": _clean(producers[j]),
                                                  "ci95": interval(producers[j], se_producers[j])},
                           "sample_pixels": int(n_i[j])}
                    for j, name in enumerate(names)},
        "warnings": [f"map class(es) {', '.join(unsampled)} have no validation sample: their error cannot be "
                     "estimated and the adjusted areas are biased; add validation polygons in them"] if unsampled
        else [],
    }
