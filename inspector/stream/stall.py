"""Pure decisions about a camera's health, from timestamps only (the clock is passed in).

- :class:`StallDetector`: is a live source stalled (no frame for ``timeout_s``)?
- :class:`Backoff`: capped exponential delays between reconnect attempts.
- :class:`CameraState`: the up/lost state machine that decides when to emit camera_lost / camera_restored.

None of these touches a camera, a thread or ``time``, so the tests drive them with made-up times.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StallDetector:
    """``timeout_s`` without a frame means stalled; 0 disables. Times are monotonic seconds."""

    timeout_s: float
    last_frame: float | None = None
    opened_at: float | None = None

    def opened(self, now: float) -> None:
        """The source was (re)opened: the stall clock starts now, not at the last frame before the outage."""
        self.opened_at = now
        self.last_frame = None

    def frame(self, now: float) -> None:
        self.last_frame = now

    def stalled(self, now: float) -> bool:
        if self.timeout_s <= 0:
            return False
        ref = self.last_frame if self.last_frame is not None else self.opened_at
        return ref is not None and now - ref > self.timeout_s

    def idle_s(self, now: float) -> float:
        """Seconds since the last frame (or since opening), 0 when nothing is known."""
        ref = self.last_frame if self.last_frame is not None else self.opened_at
        return 0.0 if ref is None else max(0.0, now - ref)


@dataclass
class Backoff:
    """Delay before reconnect attempt ``n`` (0-based): ``initial * factor**n``, capped at ``maximum``."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    attempts: int = 0

    def next_delay(self) -> float:
        d = min(self.maximum, self.initial * self.factor**self.attempts) if self.initial > 0 else 0.0
        self.attempts += 1
        return d

    def reset(self) -> None:
        self.attempts = 0


class CameraState:
    """connecting -> up -> lost -> up ... and ended. Methods return the event to publish, or None.

    ``camera_lost`` is reported once per outage (not for every failed reconnect), and ``camera_restored``
    only after a loss, with the outage's length in seconds.
    """

    def __init__(self) -> None:
        self.state = "connecting"
        self.lost_at: float | None = None
        self.outages = 0

    def up(self, now: float) -> tuple[str, float] | None:
        prev, self.state = self.state, "up"
        if prev == "lost":
            lost_for = now - (self.lost_at if self.lost_at is not None else now)
            self.lost_at = None
            return ("camera_restored", lost_for)
        return None

    def lost(self, now: float) -> tuple[str, float] | None:
        if self.state in ("lost", "ended"):
            return None
        self.state, self.lost_at = "lost", now
        self.outages += 1
        return ("camera_lost", 0.0)

    def ended(self) -> None:
        self.state = "ended"
