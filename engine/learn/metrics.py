"""Accuracy from a confusion matrix: OA, AA, Cohen's κ, per-class precision, recall, F1 and IoU, and mIoU."""
from __future__ import annotations

import numpy as np


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """[K, K] counts, rows = reference class, columns = predicted; ids 1…K, 0 (unlabelled) is ignored."""
    t, p = np.asarray(truth).ravel(), np.asarray(pred).ravel()
    keep = (t > 0) & (p > 0)
    idx = (t[keep].astype(np.int64) - 1) * num_classes + (p[keep].astype(np.int64) - 1)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.full(np.shape(a), np.nan), where=np.asarray(b) > 0)


def accuracy(cm: np.ndarray, names: list[str]) -> dict:
    """All the scores of a confusion matrix; classes absent from the reference are left out of AA and mIoU."""
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    tp = np.diag(cm)
    ref, predicted = cm.sum(axis=1), cm.sum(axis=0)
    recall, precision = _ratio(tp, ref), _ratio(tp, predicted)
    f1 = _ratio(2 * tp, ref + predicted)
    iou = _ratio(tp, ref + predicted - tp)
    present = ref > 0
    oa = float(tp.sum() / n) if n else float("nan")
    pe = float((ref * predicted).sum() / n**2) if n else float("nan")
    kappa = (oa - pe) / (1 - pe) if n and pe < 1 else float("nan")

    def clean(x):
        return None if x is None or not np.isfinite(x) else round(float(x), 6)

    return {
        "pixels": int(n), "oa": clean(oa), "aa": clean(np.nanmean(recall[present]) if present.any() else None),
        "kappa": clean(kappa), "miou": clean(np.nanmean(iou[present]) if present.any() else None),
        "per_class": {name: {"precision": clean(precision[i]), "recall": clean(recall[i]), "f1": clean(f1[i]),
                             "iou": clean(iou[i]), "reference_pixels": int(ref[i])} for i, name in enumerate(names)},
        "confusion": {"rows": "reference", "columns": "predicted", "classes": names,
                      "matrix": cm.astype(np.int64).tolist()},
    }


def score(truth: np.ndarray, pred: np.ndarray, names: list[str]) -> dict:
    return accuracy(confusion_matrix(truth, pred, len(names)), names)
