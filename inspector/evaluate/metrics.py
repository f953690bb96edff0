"""Pure anomaly-detection metrics: image/pixel AUROC (sklearn) and pixel AUPRO.

AUPRO: the per-region overlap (PRO) curve against the pixel false-positive rate, integrated from FPR 0
to ``max_fpr`` (default 0.3) and divided by ``max_fpr`` so that a perfect detector scores 1. Regions are
the 8-connected components of each ground-truth mask (OpenCV). An AUC below 0.5 is reported as it is,
never flipped.

Pixel metrics take the masks and maps of a set of images either stacked, ``(N, H, W)``, or as sequences
of 2-D arrays whose sizes may differ from image to image (each map at its own mask's resolution).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

Images = np.ndarray | Sequence[np.ndarray]


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` for binary ``labels``; NaN when only one class is present."""
    labels = np.asarray(labels).ravel().astype(bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64).ravel()))


def _pairs(masks: Images, maps: Images) -> list[tuple[np.ndarray, np.ndarray]]:
    """(bool mask, float map) per image; ValueError when counts or shapes differ."""
    if len(masks) != len(maps):
        raise ValueError(f"{len(masks)} masks but {len(maps)} maps")
    out = []
    for i, (m, a) in enumerate(zip(masks, maps, strict=True)):
        m, a = np.asarray(m, dtype=bool), np.asarray(a)
        if m.shape != a.shape:
            raise ValueError(f"image {i}: mask {m.shape} and map {a.shape} differ; resize the map to the mask")
        out.append((m, a))
    return out


def pixel_auroc(masks: Images, maps: Images) -> float:
    """Pixel AUROC over all pixels of ``masks`` (bool) and ``maps``, per image of the same shape."""
    pairs = _pairs(masks, maps)
    if not pairs:
        return float("nan")
    return auroc(np.concatenate([m.ravel() for m, _ in pairs]), np.concatenate([a.ravel() for _, a in pairs]))


def aupro(masks: Images, maps: Images, max_fpr: float = 0.3, num_thresholds: int = 1000) -> float:
    """Normalised area under the PRO curve up to ``max_fpr``.

    ``masks``: bool, ``maps``: float, per image of the same shape. NaN without any defect region or
    without any normal pixel.
    """
    pairs = _pairs(masks, maps)
    neg = np.concatenate([a[~m].astype(np.float64) for m, a in pairs]) if pairs else np.empty(0)
    if neg.size == 0:
        return float("nan")
    regions: list[np.ndarray] = []
    for m, a in pairs:
        if not m.any():
            continue
        n, lab = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
        regions.extend(a[lab == i].astype(np.float64) for i in range(1, n))
    if not regions:
        return float("nan")
    # Thresholds from high to low, spanning every score; fpr and pro are then non-decreasing.
    lo = float(min(a.min() for _, a in pairs))
    hi = float(max(a.max() for _, a in pairs))
    thr = np.linspace(hi, lo, num_thresholds)
    thr = np.concatenate([[np.inf], thr, [-np.inf]])
    neg_sorted = np.sort(neg)
    fpr = 1.0 - np.searchsorted(neg_sorted, thr, side="right") / neg.size  # share of normals > t
    pro = np.zeros_like(thr)
    for r in regions:
        rs = np.sort(r)
        pro += 1.0 - np.searchsorted(rs, thr, side="right") / rs.size
    pro /= len(regions)
    return _partial_auc(fpr, pro, max_fpr) / max_fpr


def _partial_auc(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoidal area under (x, y) for x in [0, x_max], interpolating y at x_max. x non-decreasing."""
    keep = x <= x_max
    xs, ys = x[keep], y[keep]
    if xs.size == 0 or xs[-1] < x_max:
        # y at x_max, linearly interpolated between the last point below and the first above.
        i = int(np.searchsorted(x, x_max, side="right"))
        if 0 < i < x.size and x[i] != x[i - 1]:
            y_end = y[i - 1] + (y[i] - y[i - 1]) * (x_max - x[i - 1]) / (x[i] - x[i - 1])
        else:
            y_end = y[min(i, x.size - 1)]
        xs, ys = np.append(xs, x_max), np.append(ys, y_end)
    return float(np.trapezoid(ys, xs))
