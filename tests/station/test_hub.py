"""The station's hub (station/hub.py): the FRR promise it shows comes from the sealed calibration record the line
runs, and is left out when there is none to show."""

from __future__ import annotations

from inspector.calibrate.record import calibration_path, save_calibration
from inspector.protocol.messages import Heartbeat
from inspector.station.config import StationConfig
from inspector.station.hub import Hub
from inspector.station.state import StationState
from tests.calibrate.test_record import make_record


def _hub(home) -> Hub:
    state = StationState(gallery=4, chart_points=10, events=4, keep=4)
    return Hub(StationConfig(connect=("tcp://127.0.0.1:1",), home=str(home)), state)


def _runs(hub: Hub, calibration_id: str) -> None:
    hb = Heartbeat("l1", 1.0, 0, 1.0, 10.0, 5, 5, 0, 0, 0, 8, "fake", "cable", calibration_id, "up", False,
                   "continuous")
    hub.state.apply(hb, None, 1.0, 1.0)


def test_the_promise_shown_is_the_sealed_record_the_line_runs(tmp_path):
    rec = make_record()
    save_calibration(rec, calibration_path(tmp_path, "cable"))
    hub = _hub(tmp_path)
    try:
        _runs(hub, rec.id)
        assert hub.expected_frr() == {"l1": {"estimate": rec.expected_frr.estimate, "lower": 0.0, "upper": 0.161,
                                             "n": 21}}
        _runs(hub, "cable-other")  # the line runs another calibration than the one on this machine
        assert hub.expected_frr() == {"l1": None}
    finally:
        hub.stop()


def test_no_promise_for_a_hand_set_threshold_or_a_hand_edited_record(tmp_path):
    manual = make_record(id="cable-manual", policy="manual", expected_frr=None)
    path = calibration_path(tmp_path, "cable")
    save_calibration(manual, path)
    hub = _hub(tmp_path)
    try:
        _runs(hub, "cable-manual")
        assert hub.expected_frr() == {"l1": None}  # --set-threshold: the rates were not re-estimated
        save_calibration(make_record(id="cable-edited"), path)
        sealed = path.read_text()
        assert "image_threshold: 2.5" in sealed
        path.write_text(sealed.replace("image_threshold: 2.5", "image_threshold: 9.5"))
        _runs(hub, "cable-edited")
        assert hub.expected_frr() == {"l1": None}  # refused: content hash mismatch
    finally:
        hub.stop()
