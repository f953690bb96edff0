"""Heat-map overlays for people: evaluation samples, calibration reports, the live listener."""

from __future__ import annotations

import cv2
import numpy as np


def overlay(image_bgr: np.ndarray, anomaly_map: np.ndarray, vmin: float, vmax: float, alpha: float = 0.45,
            label: str | None = None) -> np.ndarray:
    """Blend a JET-coloured ``anomaly_map`` (any size, resized to the image) over ``image_bgr`` (uint8).

    ``vmin``/``vmax`` fix the colour scale so overlays of different images are comparable.
    """
    h, w = image_bgr.shape[:2]
    m = cv2.resize(anomaly_map.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    norm = np.clip((m - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    heat = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_JET)
    out = cv2.addWeighted(image_bgr, 1 - alpha, heat, alpha, 0)
    if label:
        scale = max(0.35, w / 640)
        cv2.putText(out, label, (4, int(18 * scale) + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, label, (4, int(18 * scale) + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


def draw_mask_outline(image_bgr: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (0, 255, 0)) -> np.ndarray:
    """Draw the outline of a bool mask (resized to the image) on a copy of the image."""
    h, w = image_bgr.shape[:2]
    m = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = image_bgr.copy()
    cv2.drawContours(out, contours, -1, color, 1, cv2.LINE_AA)
    return out
