"""A live subscriber: prints decisions, saves overlays, keeps a summary. The reference for PLC integrators.

The PUB stream carries headers and masks, not camera frames. Overlays are drawn on the frame when the
listener can see the same frames (``frames``: the video file or image folder the daemon reads, matched by
``frame_id``); otherwise on a black canvas of the frame's size, so the defect's place is still visible.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from inspector.client.subscriber import Subscriber
from inspector.protocol.messages import EndOfStream, Event, Heartbeat, Result, Status, to_header

log = logging.getLogger(__name__)

COLORS = {"PASS": (60, 180, 60), "FAIL": (40, 40, 230), "ERROR": (0, 165, 255)}


@dataclass
class Summary:
    """What a listener saw: counts, latencies (ms) and the time span of the results (Unix s)."""

    counts: dict[str, int] = field(default_factory=lambda: {"PASS": 0, "FAIL": 0, "ERROR": 0})
    latencies_ms: list[float] = field(default_factory=list)
    first_capture: float | None = None
    last_publish: float | None = None
    eos: EndOfStream | None = None

    def add(self, r: Result) -> None:
        self.counts[r.decision] += 1
        self.latencies_ms.append(r.latency_ms)
        self.first_capture = r.capture_ts if self.first_capture is None else min(self.first_capture, r.capture_ts)
        self.last_publish = r.publish_ts if self.last_publish is None else max(self.last_publish, r.publish_ts)

    @property
    def frames(self) -> int:
        return sum(self.counts.values())

    def fps(self) -> float:
        """Results per second from the first capture to the last publish."""
        if self.first_capture is None or self.last_publish is None or self.last_publish <= self.first_capture:
            return 0.0
        return self.frames / (self.last_publish - self.first_capture)

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else 0.0


def result_line(r: Result) -> str:
    """One human line per result."""
    if r.decision == "ERROR":
        body = f"ERROR {r.error}"
    else:
        peak = r.regions and all(g.kind == "peak" for g in r.regions)
        regions = "" if not r.regions else (", at its peak (no region above the pixel threshold)" if peak else
                                            f", {len(r.regions)} region{'s' if len(r.regions) != 1 else ''}")
        body = f"{r.decision:<4} score {r.score:.4f} ({r.normalized_score:.2f}x threshold){regions}"
    part = f" part {r.part_id}" if r.part_id else ""
    fid = "-" if r.frame_id is None else r.frame_id
    return f"[{r.line}] frame {fid:>5}{part} {body}  {r.latency_ms:.1f} ms  ({r.product})"


class FrameLookup:
    """Frames by index from a video file or an image folder (name order), read sequentially and cached."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.files = sorted(p for p in self.path.iterdir() if p.is_file()) if self.path.is_dir() else None
        self.cap = None if self.files is not None else cv2.VideoCapture(str(self.path))
        self.pos = 0
        self.cache: dict[int, np.ndarray] = {}

    def get(self, i: int) -> np.ndarray | None:
        if self.files is not None:
            return cv2.imread(str(self.files[i])) if 0 <= i < len(self.files) else None
        if i in self.cache:
            return self.cache[i]
        while self.pos <= i:
            ok, img = self.cap.read()
            if not ok:
                return None
            self.cache[self.pos] = img
            self.cache.pop(self.pos - 64, None)  # the listener is at most a few frames behind
            self.pos += 1
        return self.cache.get(i)


def draw_overlay(r: Result, mask_png: bytes | None, frame: np.ndarray | None) -> np.ndarray:
    """The frame (or a black canvas) with the mask tinted, region boxes and a label."""
    if frame is not None:
        img = frame.copy()
    else:
        w, h = r.frame_size or (256, 256)
        img = np.zeros((h, w, 3), np.uint8)
    color = COLORS[r.decision]
    if mask_png is not None and r.mask is not None:
        m = cv2.imdecode(np.frombuffer(mask_png, np.uint8), cv2.IMREAD_GRAYSCALE)
        if r.mask.space == "mask":
            x, y, rw, rh = r.mask.roi or (0, 0, img.shape[1], img.shape[0])
            full = np.zeros(img.shape[:2], np.uint8)
            full[y : y + rh, x : x + rw] = cv2.resize(m, (rw, rh), interpolation=cv2.INTER_NEAREST)
            m = full
        tint = img.copy()
        tint[m > 0] = (0, 0, 255)
        img = cv2.addWeighted(img, 0.55, tint, 0.45, 0)
    thick = max(1, img.shape[1] // 400)
    for reg in r.regions:
        x, y, bw, bh = reg.bbox
        # A defect region in yellow; the peak of a FAIL that has no region above the pixel threshold in
        # orange, labelled, so an operator never takes it for a measured defect outline.
        cv2.rectangle(img, (x, y), (x + bw - 1, y + bh - 1), (0, 255, 255) if reg.kind == "defect" else (0, 140, 255),
                      thick)
        if reg.kind == "peak":
            cv2.putText(img, "peak", (x, max(10, y - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 140, 255), 1, cv2.LINE_AA)
    score = "" if r.score is None else f" {r.normalized_score:.2f}x"
    label = f"#{r.frame_id} {r.decision}{score}"
    scale = max(0.4, img.shape[1] / 700)
    cv2.putText(img, label, (5, int(22 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, label, (5, int(22 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
    return img


def listen(sub: Subscriber, on_text: Callable[[str], None] = print, save: Path | None = None,
           save_all: bool = False, frames: FrameLookup | None = None, count: int = 0, timeout_s: float = 0.0,
           stop_at_eos: bool = True, record: Path | None = None) -> Summary:
    """Receive until end of stream (``stop_at_eos``), ``count`` results, or ``timeout_s`` of silence (0 = never).

    ``save``: write overlays of FAIL/ERROR results (all with ``save_all``) as PNG; ``record``: append every
    result header as JSON Lines.
    """
    summary = Summary()
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
    rec = open(record, "a", encoding="utf-8") if record is not None else None  # noqa: SIM115
    last_msg, last_hb_print = time.monotonic(), 0.0
    try:
        while True:
            got = sub.recv(200)
            now = time.monotonic()
            if got is None:
                if timeout_s and now - last_msg > timeout_s:
                    on_text(f"no message for {timeout_s:g} s; stopping")
                    break
                continue
            last_msg = now
            msg, mask = got
            if isinstance(msg, Result):
                summary.add(msg)
                on_text(result_line(msg))
                if rec is not None:
                    rec.write(json.dumps(to_header(msg)) + "\n")
                if save is not None and (save_all or msg.decision != "PASS"):
                    img = draw_overlay(msg, mask, frames.get(msg.frame_id) if frames and msg.frame_id is not None
                                       else None)
                    cv2.imwrite(str(save / f"{msg.frame_id:06d}_{msg.decision}.png"), img)
                if count and summary.frames >= count:
                    break
            elif isinstance(msg, Heartbeat):
                if now - last_hb_print >= 5.0:
                    last_hb_print = now
                    on_text(f"[{msg.line}] heartbeat: {msg.fps:.1f} fps, queue {msg.queue_depth}/{msg.queue_size}, "
                            f"dropped {msg.dropped}, camera {msg.camera}, {msg.product} on {msg.backend}"
                            f"{' (paused)' if msg.paused else ''}")
            elif isinstance(msg, Event):
                on_text(f"[{msg.line}] event {msg.kind}: {msg.message}")
            elif isinstance(msg, Status):
                on_text(f"[{msg.line}] status {msg.state} ({msg.product} on {msg.backend})")
            elif isinstance(msg, EndOfStream):
                summary.eos = msg
                on_text(f"[{msg.line}] end of stream ({msg.reason}): {msg.frames} frames, {msg.results} results, "
                        f"{msg.dropped} dropped")
                if stop_at_eos:
                    break
    finally:
        if rec is not None:
            rec.close()
    return summary
