"""Captured frames, the bounded queue between capture and inference, and pending PLC triggers.

The queue's drop policy decides what happens when inference falls behind:

- ``block``: capture waits, every frame read is inspected (files, or when the camera may buffer);
- ``drop_oldest``: the oldest queued frame is dropped, so inspection stays on the latest frames;
- ``drop_newest``: the new frame is dropped.

A dropped frame is counted (heartbeats, metrics); it is never silently lost. Times passed in are monotonic
seconds, so the trigger book is testable without a clock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from inspector.errors import ConfigError

POLICIES = ("block", "drop_oldest", "drop_newest")


@dataclass(frozen=True)
class Frame:
    """A captured frame: ``image`` uint8 (H, W, 3) BGR, or None when unusable (``error`` says why).

    ``frame_id`` counts frames read from the source since start; ``capture_ts`` is Unix seconds and
    ``capture_mono`` the monotonic clock at the same instant (latency is measured on the latter).
    ``source_file``: the file it was read from (image folders), else None.
    """

    frame_id: int | None
    capture_ts: float
    capture_mono: float
    image: np.ndarray | None
    error: str | None = None
    part_id: str | None = None
    source_file: str | None = None


class FrameQueue:
    """Bounded FIFO of frames with a drop policy; ``close()`` lets the consumer drain what is left."""

    def __init__(self, size: int, policy: str) -> None:
        if policy not in POLICIES:
            raise ConfigError(f"drop policy must be one of {POLICIES}, got {policy!r}")
        self.size, self.policy = size, policy
        self._q: deque[Frame] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._q)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, frame: Frame, timeout: float | None = None) -> bool:
        """Queue a frame. False when it was dropped (drop_newest, closed, or block timed out -> counted)."""
        with self._cv:
            if self._closed:
                self.dropped += 1
                return False
            if len(self._q) >= self.size:
                if self.policy == "drop_oldest":
                    self._q.popleft()
                    self.dropped += 1
                elif self.policy == "drop_newest":
                    self.dropped += 1
                    return False
                else:
                    deadline = None if timeout is None else time.monotonic() + timeout
                    while len(self._q) >= self.size and not self._closed:
                        left = None if deadline is None else deadline - time.monotonic()
                        if left is not None and left <= 0:
                            return False
                        self._cv.wait(left)
                    if self._closed:
                        self.dropped += 1
                        return False
            self._q.append(frame)
            self._cv.notify_all()
            return True

    def wait_space(self, timeout: float) -> bool:
        """Wait until a frame can be put without waiting (or the queue is closed); False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: len(self._q) < self.size or self._closed, timeout)

    def get_batch(self, max_n: int, wait_s: float, fill_s: float) -> list[Frame]:
        """Up to ``max_n`` frames: wait up to ``wait_s`` for the first, then up to ``fill_s`` more for the rest.

        Returns [] when nothing came (or the queue is closed and empty).
        """
        with self._cv:
            if not self._q and not self._closed:
                self._cv.wait(wait_s)
            if not self._q:
                return []
            deadline = time.monotonic() + fill_s
            while len(self._q) < max_n and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            out = [self._q.popleft() for _ in range(min(max_n, len(self._q)))]
            self._cv.notify_all()
            return out

    def close(self) -> None:
        """No more frames will be put; waiting producers and consumers wake up."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()


class TriggerBook:
    """Pending PLC triggers, oldest first. A trigger is served by the first frame captured after it."""

    def __init__(self) -> None:
        self._pending: deque[tuple[str, float]] = deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, part_id: str, now: float) -> int:
        """Record a trigger at monotonic time ``now``; returns how many are pending."""
        with self._lock:
            self._pending.append((part_id, now))
            return len(self._pending)

    def take(self, captured_at: float) -> str | None:
        """The part id of the oldest trigger issued at or before ``captured_at``, removed; else None."""
        with self._lock:
            if self._pending and self._pending[0][1] <= captured_at:
                return self._pending.popleft()[0]
            return None

    def expire(self, now: float, timeout_s: float) -> list[tuple[str, float]]:
        """Remove and return the triggers older than ``timeout_s`` (part id, issued at)."""
        with self._lock:
            out = []
            while self._pending and now - self._pending[0][1] > timeout_s:
                out.append(self._pending.popleft())
            return out
