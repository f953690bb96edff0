"""The part handshake as a pure state machine: every transition, the deadline, late results, refusals."""

from __future__ import annotations

import math

from inspector.bridge.handshake import Handshake
from inspector.protocol.messages import Region, Result


def _r(part_id: str | None, decision: str = "PASS", frame_id: int = 7, **kw) -> Result:
    base = dict(line="l", product="p", frame_id=frame_id, part_id=part_id, capture_ts=100.0, decision=decision,
                score=0.1 if decision != "ERROR" else None, normalized_score=0.4 if decision != "ERROR" else None,
                threshold=0.25, latency_ms=12.5, regions=(Region((1, 2, 3, 4), 12, 0.9),) * 2)
    base.update(kw)
    return Result(**base)


def _up(deadline_s: float = 0.2) -> Handshake:
    hs = Handshake(deadline_s, late_window_s=5.0)
    hs.link(True, "messages")
    return hs


def test_the_happy_path():
    hs = _up()
    assert (hs.state, hs.busy, hs.result_valid) == ("Ready", False, False)
    assert hs.trigger("P1", 10.0) == "P1"
    assert (hs.state, hs.busy, hs.result_valid, hs.deadline) == ("Busy", True, False, 10.2)
    assert hs.on_result(_r("P1", "FAIL", score=0.5, normalized_score=2.0), 10.05)
    r = hs.result
    assert (hs.state, hs.busy, hs.result_valid) == ("Busy", False, True)
    assert (r.part_id, r.decision, r.code, r.frame_id, r.regions, r.latency_ms) == ("P1", "FAIL", "OK", 7, 2, 12.5)
    assert r.response_ms == 50.0 and not r.passed
    assert not hs.tick(10.3)  # the deadline of an answered part does nothing
    assert hs.ack(10.1)
    assert (hs.state, hs.result_valid) == ("Ready", False)
    assert hs.trigger("P2", 11.0) == "P2" and hs.on_result(_r("P2"), 11.01) and hs.result.passed
    c = hs.counters
    assert (c.parts, c.passed, c.failed, c.errors, c.timeouts, c.handshake_errors) == (2, 1, 1, 0, 0, 0)


def test_a_daemon_error_is_an_error_in_time():
    hs = _up()
    hs.trigger("P1", 0.0)
    hs.on_result(_r("P1", "ERROR", error="inference failed: boom"), 0.01)
    r = hs.result
    assert (r.decision, r.code, r.message, r.score, r.passed) == ("ERROR", "ERROR", "inference failed: boom", None,
                                                                  False)
    assert hs.counters.errors == 1


def test_the_deadline_rejects_and_a_late_result_never_becomes_the_next_parts():
    hs = _up(0.2)
    hs.trigger("P1", 0.0)
    assert not hs.tick(0.19)
    assert hs.tick(0.2)
    r = hs.result
    assert (r.part_id, r.decision, r.code, r.passed, r.response_ms) == ("P1", "ERROR", "TIMEOUT", False, 200.0)
    assert hs.counters.timeouts == 1 and hs.outstanding == 1
    hs.ack(0.21)
    hs.trigger("P2", 0.22)
    # P1's result comes now, while P2 waits: recorded as late, P2 still Busy.
    assert hs.on_result(_r("P1", "FAIL", frame_id=3), 0.25)
    assert hs.busy and hs.result.part_id == "P1" and hs.result.code == "TIMEOUT"
    assert hs.late.part_id == "P1" and hs.late.decision == "FAIL" and hs.late.lateness_ms == 50.0
    assert hs.counters.late_results == 1 and hs.outstanding == 0
    hs.on_result(_r("P2", frame_id=4), 0.3)
    assert hs.result.part_id == "P2" and hs.result.frame_id == 4 and hs.result.code == "OK"


def test_a_repeated_part_id_gets_its_own_result_not_the_late_one():
    hs = _up(0.2)
    hs.trigger("SAME", 0.0)
    hs.tick(0.2)
    hs.ack(0.21)
    hs.trigger("SAME", 0.3)  # the PLC re-inspects the part
    # The daemon answers triggers in order: the first result is the first trigger's, late.
    hs.on_result(_r("SAME", "FAIL", frame_id=1), 0.31)
    assert hs.busy and hs.counters.late_results == 1
    hs.on_result(_r("SAME", "PASS", frame_id=2), 0.32)
    assert hs.result_valid and hs.result.frame_id == 2


def test_outstanding_triggers_are_forgotten_after_the_late_window():
    hs = _up(0.2)
    hs.trigger("P1", 0.0)
    hs.tick(0.2)
    assert hs.outstanding == 1
    hs.tick(5.1)
    assert hs.outstanding == 1
    hs.tick(5.2)
    assert hs.outstanding == 0
    hs.ack(5.3)
    hs.trigger("P1", 6.0)  # the same id, much later: its result is its own
    hs.on_result(_r("P1"), 6.01)
    assert hs.result_valid and hs.result.code == "OK" and hs.counters.late_results == 0


def test_trigger_is_answered_at_once_when_it_cannot_be_inspected():
    hs = Handshake(0.2)
    assert hs.state == "Fault"
    assert hs.trigger("P1", 1.0) is None
    assert hs.result_valid and (hs.result.code, hs.result.decision) == ("NOT_READY", "ERROR")
    assert "daemon unreachable" in hs.result.message
    hs.ack(1.1)
    hs.link(True, "up")
    hs.paused = True
    assert hs.state == "Paused"
    assert hs.trigger("P2", 2.0) is None and "paused" in hs.result.message
    hs.ack(2.1)
    hs.paused = False
    assert hs.trigger("", 3.0) is None and hs.result.code == "BAD_REQUEST"
    assert hs.counters.parts == 3 and hs.counters.errors == 3


def test_handshake_errors_are_counted_and_change_nothing():
    hs = _up()
    assert not hs.ack(0.0)  # ResultAck without ResultValid
    hs.trigger("P1", 1.0)
    assert hs.trigger("P2", 1.01) is None  # Trigger while Busy
    assert hs.part_id == "P1" and hs.busy and "while Busy" in hs.last_error
    hs.on_result(_r("P1"), 1.02)
    assert hs.trigger("P3", 1.03) is None  # Trigger while ResultValid, before ResultAck
    assert hs.result.part_id == "P1"
    assert hs.counters.handshake_errors == 3 and hs.counters.parts == 1


def test_refused_triggers():
    hs = _up()
    hs.trigger("P1", 0.0)
    assert hs.refused("P1", "'trigger' needs 'part_id'", 0.01, maybe_delivered=False)
    assert hs.result.code == "NOT_READY" and "not taken" in hs.result.message and hs.outstanding == 0
    hs.ack(0.02)
    hs.trigger("P2", 0.1)
    assert hs.refused("P2", "no reply after 3 attempts", 0.15, maybe_delivered=True)
    assert hs.outstanding == 1  # it may have reached the daemon: its result would be late
    hs.ack(0.16)
    hs.trigger("P3", 0.2)
    hs.on_result(_r("P2"), 0.21)
    assert hs.busy and hs.counters.late_results == 1
    assert not hs.refused("P2", "again", 0.22, maybe_delivered=True)  # not the current part: nothing


def test_results_of_other_clients_and_continuous_frames_are_ignored():
    hs = _up()
    assert not hs.on_result(_r(None), 0.0)
    hs.trigger("P1", 0.0)
    assert not hs.on_result(_r("SOMEONE-ELSE"), 0.01)
    assert hs.busy


def test_non_finite_scores_are_none():
    hs = _up()
    hs.trigger("P1", 0.0)
    hs.on_result(_r("P1", score=math.nan, normalized_score=math.inf), 0.01)
    assert hs.result.score is None and hs.result.normalized_score is None
