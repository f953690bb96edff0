"""The decision rule, written once: calibration fits it, checks it and reports it; the daemon applies it.

- An image FAILS iff ``score >= image_threshold`` (scores and thresholds are float32 values, see
  :mod:`inspector.calibrate.thresholds`); a score that is not finite is no decision at all
  (:class:`DecisionError`), never a PASS.
- The normalised score is ``score / image_threshold``: 1.0 is the pass/fail line whatever the model's scale.
- Defect regions are the 8-connected components of ``anomaly_map >= pixel_threshold`` with at least
  ``min_region_area`` pixels at the map's resolution (OpenCV ``connectedComponentsWithStats``).
- A FAIL always shows where: when no component passes the area filter, the region around the map's
  peak is given instead (``peak_component``), and marked as such by the caller.

Pure NumPy/OpenCV, no scipy: the daemon imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inspector.errors import DecisionError


def fails(scores: np.ndarray, image_threshold: float) -> np.ndarray:
    """The image decision for an array of scores: bool array, True where ``score >= image_threshold``."""
    return np.asarray(scores) >= image_threshold


def fails_one(score: float, image_threshold: float) -> bool:
    """The decision for one score; DecisionError when the score is NaN or infinite."""
    if not np.isfinite(score):
        raise DecisionError(f"the image score is {score}, not a finite number: the model output is broken")
    return bool(score >= image_threshold)


def normalized_score(score: float | np.ndarray, image_threshold: float) -> float | np.ndarray:
    """``score / image_threshold`` (float64); +inf for a threshold <= 0, where every part fails."""
    if image_threshold <= 0:
        return np.full(np.shape(score), np.inf) if isinstance(score, np.ndarray) else float("inf")
    if isinstance(score, np.ndarray):
        return score.astype(np.float64) / image_threshold
    return float(score) / image_threshold


@dataclass(frozen=True)
class Components:
    """Connected components of a thresholded ``(h, w)`` map.

    ``labels``: int32 ``(h, w)``, 0 = background; ``stats``: OpenCV's ``(n, 5)`` x, y, w, h, area per label
    (row 0 = background); ``kept``: labels with area >= the minimum, largest first.
    """

    labels: np.ndarray
    stats: np.ndarray
    kept: tuple[int, ...]

    def mask(self) -> np.ndarray:
        """Bool ``(h, w)`` of the kept components only (specks below the minimum area are not in it)."""
        return np.isin(self.labels, self.kept) if self.kept else np.zeros(self.labels.shape, bool)

    def largest_area(self) -> int:
        """Area in pixels of the largest component (kept or not), 0 when there is none."""
        return int(self.stats[1:, cv2.CC_STAT_AREA].max()) if len(self.stats) > 1 else 0


def components(anomaly_map: np.ndarray, pixel_threshold: float, min_area: int = 1) -> Components:
    """The components of ``anomaly_map >= pixel_threshold`` (8-connectivity), those >= ``min_area`` kept."""
    amap = np.asarray(anomaly_map)
    if amap.ndim != 2:
        raise DecisionError(f"an anomaly map must be (h, w), got shape {amap.shape}")
    binary = (amap >= pixel_threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    areas = stats[:, cv2.CC_STAT_AREA]
    kept = sorted((i for i in range(1, n) if areas[i] >= max(1, min_area)), key=lambda i: -int(areas[i]))
    return Components(labels, stats, tuple(kept))


def peak_component(anomaly_map: np.ndarray) -> Components:
    """The region around the map's maximum: the component holding the argmax of the pixels at or above
    half-way between the map's median and its maximum (its half-prominence area). One component, kept."""
    amap = np.asarray(anomaly_map, dtype=np.float32)
    if amap.ndim != 2 or amap.size == 0:
        raise DecisionError(f"an anomaly map must be a non-empty (h, w), got shape {amap.shape}")
    if not np.isfinite(amap).all():
        raise DecisionError("the anomaly map contains NaN or infinity: the model output is broken")
    top = float(amap.max())
    level = (float(np.median(amap)) + top) / 2
    binary = (amap >= level).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    y, x = np.unravel_index(int(np.argmax(amap)), amap.shape)
    peak = int(labels[y, x])
    return Components(np.where(labels == peak, 1, 0).astype(np.int32), stats[[0, peak]], (1,))
