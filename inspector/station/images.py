"""The station's pictures: the live frame with its defect regions outlined, and reject thumbnails with the mask.

Decoded and drawn with OpenCV on the station's own CPU, off the daemon; each picture is drawn once and cached
by the caller. Small frames are scaled up first, so outlines stay crisp on a line screen.
"""

from __future__ import annotations

import cv2
import numpy as np

from inspector.protocol.messages import Preview, Region, Result

# BGR, the page's colours: PASS green, FAIL red, ERROR amber; outlines yellow (visible on every colour).
COLORS = {"PASS": (80, 200, 60), "FAIL": (60, 60, 235), "ERROR": (0, 170, 255)}
OUTLINE = (0, 230, 255)
MIN_WIDTH = 256  # smaller previews are scaled up first, so outlines stay crisp


def _decode(data: bytes, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags) if data else None


def _jpeg(img: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {img.shape}")
    return buf.tobytes()


def _upscale(img: np.ndarray, min_width: int) -> tuple[np.ndarray, float]:
    h, w = img.shape[:2]
    if w >= min_width:
        return img, 1.0
    f = min_width / w
    return cv2.resize(img, (min_width, round(h * f)), interpolation=cv2.INTER_LINEAR), f


def _boxes(img: np.ndarray, regions: tuple[Region, ...], scale: float) -> None:
    t = max(2, img.shape[1] // 240)
    for reg in regions:
        x, y, w, h = (int(round(v * scale)) for v in reg.bbox)
        cv2.rectangle(img, (x - t, y - t), (x + w + t, y + h + t), OUTLINE, t, cv2.LINE_AA)


def preview_scale(header: Preview) -> float:
    """From frame pixels (the regions) to the live preview's: its width over the frame's (1.0 if either is 0)."""
    fw = header.frame_size[0] or header.width
    return header.width / fw if fw else 1.0


def live_jpeg(header: Preview, jpeg: bytes) -> bytes:
    """The live preview with its result's regions outlined (boxes scaled from frame pixels)."""
    img = _decode(jpeg)
    if img is None:
        raise ValueError(f"live preview of frame {header.frame_id} is not a decodable JPEG")
    img, f = _upscale(img, MIN_WIDTH)
    _boxes(img, header.regions, f * preview_scale(header))
    return _jpeg(img)


def frame_mask(result: Result, mask_png: bytes | None) -> np.ndarray | None:
    """The published mask as ``uint8 (H, W)`` 0/255 at frame size (a 'mask'-space mask placed in its ROI)."""
    if mask_png is None or result.mask is None or result.frame_size is None:
        return None
    m = _decode(mask_png, cv2.IMREAD_GRAYSCALE)
    if m is None:
        return None
    W, H = result.frame_size
    if result.mask.space == "frame":
        return m if m.shape == (H, W) else cv2.resize(m, (W, H), interpolation=cv2.INTER_NEAREST)
    x, y, w, h = result.mask.roi or (0, 0, W, H)
    full = np.zeros((H, W), np.uint8)
    full[y : y + h, x : x + w] = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
    return full


def png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {img.shape}")
    return buf.tobytes()


def reject_jpeg(result: Result, picture: bytes | None, mask_png: bytes | None, width: int = 360) -> bytes:
    """A gallery picture: the frame (PNG, or the daemon's scaled JPEG; a dark canvas until one arrives), the
    mask tinted red and outlined."""
    frame = _decode(picture) if picture else None
    fw, fh = result.frame_size or (256, 256)
    if frame is None:
        frame = np.full((fh, fw, 3), 24, np.uint8)
    mask = frame_mask(result, mask_png)
    scale = width / frame.shape[1]
    img = cv2.resize(frame, (width, round(frame.shape[0] * scale)),
                     interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    scale = width / fw  # from frame pixels (the mask, the regions) to this picture
    if mask is not None:
        m = cv2.resize(mask, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        tint = img.copy()
        tint[m] = COLORS["FAIL"]
        img = cv2.addWeighted(img, 0.6, tint, 0.4, 0)
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(img, contours, -1, OUTLINE, 2, cv2.LINE_AA)
    else:
        _boxes(img, result.regions, scale)
    return _jpeg(img)
