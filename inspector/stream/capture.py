"""The capture thread: read the source, stamp frames, queue them; reconnect with backoff when the camera dies.

Camera health decisions (stall, backoff, lost/restored) come from the pure helpers in ``stall.py``; this
module only applies them to a real source. Events go out through the ``event`` callback
(``event(kind, message, detail)``), never by touching a socket from this thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from inspector.errors import SourceError
from inspector.stream.config import SourceConfig
from inspector.stream.frames import Frame, FrameQueue, TriggerBook
from inspector.stream.sources import Read, Source
from inspector.stream.stall import Backoff, CameraState, StallDetector

log = logging.getLogger(__name__)

EventFn = Callable[[str, str, dict[str, Any]], None]


class Capture:
    """Owns the source. ``run()`` is the thread body; ``stop()`` ends it after the frame in hand is queued.

    mode 'continuous' queues every frame read (subject to the queue's drop policy), tagging the first
    frame after a trigger with its part id; mode 'trigger' queues only frames that serve a trigger.
    """

    def __init__(self, source: Source, cfg: SourceConfig, mode: str, queue: FrameQueue, triggers: TriggerBook,
                 event: EventFn, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.source, self.cfg, self.mode = source, cfg, mode
        self.queue, self.triggers, self.event = queue, triggers, event
        self.clock, self.wall = clock, wall
        self.camera = CameraState()
        self.stall = StallDetector(cfg.stall_timeout_s if source.live else 0.0)
        self.backoff = Backoff(cfg.reconnect_initial_s, cfg.reconnect_max_s, cfg.reconnect_factor)
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._lock = threading.Lock()
        self.next_id = 0
        self.captured = 0  # frames queued for inspection (or dropped by the queue policy)
        self.last_shape: tuple[int, int] | None = None
        self.ended = threading.Event()
        self.failed = False
        self._opened = False
        self._paced: tuple[float | None, int] = (None, 0)

    # -- control (other threads) --------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        self._resume.set()

    def pause(self) -> None:
        self._resume.clear()

    def resume(self) -> None:
        self._paced = (None, 0)  # pace from now: a paused source must not burst to catch up
        self._resume.set()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    @property
    def state(self) -> str:
        return self.camera.state

    def check_stall(self) -> None:
        """Called periodically from another thread: a live source silent for stall_timeout_s is lost."""
        now = self.clock()
        with self._lock:
            if self.camera.state == "up" and not self.paused and self.stall.stalled(now):
                self._lost(now, f"{self.source.describe()}: no frame for {self.stall.idle_s(now):.1f} s "
                                f"(stall_timeout_s {self.stall.timeout_s:g})")

    # -- thread body --------------------------------------------------------------------------------------
    def _lost(self, now: float, why: str) -> None:
        ev = self.camera.lost(now)
        if ev:
            log.warning("camera lost: %s", why)
            self.event("camera_lost", f"camera lost: {why}",
                       {"source": self.source.describe(), "reason": why})

    def _up(self, now: float) -> None:
        ev = self.camera.up(now)
        self.backoff.reset()
        if ev:
            log.info("camera restored after %.1f s: %s", ev[1], self.source.describe())
            self.event("camera_restored", f"camera {self.source.describe()} restored after {ev[1]:.1f} s",
                       {"source": self.source.describe(), "outage_s": round(ev[1], 3)})

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def run(self) -> None:
        """The thread body: open, read, queue until stopped or a finite source ends; report, never vanish."""
        self._opened = False
        self._paced: tuple[float | None, int] = (None, 0)
        try:
            while not self._stop.is_set() and self._step():
                pass
        except Exception as e:  # noqa: BLE001 - the capture thread must report, not vanish
            log.exception("capture thread failed")
            self.failed = True
            self.event("capture_error", f"capture thread failed: {e}", {"error": repr(e)})
        finally:
            self.source.close()
            self.ended.set()

    def _step(self) -> bool:
        """One turn of the loop; False when the source has ended."""
        if not self._opened and not self._open():
            return True
        if not self.source.live and not self._resume.is_set():
            self._resume.wait(0.2)  # a finite source is simply not read while paused
            return True
        if not self.source.live and self.queue.policy == "block" and not self.queue.wait_space(0.2):
            # A file is read when the pipeline can take the frame, so its capture time is when it
            # entered the pipeline, not when it was read ahead.
            return True
        try:
            r = self.source.read()
        except SourceError as e:
            with self._lock:
                self._lost(self.clock(), str(e))
            self.source.close()
            self._opened = False
            self._sleep(self.backoff.next_delay())
            return True
        if r.kind == "idle":
            self._sleep(self.cfg.watch_poll_ms / 1000)
            return True
        if r.kind == "end":
            return self._at_end()
        self._take(r)
        return True

    def _open(self) -> bool:
        try:
            self.source.open()
        except SourceError as e:
            with self._lock:
                self._lost(self.clock(), str(e))
            self._sleep(self.backoff.next_delay())
            return False
        self._opened = True
        # Pace from the reopening: after an outage a paced file must not burst frames to catch up with the
        # schedule it missed (the soak saw 160 ms median latency after each camera outage from that burst).
        self._paced = (None, 0)
        with self._lock:
            self.stall.opened(self.clock())
        return True

    def _at_end(self) -> bool:
        if self.cfg.at_end == "loop":
            self.source.rewind()
            self._opened = False
            return True
        log.info("source %s ended", self.source.describe())
        self.camera.ended()
        return False

    def _take(self, r: Read) -> None:
        """A frame (or an unusable one) was read: offer it, then keep a paced source's pace. Every frame read
        is paced, also one nobody asked for: a paced file in trigger mode must not spin through its frames
        between triggers (it burnt a whole core that the line's other processes needed)."""
        self._offer(r)
        if self.cfg.rate_fps > 0:
            self._paced = self._pace(*self._paced)

    def _offer(self, r: Read) -> None:
        """Stamp a frame read and queue it unless paused or not triggered."""
        now = self.clock()
        with self._lock:
            self.stall.frame(now)
            self._up(now)
        fid = self.next_id
        self.next_id += 1
        if not self._resume.is_set():
            return  # paused live camera: keep reading so the stream stays fresh
        part = self.triggers.take(now)
        if self.mode == "trigger" and part is None:
            return
        if r.image is not None:
            self.last_shape = r.image.shape[:2]
        self._queue(Frame(fid, self.wall(), now, r.image, r.reason or None, part, r.name or None))

    def _queue(self, frame: Frame) -> None:
        self.captured += 1
        # With the block policy a frame in hand is never given up on stop: the consumer drains the queue.
        while not self.queue.put(frame, timeout=0.1):
            if self.queue.policy != "block" or self.queue.closed:
                return

    def _pace(self, t0: float | None, n: int) -> tuple[float, int]:
        """After frame ``n`` of a schedule started at ``t0`` (None: it starts now), wait until frame n + 1 is due."""
        now = self.clock()
        if t0 is None:
            t0, n = now, 0
        n += 1
        due = t0 + n / self.cfg.rate_fps
        if due > now:
            self._sleep(due - now)
        return t0, n
