"""The PLC part handshake, a pure state machine: times are passed in (monotonic seconds), nothing here waits.

    Ready --Trigger(part id)--> Busy --result for that part id--> ResultValid --ResultAck--> Ready
                                 |
                                 +--deadline passed--> ResultValid (TIMEOUT, decision ERROR)

Reject by default: every trigger ends in exactly one result the PLC can read, also when the daemon is down
(``NOT_READY``), paused (``NOT_READY``), refuses the trigger (``NOT_READY``), is too slow (``TIMEOUT``) or the
PLC sent no part id (``BAD_REQUEST``); all of those carry decision ERROR. A result that arrives after its
part's deadline is recorded as late and counted, and never becomes the result of the part after it: the
daemon answers triggers in order, so a late result is matched to the oldest timed-out trigger of its part id.

The OPC UA shell (``opcua.py``) maps the state onto nodes; docs/plc.md has the timing diagram.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass, field

from inspector.protocol.messages import Result

READY, BUSY, VALID = "Ready", "Busy", "ResultValid"
# Result codes: OK = the daemon's PASS/FAIL in time; ERROR = the daemon's ERROR in time (its reason in message);
# TIMEOUT = nothing before the deadline; NOT_READY = daemon down, paused or refusing; BAD_REQUEST = no part id.
CODES = ("OK", "ERROR", "TIMEOUT", "NOT_READY", "BAD_REQUEST")


@dataclass(frozen=True)
class PartResult:
    """What the PLC reads for one part. ``score``/``normalized_score``/``latency_ms`` are None without a daemon
    result; ``capture_ts`` is Unix seconds of the frame's capture; ``response_ms`` trigger to result (bridge)."""

    part_id: str
    decision: str
    code: str
    message: str = ""
    frame_id: int | None = None
    score: float | None = None
    normalized_score: float | None = None
    latency_ms: float | None = None
    capture_ts: float | None = None
    regions: int = 0
    response_ms: float = 0.0

    @property
    def passed(self) -> bool:
        """The only case a PLC may let the part through."""
        return self.decision == "PASS" and self.code == "OK"


@dataclass(frozen=True)
class LateResult:
    """A daemon result that came after its part's deadline; ``lateness_ms`` past the deadline."""

    part_id: str
    frame_id: int | None
    decision: str
    lateness_ms: float


@dataclass
class Counters:
    parts: int = 0  # triggers taken
    passed: int = 0
    failed: int = 0
    errors: int = 0  # results with decision ERROR, whatever the code
    timeouts: int = 0
    late_results: int = 0
    handshake_errors: int = 0  # Trigger while not Ready, ResultAck without ResultValid


def _score(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


@dataclass
class Handshake:
    """One line's handshake. ``deadline_s`` per trigger; a timed-out part's result is expected for ``late_window_s``."""

    deadline_s: float
    late_window_s: float = 10.0
    phase: str = READY
    part_id: str | None = None
    triggered_at: float | None = None
    deadline: float | None = None
    result: PartResult | None = None
    late: LateResult | None = None
    link_up: bool = False
    link_reason: str = "not connected to the daemon yet"
    paused: bool = False
    last_error: str = ""
    counters: Counters = field(default_factory=Counters)
    # (part id, deadline, forget at): triggers whose result may still come from the daemon, oldest first.
    _outstanding: deque = field(default_factory=deque)

    # -- what the PLC sees ---------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """Ready, Busy, Paused or Fault (the system state of docs/plc.md)."""
        if not self.link_up:
            return "Fault"
        if self.phase != READY:
            return "Busy"
        return "Paused" if self.paused else "Ready"

    @property
    def busy(self) -> bool:
        return self.phase == BUSY

    @property
    def result_valid(self) -> bool:
        return self.phase == VALID

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    # -- inputs ----------------------------------------------------------------------------------------------
    def trigger(self, part_id: str, now: float) -> str | None:
        """The PLC raised Trigger. Returns the part id to send to the daemon, or None when the trigger was
        answered at once (ResultValid) or ignored (not Ready: a handshake error)."""
        if self.phase != READY:
            self.counters.handshake_errors += 1
            self.last_error = f"Trigger for part {part_id!r} while {self.phase} (part {self.part_id!r}); ignored"
            return None
        self.counters.parts += 1
        self.phase, self.part_id, self.triggered_at = BUSY, part_id, now
        self.deadline = now + self.deadline_s
        if not part_id:
            self._finish(self._error("BAD_REQUEST", "PartId is empty: write it before raising Trigger"), now)
        elif not self.link_up:
            self._finish(self._error("NOT_READY", f"daemon unreachable: {self.link_reason}"), now)
        elif self.paused:
            self._finish(self._error("NOT_READY", "inspection is paused (Resume first)"), now)
        return part_id if self.phase == BUSY else None

    def refused(self, part_id: str, why: str, now: float, maybe_delivered: bool) -> bool:
        """The trigger for ``part_id`` failed: the daemon said no, or did not answer (``maybe_delivered``: it may
        still have taken it, so its result may come later and is then treated as late)."""
        if self.phase != BUSY or self.part_id != part_id:
            return False  # already answered: its deadline passed, and it is outstanding since
        if maybe_delivered:
            self._outstanding.append((part_id, now, now + self.late_window_s))
        self._finish(self._error("NOT_READY", f"trigger not taken by the daemon: {why}"), now)
        return True

    def on_result(self, r: Result, now: float) -> bool:
        """A result from the daemon; True when it changed what the PLC sees (its part's result, or a late one)."""
        if r.part_id is None:
            return False  # a continuous-mode frame nobody triggered
        # Older triggers of the same part id first: the daemon answers triggers in order, so while one of them
        # is outstanding, this result is its (late) one, not the current part's.
        for i, (pid, deadline, _forget) in enumerate(self._outstanding):
            if pid == r.part_id:
                del self._outstanding[i]
                self.counters.late_results += 1
                self.late = LateResult(pid, r.frame_id, r.decision, round((now - deadline) * 1000, 3))
                return True
        if self.phase == BUSY and r.part_id == self.part_id:
            code = "OK" if r.decision != "ERROR" else "ERROR"
            self._finish(PartResult(r.part_id, r.decision, code, r.error or "", r.frame_id, _score(r.score),
                                    _score(r.normalized_score), r.latency_ms, r.capture_ts, len(r.regions)), now)
            return True
        return False  # a result for a trigger of another client

    def tick(self, now: float) -> bool:
        """Apply the deadline and forget old outstanding triggers; True when the PLC's view changed."""
        while self._outstanding and self._outstanding[0][2] <= now:
            self._outstanding.popleft()
        if self.phase != BUSY or self.deadline is None or now < self.deadline:
            return False
        self.counters.timeouts += 1
        self._outstanding.append((self.part_id, self.deadline, now + self.late_window_s))
        self._finish(self._error("TIMEOUT", f"no result within {self.deadline_s * 1000:g} ms of the trigger"), now)
        return True

    def ack(self, now: float) -> bool:
        """The PLC raised ResultAck: drop ResultValid, Ready again. False (a handshake error) without ResultValid."""
        if self.phase != VALID:
            self.counters.handshake_errors += 1
            self.last_error = f"ResultAck while {self.phase}; ignored"
            return False
        self.phase = READY
        return True

    def link(self, up: bool, reason: str) -> None:
        self.link_up, self.link_reason = up, reason

    # -- internals -------------------------------------------------------------------------------------------
    def _error(self, code: str, message: str) -> PartResult:
        return PartResult(self.part_id or "", "ERROR", code, message)

    def _finish(self, r: PartResult, now: float) -> None:
        elapsed = 0.0 if self.triggered_at is None else (now - self.triggered_at) * 1000
        self.result = dataclasses.replace(r, response_ms=round(elapsed, 3))
        c = self.counters
        if r.decision == "PASS":
            c.passed += 1
        elif r.decision == "FAIL":
            c.failed += 1
        else:
            c.errors += 1
        self.phase, self.deadline = VALID, None
