"""The preview topic: low-rate images of inspected frames for live views, encoded off the inspection path.

The output thread calls :meth:`Previewer.offer` after publishing a result: it only decides (pure
:class:`PreviewRate`) and drops a reference into a one-frame mailbox (live) or a short queue (rejects), never
waiting. The preview thread encodes (JPEG for live frames, scaled to ``preview.width``; PNG at full size for
FAIL/ERROR frames, so a review stores the very pixels inspected) and hands the message back to the output
thread's side queue, which owns the PUB socket. A busy machine therefore skips previews, never results.

Lossless frames are dear (PNG: about 2 ms for 256x256, 40-65 ms for 1920x1080 on one core), so they are spent
from a CPU budget (pure :class:`CpuBudget`, ``preview.reject_cpu`` of one core): a reject that comes while the
budget is spent gets a JPEG at the live width instead, shown in the gallery but not reviewable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from inspector.protocol.messages import Preview, Result
from inspector.stream.config import PreviewConfig

log = logging.getLogger(__name__)


class PreviewRate:
    """Is a live preview due at monotonic ``now``? At most ``rate_fps`` per second on average; 0 = never."""

    def __init__(self, rate_fps: float) -> None:
        self.interval = 1.0 / rate_fps if rate_fps > 0 else None
        self.next: float | None = None

    def due(self, now: float) -> bool:
        if self.interval is None:
            return False
        if self.next is not None and now < self.next:
            return False
        # Keep the schedule (5 per second from frames at 15 per second), but never bank a backlog after a pause.
        late = self.next is None or now - self.next >= self.interval
        self.next = now + self.interval if late else self.next + self.interval
        return True


class CpuBudget:
    """A token bucket of CPU seconds: it refills at ``share`` seconds per second (a share of one core), up to
    ``burst`` seconds. ``allows(now)`` while it is not in debt; ``spend(seconds)`` after the work."""

    def __init__(self, share: float, burst: float = 0.1) -> None:
        self.share, self.burst = share, burst
        self.level, self.at = burst if share > 0 else 0.0, None

    def _refill(self, now: float) -> None:
        if self.at is not None:
            self.level = min(self.burst, self.level + (now - self.at) * self.share)
        self.at = now

    def allows(self, now: float) -> bool:
        self._refill(now)
        return self.share > 0 and self.level > 0

    def spend(self, seconds: float, now: float) -> None:
        self._refill(now)
        self.level -= seconds


def scaled(image: np.ndarray, width: int) -> np.ndarray:
    """``image`` (H, W, 3) scaled to ``width`` pixels wide (aspect kept); never scaled up; 0 = as is."""
    h, w = image.shape[:2]
    if not width or w <= width:
        return image
    return cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def encode_preview(result: Result, image: np.ndarray, reason: str, cfg: PreviewConfig, ts: float,
                   lossless: bool = True) -> tuple[Preview, bytes]:
    """The Preview header and its image bytes for ``result``'s frame ``image`` (uint8 (H, W, 3) BGR): a reject
    losslessly at full size (PNG), unless not ``lossless``; a live frame (or that reject) as a scaled JPEG."""
    h, w = image.shape[:2]
    if reason == "reject" and lossless:
        out, enc = image, "png"
        # OpenCV's default PNG settings: on bottle, KSDD and the demo's frames, 256x256 to 1920x1080, 1.3-2.2x
        # faster than Huffman-only deflate, about as large (OpenCV 4.14 and 5.0; tests/stream/png_bench.py).
        ok, buf = cv2.imencode(".png", image)
    else:
        out, enc = scaled(image, cfg.width), "jpeg"
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
    if not ok:
        raise ValueError(f"{enc} encoding failed for a frame of shape {image.shape}")
    msg = Preview(result.line, ts, result.frame_id, result.product, result.decision, result.normalized_score,
                  result.regions, (w, h), out.shape[1], out.shape[0], enc, reason, result.capture_ts)
    return msg, buf.tobytes()


class Previewer:
    """``offer`` from the output thread; ``start``/``close`` the encoding thread. ``send(msg, bytes)`` must not
    block (the output thread's side queue)."""

    def __init__(self, cfg: PreviewConfig, send: Callable[[Preview, bytes], None],
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.cfg, self.send, self.clock, self.wall = cfg, send, clock, wall
        self.rate = PreviewRate(cfg.rate_fps)
        self.budget = CpuBudget(cfg.reject_cpu)
        self._live: tuple[Result, np.ndarray] | None = None
        self._rejects: deque[tuple[Result, np.ndarray]] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.sent = {"live": 0, "reject": 0}
        self.skipped_rejects = 0
        self.lossy_rejects = 0  # rejects sent as JPEG: the lossless budget was spent
        self.failures = 0
        self.cpu_s = 0.0  # CPU seconds this thread spent encoding and handing over previews
        # Set by the output thread: does anybody subscribe to the preview topic? Nothing is encoded while not.
        self.watched = True
        self.unwatched = 0  # previews not encoded because nobody subscribed

    @property
    def dead(self) -> bool:
        """Started, not closed, and no longer running: the daemon counts it in its health (the watchdog)."""
        return self._thread is not None and not self._closed and not self._thread.is_alive()

    @property
    def enabled(self) -> bool:
        return self.cfg.rate_fps > 0 or self.cfg.rejects

    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inspector-preview", daemon=True)
            self._thread.start()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)

    def offer(self, result: Result, frame: Any, now: float) -> None:
        """A published result and its :class:`~inspector.stream.frames.Frame` (or None). Never blocks."""
        image = getattr(frame, "image", None)
        if image is None or self._thread is None:
            return
        reject = self.cfg.rejects and result.decision != "PASS"
        live = self.rate.due(now)
        if not (reject or live):
            return
        if not self.watched:
            self.unwatched += 1
            return
        with self._cv:
            if reject:
                if len(self._rejects) >= self.cfg.reject_queue:
                    self._rejects.popleft()
                    self.skipped_rejects += 1
                self._rejects.append((result, image))
            if live:
                self._live = (result, image)  # an older live frame not yet encoded is simply replaced
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closed and self._live is None and not self._rejects:
                    self._cv.wait(0.5)
                if self._closed:
                    return
                live, self._live = self._live, None
                reject = self._rejects.popleft() if self._rejects else None
            for item, reason in ((live, "live"), (reject, "reject")):
                if item is None:
                    continue
                t0 = time.thread_time()
                lossless = reason == "reject" and self.budget.allows(self.clock())
                try:
                    msg, data = encode_preview(item[0], item[1], reason, self.cfg, self.wall(), lossless)
                    self.send(msg, data)
                    self.sent[reason] += 1
                    self.lossy_rejects += reason == "reject" and not lossless
                except Exception as e:  # noqa: BLE001 - a preview failing must never stop the thread
                    self.failures += 1
                    log.warning("preview of frame %s failed: %s", item[0].frame_id, e)
                spent = time.thread_time() - t0
                self.cpu_s += spent
                if lossless:
                    self.budget.spend(spent, self.clock())
