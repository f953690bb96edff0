"""Pure decision logic: a frame's (score, anomaly map) plus the product's calibration -> PASS/FAIL and regions.

The rule itself (FAIL iff ``score >= image_threshold``, the normalised score, the regions) is written once,
in :mod:`inspector.calibrate.rule`; this module applies it to one frame and maps what it finds to frame
pixels. A FAIL with no region above the pixel threshold carries the region around the map's peak, of
kind ``peak``. A non-finite score or map raises DecisionError (the pipeline publishes ERROR, never PASS).

The anomaly map covers the model's input: the ROI of the frame, or the whole frame when there is no ROI,
stretched to the mask grid. Boxes and areas are mapped back to frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from inspector.calibrate import rule
from inspector.errors import DecisionError
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
    score = float(score)
    threshold = float(cal.image_threshold)
    failed = rule.fails_one(score, threshold)
    if not np.isfinite(amap).all():
        raise DecisionError("the anomaly map contains NaN or infinity: the model output is broken")
    comps = rule.components(amap, cal.pixel_threshold, int(cal.min_region_area))
    kind = "defect"
    if failed and not comps.kept:
        comps, kind = rule.peak_component(amap), "peak"
    regions = frame_regions(amap, comps, frame_hw, roi, kind)
    return Decision("FAIL" if failed else "PASS", score, float(rule.normalized_score(score, threshold)), threshold,
                    regions, comps.mask())


def frame_regions(amap: np.ndarray, comps: rule.Components, frame_hw: tuple[int, int],
                  roi: tuple[int, int, int, int] | None, kind: str = "defect") -> tuple[Region, ...]:
    """The kept components of ``amap``'s grid as regions in frame pixels, largest first (at most MAX_REGIONS)."""
    h, w = amap.shape
    ox, oy, rw, rh = roi if roi is not None else (0, 0, frame_hw[1], frame_hw[0])
    sx, sy = rw / w, rh / h
    out = []
    for i in comps.kept[:MAX_REGIONS]:
        x, y, bw, bh, area = (int(v) for v in comps.stats[i])
        peak = float(amap[comps.labels == i].max())
        x0, y0 = int(np.floor(ox + x * sx)), int(np.floor(oy + y * sy))
        x1, y1 = int(np.ceil(ox + (x + bw) * sx)), int(np.ceil(oy + (y + bh) * sy))
        out.append(Region((x0, y0, x1 - x0, y1 - y0), int(round(area * sx * sy)), peak, kind))
    return tuple(out)


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
        raise DecisionError(f"PNG encoding failed for an image of shape {image.shape}")
    return buf.tobytes()
