"""Liveness of the daemon from message times alone."""

from __future__ import annotations

from inspector.bridge.link import Liveness


def test_down_within_two_heartbeat_intervals_and_up_again():
    lv = Liveness(interval_s=1.0)
    assert not lv.up and lv.check(100.0) is None  # never seen: not a transition
    assert lv.message(0.0) == (True, "messages from the daemon")
    assert lv.message(1.0) is None
    assert lv.check(2.5) is None  # 1.5 intervals: still up (a late heartbeat is fine)
    t = lv.check(2.51)
    assert t is not None and t[0] is False and "no message from the daemon for 1.5 s" in t[1]
    assert not lv.up and lv.check(3.0) is None  # reported once
    assert lv.message(9.0) == (True, "messages from the daemon")


def test_end_of_stream_is_down_at_once():
    lv = Liveness(interval_s=1.0)
    lv.message(0.0)
    up, why = lv.end(0.1, "signal")
    assert not up and "ended its stream (signal)" in why
    assert lv.end(0.2, "signal") is None
