"""The output thread: publish every result, event and heartbeat, write the audit trail, update metrics.

It owns the PUB socket's sends (ZeroMQ sockets are not thread-safe), stamps ``publish_ts`` and the
latency (capture to publish, on the monotonic clock), renders the mask PNG per ``masks`` policy, and
counts what it published (the end-of-stream and heartbeat figures).

Two inboxes: results, which carry their frames, are bounded, so a slow output thread backs up into the
capture queue and its drop policy instead of memory; events and status go through an unbounded side
queue, because the output thread itself raises audit alarms and must never block on its own full queue.

After each result it feeds the drift monitor (drift.py; drift events go out like any other event) and
offers the frame to the previewer (preview.py), whose encoded images come back through the side queue.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from inspector.protocol.messages import (
    PREVIEW,
    EndOfStream,
    Heartbeat,
    MaskInfo,
    Message,
    Preview,
    Result,
    to_header,
    topic,
)
from inspector.stream.audit import AuditLog
from inspector.stream.config import DaemonConfig
from inspector.stream.decide import encode_png, mask_image
from inspector.stream.drift import DriftTracker
from inspector.stream.frames import Frame
from inspector.stream.preview import Previewer
from inspector.stream.product import Product
from inspector.stream.prometheus import Metrics
from inspector.stream.publisher import Publisher

log = logging.getLogger(__name__)

_STOP = object()
HeartbeatFn = Callable[[int, float], Heartbeat]


@dataclass(frozen=True)
class Outgoing:
    """A message for the output thread; results carry their frame and bool mask ``(h, w)`` for mask and audit,
    previews their encoded image (``payload``)."""

    msg: Message
    frame: Frame | None = None
    mask: np.ndarray | None = None
    product: Product | None = None
    payload: bytes | None = None


class Output:
    """``run()`` is the thread body; ``finish()`` (after the last result was put) ends it."""

    def __init__(self, cfg: DaemonConfig, publisher: Publisher, audit: AuditLog | None, metrics: Metrics,
                 heartbeat: HeartbeatFn, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.cfg, self.publisher, self.audit, self.metrics = cfg, publisher, audit, metrics
        self.heartbeat, self.clock, self.wall = heartbeat, clock, wall
        self.inbox: queue.Queue = queue.Queue(maxsize=max(64, 4 * cfg.pipeline.queue_size))
        self.side: queue.SimpleQueue = queue.SimpleQueue()
        self.results = 0
        self.errors = 0
        self.counts = {"PASS": 0, "FAIL": 0, "ERROR": 0}
        self.tick = clock()
        self._fps_window = (clock(), 0)
        self._frames_counted = 0
        self.drift = DriftTracker(cfg.drift, cfg.line, wall)
        self.preview = Previewer(cfg.preview, lambda m, data: self.put_side(Outgoing(m, payload=data)), clock, wall)
        self._preview_topic = topic(cfg.line, PREVIEW)

    def put(self, item: Outgoing) -> None:
        """A result (blocks while the inbox is full) or the end of stream."""
        self.inbox.put(item)

    def put_side(self, item: Outgoing) -> None:
        """An event or status, from any thread, never blocking."""
        self.side.put(item)

    def finish(self) -> None:
        self.inbox.put(_STOP)

    def run(self) -> None:
        self.preview.start()
        try:
            self._run()
        finally:
            self.preview.close()

    def _run(self) -> None:
        interval = self.cfg.zmq.heartbeat_ms / 1000
        next_hb = self.clock()
        seq = 0
        while True:
            self.tick = now = self.clock()
            self._watch_previews()
            if now >= next_hb:
                self._safe(self._heartbeat, seq)
                if self.audit is not None:
                    self._safe(lambda _: self.audit.poll(), None)
                seq += 1
                next_hb = max(next_hb + interval, now)
            self._drain_side()
            try:
                item = self.inbox.get(timeout=max(0.0, min(next_hb - self.clock(), 0.1)))
            except queue.Empty:
                continue
            if item is _STOP:
                return
            if isinstance(item.msg, EndOfStream):
                self._drain_side()  # the end of stream is the last message
            self._safe(self._deliver, item)

    def _watch_previews(self) -> None:
        """Previews are encoded only while somebody subscribes to the preview topic (the station)."""
        poll = getattr(self.publisher, "poll_subscriptions", None)
        if poll is None:  # a publisher that cannot tell (tests' fakes): previews as configured
            return
        self._safe(lambda _: poll(), None)
        self.preview.watched = self.publisher.wants(self._preview_topic)

    def _drain_side(self) -> None:
        while True:
            try:
                item = self.side.get_nowait()
            except queue.Empty:
                return
            self._safe(self._deliver, item)

    def _safe(self, fn, arg) -> None:
        try:
            fn(arg)
        except Exception:  # noqa: BLE001 - the output thread must survive anything one message does
            log.exception("output: %s failed", fn.__name__)

    def _deliver(self, item: Outgoing) -> None:
        msg = item.msg
        if isinstance(msg, EndOfStream):
            if self.audit is not None:
                self.audit.flush()  # what the spool holds is written (or counted lost) before the counts are final
            msg = dataclasses.replace(msg, results=self.results,
                                      audit_lost=self.audit.lost if self.audit is not None else 0)
        if isinstance(msg, Preview):  # images for live views: not part of the audit trail
            self.publisher.send(msg, item.payload)
            return
        if not isinstance(msg, Result):
            self.publisher.send(msg)
            if self.audit is not None:
                self.audit.record(to_header(msg))
            return
        p, f = item.product, item.frame
        try:
            png, info, frame_mask = self._mask(item, msg)
        except Exception:  # noqa: BLE001 - a mask that cannot be drawn must not cost the decision
            log.exception("output: the mask of frame %s could not be rendered; publishing without it", msg.frame_id)
            png, info, frame_mask = None, None, None
        now = self.clock()
        latency_s = now - (f.capture_mono if f is not None else now)
        msg = dataclasses.replace(msg, publish_ts=self.wall(), latency_ms=round(latency_s * 1000, 3), mask=info)
        self.publisher.send(msg, png)
        self.results += 1
        self.counts[msg.decision] += 1
        if msg.decision == "ERROR":
            self.errors += 1
        self.metrics.result(msg.decision, latency_s)
        if self.audit is not None:
            self.audit.record(to_header(msg), f.image if f is not None else None, frame_mask)
        if p is not None:
            for event in self.drift.observe(msg, p.calibration, now):
                self._deliver(Outgoing(event))
            self.preview.offer(msg, f, now)

    def _mask(self, item: Outgoing, msg: Result) -> tuple[bytes | None, MaskInfo | None, np.ndarray | None]:
        """(PNG for frame 3, its MaskInfo, the frame-sized mask for the audit), per the masks policy."""
        png, info, frame_mask = None, None, None
        p = item.product
        if item.mask is None or p is None:
            return png, info, frame_mask
        policy, space = self.cfg.masks.publish, self.cfg.masks.resolution
        wants_audit = self.audit is not None and msg.decision == "FAIL"
        if space == "frame" or wants_audit:
            frame_mask = mask_image(item.mask, "frame", p.frame_hw, p.roi)
        if policy == "always" or (policy == "fail" and msg.decision == "FAIL"):
            img = frame_mask if space == "frame" else mask_image(item.mask, "mask", p.frame_hw, p.roi)
            png = encode_png(img)
            info = MaskInfo(img.shape[1], img.shape[0], space, p.roi if space == "mask" else None)
        return png, info, frame_mask

    def _heartbeat(self, seq: int) -> None:
        now = self.clock()
        t0, n0 = self._fps_window
        fps = (self.results - n0) / (now - t0) if now > t0 else 0.0
        self._fps_window = (now, self.results)
        hb = self.heartbeat(seq, fps)
        # Metrics first: a subscriber that has seen a heartbeat finds /metrics showing at least its figures.
        self._safe(self._heartbeat_metrics, hb)
        self.publisher.send(hb)

    def _heartbeat_metrics(self, hb: Heartbeat) -> None:
        self.metrics.captured(hb.frames - self._frames_counted)
        self._frames_counted = hb.frames
        a = self.audit
        self.metrics.gauges(hb.queue_depth, hb.dropped, hb.camera, a.errors if a is not None else 0,
                            a.lost if a is not None else 0, a.spooled if a is not None else 0)
        self.metrics.drift(hb.drift, hb.drift_stats)
