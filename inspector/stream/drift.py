"""Drift: does the line still look like what calibration promised? A pure monitor, fed scores and a clock.

Two statistics, each against the product's calibration record (``inspector.calibrate.record``):

- **reject rate**: the FAIL share of the last ``window`` PASS/FAIL results. Calibration promises the
  false-reject rate of *good* parts (``expected_frr``, with a 95% interval); a line also rejects its real
  defects, ``defect_rate`` of its parts. Raised when the rate's one-sided Wilson lower bound (``z`` standard
  errors) is above ``expected_frr.upper + defect_rate``: more rejects than calibration plus the expected
  defects explain, beyond chance.
- **score shift**: the median score of the last ``score_window`` passing parts minus the calibration's
  good-score median, in calibration good-score standard deviations. Raised when ``|shift|`` reaches
  ``score_shift`` plus two standard errors of the calibration's own median (1.2533 / sqrt(n) std for n good
  calibration images: a median fitted on 21 images is itself uncertain by 0.27 std). A brighter lamp, a dirty
  lens or a new batch of material move good parts' scores before they cross the threshold; the median of
  passing parts is robust to the few defects that pass.

ERROR results are not counted (they have their own counters and events). A raised drift clears when both
statistics are back (the reject rate at or below its limit, ``|shift|`` below half its limit) and at least
``hold_s`` after it was raised, so the alarm does not flicker.

:class:`DriftMonitor` is pure (decisions, scores and monotonic times go in, state changes come out);
:class:`DriftTracker` is the daemon's thin adapter: one monitor per calibration, changes as events.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inspector.protocol.messages import Event, Result
from inspector.stream.config import DriftConfig

STATES = ("off", "warming", "ok", "raised")
_UNSEEN = object()


@dataclass(frozen=True)
class Reference:
    """What a calibration promised: the expected FRR's upper bound and the good scores' median and std
    (raw score units). ``good_std`` is None when the record's spread is zero (no score-shift judgement)."""

    calibration_id: str
    frr_upper: float
    good_median: float
    good_std: float | None
    n_good: int = 0  # calibration good images behind good_median (0: unknown, no widening)

    @staticmethod
    def of(calibration: Any) -> Reference | None:
        """From a CalibrationRecord; None for a record without FRR promise or good-score statistics."""
        frr, good = getattr(calibration, "expected_frr", None), getattr(calibration, "good_scores", None)
        if frr is None or good is None:
            return None
        std = float(good.std)
        if not std > 0:  # all calibration scores equal (tiny n): fall back on the p50..p95 spread
            std = (float(good.p95) - float(good.p50)) / 1.645
        ok = math.isfinite(std) and std > 0
        return Reference(str(getattr(calibration, "id", "")), float(frr.upper), float(good.p50),
                         std if ok else None, int(good.n))


@dataclass(frozen=True)
class Change:
    """A state change: ``kind`` 'drift' or 'drift_cleared', a sentence, and the figures."""

    kind: str
    message: str
    detail: dict[str, Any]


def wilson_lower(k: int, n: int, z: float) -> float:
    """One-sided Wilson score lower bound of a binomial rate k/n at ``z`` standard errors."""
    if n <= 0:
        return 0.0
    p = k / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z2 / n))


class DriftMonitor:
    """Rolling reject rate and passing-score median against a :class:`Reference`. ``observe`` per result."""

    def __init__(self, ref: Reference, cfg: DriftConfig) -> None:
        self.ref, self.cfg = ref, cfg
        self.limit = min(1.0, ref.frr_upper + cfg.defect_rate)
        # Two standard errors of the calibration median (asymptotic 1.2533 sigma / sqrt(n)) widen the shift limit.
        self.shift_limit = cfg.score_shift + (2 * 1.2533 / math.sqrt(ref.n_good) if ref.n_good > 0 else 0.0)
        self._fails: deque[bool] = deque()
        self._n_fail = 0
        self._passing: deque[float] = deque()
        self._sorted: list[float] = []
        self.state = "warming"
        self.raised_at: float | None = None
        self.reasons: tuple[str, ...] = ()

    # -- the statistics ---------------------------------------------------------------------------------------
    def reject_rate(self) -> float | None:
        n = len(self._fails)
        return self._n_fail / n if n >= self.cfg.min_results else None

    def score_shift(self) -> float | None:
        """(median passing score - calibration good median) / calibration good std, or None when not judged."""
        n = len(self._sorted)
        if self.ref.good_std is None or n < self.cfg.min_passing:
            return None
        s = self._sorted
        median = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
        return (median - self.ref.good_median) / self.ref.good_std

    def stats(self) -> dict[str, Any]:
        """The figures behind the state (JSON-able): rates in [0, 1], shift in calibration stds."""
        rate, shift = self.reject_rate(), self.score_shift()
        return {"reject_rate": None if rate is None else round(rate, 4), "reject_limit": round(self.limit, 4),
                "score_shift": None if shift is None else round(shift, 3), "shift_limit": round(self.shift_limit, 3),
                "results": len(self._fails), "passing": len(self._sorted), "calibration_id": self.ref.calibration_id}

    # -- feeding ------------------------------------------------------------------------------------------------
    def observe(self, decision: str, score: float | None, now: float) -> Change | None:
        """Add one result (``now``: monotonic seconds); the state change it causes, if any."""
        if decision not in ("PASS", "FAIL"):
            return None
        failed = decision == "FAIL"
        self._fails.append(failed)
        self._n_fail += failed
        if len(self._fails) > self.cfg.window:
            self._n_fail -= self._fails.popleft()
        if not failed and score is not None and math.isfinite(score):
            self._passing.append(score)
            bisect.insort(self._sorted, score)
            if len(self._passing) > self.cfg.score_window:
                old = self._passing.popleft()
                del self._sorted[bisect.bisect_left(self._sorted, old)]
        return self._judge(now)

    def _judge(self, now: float) -> Change | None:
        cfg = self.cfg
        rate, shift = self.reject_rate(), self.score_shift()
        n = len(self._fails)
        rate_high = rate is not None and wilson_lower(self._n_fail, n, cfg.z) > self.limit
        shift_high = shift is not None and abs(shift) >= self.shift_limit
        if self.state == "raised":
            back = (rate is None or rate <= self.limit) and (shift is None or abs(shift) < self.shift_limit / 2)
            if back and now - (self.raised_at or now) >= cfg.hold_s:
                self.state, self.raised_at, self.reasons = "ok", None, ()
                return Change("drift_cleared", f"drift cleared: {self._figures(rate, shift)}", self.stats())
            return None
        if rate_high or shift_high:
            self.state, self.raised_at = "raised", now
            self.reasons = tuple(r for r, on in (("reject_rate", rate_high), ("score_shift", shift_high)) if on)
            return Change("drift", f"drift: {self._why(rate, shift, rate_high, shift_high)}",
                          {**self.stats(), "reasons": list(self.reasons)})
        self.state = "ok" if rate is not None or shift is not None else "warming"
        return None

    def _figures(self, rate: float | None, shift: float | None) -> str:
        parts = []
        if rate is not None:
            parts.append(f"reject rate {rate:.3f} (limit {self.limit:.3f})")
        if shift is not None:
            parts.append(f"passing-score shift {shift:+.2f} std (limit {self.shift_limit:.2f})")
        return ", ".join(parts) or "not enough results"

    def _why(self, rate: float | None, shift: float | None, rate_high: bool, shift_high: bool) -> str:
        why = []
        if rate_high:
            why.append(f"reject rate {rate:.3f} over the last {len(self._fails)} parts is above the "
                       f"{self.limit:.3f} calibration allows (expected FRR <= {self.ref.frr_upper:.3f} + defect "
                       f"rate {self.cfg.defect_rate:g})")
        if shift_high:
            why.append(f"the median score of the last {len(self._sorted)} passing parts is {shift:+.2f} "
                       f"calibration std from the calibration's good median (limit {self.shift_limit:.2f})")
        return "; ".join(why)


class DriftTracker:
    """The output thread's drift: a :class:`DriftMonitor` per calibration, its changes as events.

    A new calibration (product switch, reload) starts a new monitor: the promise changed. A drift raised under
    the old one is cleared with that reason."""

    def __init__(self, cfg: DriftConfig, line: str, wall: Callable[[], float]) -> None:
        self.cfg, self.line, self.wall = cfg, line, wall
        self.monitor: DriftMonitor | None = None
        self._cal_key: Any = _UNSEEN

    @property
    def state(self) -> str:
        """'warming' until the first result shows which calibration is in use; 'off' when disabled or when that
        record has no FRR promise or good-score statistics."""
        if self.monitor is not None:
            return self.monitor.state
        return "warming" if self.cfg.enabled and self._cal_key is _UNSEEN else "off"

    def stats(self) -> dict[str, Any]:
        return {} if self.monitor is None else self.monitor.stats()

    def observe(self, result: Result, calibration: Any, now: float) -> list[Event]:
        """Feed one published result inspected under ``calibration``; the events to publish."""
        if not self.cfg.enabled:
            return []
        events = []
        key = (id(calibration), getattr(calibration, "id", None))
        if key != self._cal_key:
            self._cal_key = key
            old = self.monitor
            if old is not None and old.state == "raised":
                events.append(self._event("drift_cleared", f"drift cleared: calibration is now "
                                          f"{getattr(calibration, 'id', None)}", {**old.stats(), "reason":
                                                                                   "calibration changed"}))
            ref = Reference.of(calibration)
            self.monitor = None if ref is None else DriftMonitor(ref, self.cfg)
        if self.monitor is None:
            return events
        change = self.monitor.observe(result.decision, result.score, now)
        if change is not None:
            events.append(self._event(change.kind, change.message, {**change.detail, "frame_id": result.frame_id}))
        return events

    def _event(self, kind: str, message: str, detail: dict[str, Any]) -> Event:
        return Event(self.line, self.wall(), kind, message, detail)
