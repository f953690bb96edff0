"""Pure camera-health decisions (stream/stall.py): stall detection, backoff, the camera state machine."""

from __future__ import annotations

import pytest

from inspector.stream.stall import Backoff, CameraState, StallDetector


def test_stall_detector_uses_the_given_clock():
    s = StallDetector(timeout_s=2.0)
    assert not s.stalled(100.0)  # nothing known yet
    s.opened(100.0)
    assert not s.stalled(101.9) and s.stalled(102.1)
    s.frame(102.0)
    assert not s.stalled(103.9) and s.stalled(104.5)
    assert s.idle_s(104.5) == pytest.approx(2.5)
    assert not StallDetector(0.0, last_frame=0.0).stalled(1e9)  # disabled


def test_backoff_is_exponential_and_capped():
    b = Backoff(initial=0.5, maximum=4.0, factor=2.0)
    assert [b.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next_delay() == 0.5


def test_camera_state_reports_each_outage_once():
    c = CameraState()
    assert c.up(0.0) is None  # first frame: no "restored"
    assert c.lost(10.0) == ("camera_lost", 0.0)
    assert c.lost(11.0) is None and c.lost(12.0) is None  # failed reconnects are the same outage
    kind, outage = c.up(13.5)
    assert kind == "camera_restored" and outage == pytest.approx(3.5)
    assert c.outages == 1 and c.state == "up"
