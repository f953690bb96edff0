"""Pure decision logic: a frame's (score, anomaly map) plus the product's calibration -> PASS/FAIL and regions.

Rule (the calibration's, see inspector/calibration_record.py): FAIL iff ``score >= image_threshold``;
defect regions are the 8-connected components of ``anomaly_map >= pixel_threshold`` with at least
``min_region_area`` pixels at mask resolution (OpenCV ``connectedComponentsWithStats``).

The anomaly map covers the model's input: the ROI of the frame, or the whole frame when there is no ROI,
stretched to the mask grid. Boxes and areas are mapped back to frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from inspector.protocol.messages import Region

# Regions listed in a result, largest first; the mask still shows every region that passed the area filter.
MAX_REGIONS = 32


class Thresholds(Protocol):
    """What a decision needs from a calibration record (inspector.calibrate.record.CalibrationRecord)."""

    id: str
    image_threshold: float
    pixel_threshold: float
    min_region_area: int


@dataclass(frozen=True)
class Decision:
    """``decision`` PASS/FAIL, the raw and normalised score, the regions and the bool mask ``(h, w)``."""

    decision: str
    score: float
    normalized_score: float
    threshold: float
    regions: tuple[Region, ...]
    mask: np.ndarray


def decide(score: float, anomaly_map: np.ndarray, cal: Thresholds, frame_hw: tuple[int, int],
           roi: tuple[int, int, int, int] | None = None) -> Decision:
    """Decide one frame.

    score: the image score; anomaly_map: ``(h, w)`` float map at mask resolution; frame_hw: (H, W) of the
    frame in pixels; roi: (x, y, w, h) of the frame the model saw, None = whole frame.
    """
    amap = np.asarray(anomaly_map, dtype=np.float32)
    if amap.ndim != 2:
        raise ValueError(f"anomaly_map must be (h, w), got shape {amap.shape}")
    score = float(score)
    threshold = float(cal.image_threshold)
    regions, keep = find_regions(amap, amap >= cal.pixel_threshold, int(cal.min_region_area), frame_hw, roi)
    decision = "FAIL" if score >= threshold else "PASS"
    normalized = score / threshold if threshold > 0 else float("inf")
    return Decision(decision, score, normalized, threshold, regions, keep)


def find_regions(amap: np.ndarray, mask: np.ndarray, min_area: int, frame_hw: tuple[int, int],
                 roi: tuple[int, int, int, int] | None) -> tuple[tuple[Region, ...], np.ndarray]:
    """Connected components of ``mask`` with area >= ``min_area`` (mask pixels), largest first, in frame pixels,
    and the bool mask ``(h, w)`` of just those components (small specks are not published)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    h, w = mask.shape
    ox, oy, rw, rh = roi if roi is not None else (0, 0, frame_hw[1], frame_hw[0])
    sx, sy = rw / w, rh / h
    areas = stats[:, cv2.CC_STAT_AREA]
    kept = [i for i in range(1, n) if areas[i] >= max(1, min_area)]
    kept.sort(key=lambda i: -int(areas[i]))
    out = []
    for i in kept[:MAX_REGIONS]:
        x, y, bw, bh, area = (int(v) for v in stats[i])
        peak = float(amap[labels == i].max())
        x0, y0 = int(np.floor(ox + x * sx)), int(np.floor(oy + y * sy))
        x1, y1 = int(np.ceil(ox + (x + bw) * sx)), int(np.ceil(oy + (y + bh) * sy))
        out.append(Region((x0, y0, x1 - x0, y1 - y0), int(round(area * sx * sy)), peak))
    keep = np.isin(labels, kept) if kept else np.zeros(mask.shape, bool)
    return tuple(out), keep


def mask_image(mask: np.ndarray, space: str, frame_hw: tuple[int, int],
               roi: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The mask as ``uint8`` 0/255: at mask resolution (``space='mask'``) or placed in a frame-sized image."""
    m = mask.astype(np.uint8) * 255
    if space == "mask":
        return m
    H, W = frame_hw
    x, y, w, h = roi if roi is not None else (0, 0, W, H)
    out = np.zeros((H, W), np.uint8)
    out[y : y + h, x : x + w] = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
    return out


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 image (fast compression: masks are mostly zeros)."""
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {image.shape}")
    return buf.tobytes()
