"""The station's state, folded from messages (pure), and its pictures."""

from __future__ import annotations

import cv2
import numpy as np

from inspector.protocol.messages import (
    EndOfStream,
    Event,
    Heartbeat,
    MaskInfo,
    Preview,
    Region,
    Result,
    Status,
)
from inspector.station import images
from inspector.station.state import StationState


def _result(i: int, decision: str, ns: float | None = 0.5, **kw) -> Result:
    return Result("l1", "cable", i, None, 100.0 + i, decision, ns, ns, 1.0, latency_ms=float(i), model_sha="a" * 64,
                  calibration_id="cable-1", backend="fake", frame_size=(64, 48), **kw)


def _hb(**kw) -> Heartbeat:
    base = dict(line="l1", ts=1.0, seq=0, uptime_s=1.0, fps=12.5, frames=10, results=10, dropped=2, errors=0,
                queue_depth=0, queue_size=8, backend="fake", product="cable", calibration_id="cable-1", camera="up",
                paused=False, mode="continuous", audit="ok", drift="raised", drift_stats={"reject_rate": 0.5})
    return Heartbeat(**{**base, **kw})


def _png(img) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


def test_counts_yield_latency_chart_and_the_bounded_gallery():
    st = StationState(gallery=3, chart_points=5, events=2, keep=4)
    for i in range(10):
        st.apply(_result(i, "FAIL" if i % 2 else "PASS", 1.5 if i % 2 else 0.5), None, float(i), 1000.0 + i)
    st.apply(_result(10, "ERROR", None, error="inference failed"), None, 10.0, 1010.0)
    st.apply(_hb(), None, 10.5, 1010.5)
    for k in range(3):
        st.apply(Event("l1", 2.0 + k, "camera_lost", f"gone {k}"), None, 11.0, 1011.0)
    line = st.snapshot(12.0, 1012.0, {"l1": {"estimate": 0.01, "lower": 0.0, "upper": 0.05, "n": 99}})["lines"][0]
    assert line["counts"] == {"PASS": 5, "FAIL": 5, "ERROR": 1} and line["total"] == 11
    assert line["yield"] == 5 / 11 and line["since"] == 1000.0
    assert line["latency_p50_ms"] == 5.0 and line["fps"] == 12.5 and line["dropped"] == 2
    assert line["heartbeat_age_s"] == 1.5 and line["drift"] == "raised" and line["drift_stats"]["reject_rate"] == 0.5
    assert [s[0] for s in line["scores"]] == [6, 7, 8, 9, 10] and line["scores"][-1] == [10, None, "ERROR"]
    assert [r["frame_id"] for r in line["rejects"]] == [10, 9, 7]  # newest first, at most 3
    assert line["rejects"][0]["error"] == "inference failed" and not line["rejects"][0]["has_frame"]
    assert [e["message"] for e in line["events"]] == ["gone 2", "gone 1"]
    assert line["expected_frr"]["upper"] == 0.05 and line["model_sha"] == "a" * 12 and line["state"] == "running"
    assert len(st.reject_index) == 4  # a few more than shown stay reviewable; older ones leave memory
    assert st.reject(min(st.reject_index)).result.frame_id == 5


def test_a_reject_frame_joins_its_result_and_live_previews_count_up():
    st = StationState()
    r = _result(4, "FAIL", 1.5, regions=(Region((2, 2, 8, 8), 64, 0.9),), mask=MaskInfo(64, 48, "frame"))
    st.apply(r, b"mask", 0.0, 0.0)
    frame = np.full((48, 64, 3), 90, np.uint8)
    reject = Preview("l1", 1.0, 4, "cable", "FAIL", 1.5, r.regions, (64, 48), 64, 48, "png", "reject", r.capture_ts)
    st.apply(reject, _png(frame), 0.1, 0.1)
    entry = next(iter(st.reject_index.values()))
    assert entry.frame_png == _png(frame) and entry.image_version == 1 and entry.mask_png == b"mask"
    live = Preview("l1", 1.0, 5, "cable", "PASS", 0.5, (), (64, 48), 32, 24, "jpeg", "live", 105.0)
    st.apply(live, b"jpeg1", 0.2, 0.2)
    st.apply(live, b"jpeg2", 0.3, 0.3)
    assert st.live("l1").seq == 2 and st.live("l1").jpeg == b"jpeg2" and st.live_seqs() == {"l1": 2}
    st.mark_reviewed(entry.rid, {"verdict": "false_reject", "who": "ann"})
    assert st.snapshot(1.0, 1.0)["lines"][0]["rejects"][0]["review"]["who"] == "ann"


def test_states_follow_status_heartbeats_and_the_end_of_stream():
    st = StationState()
    st.apply(_hb(paused=True), None, 0.0, 0.0)
    assert st.snapshot(0, 0)["lines"][0]["state"] == "paused"
    st.apply(Status("l1", 1.0, "stopping"), None, 1.0, 1.0)
    st.apply(_hb(), None, 1.1, 1.1)
    assert st.snapshot(0, 0)["lines"][0]["state"] == "stopping"
    st.apply(EndOfStream("l1", 2.0, "signal", 10, 10, 0), None, 2.0, 2.0)
    line = st.snapshot(0, 0)["lines"][0]
    assert line["state"] == "ended" and line["events"][0]["kind"] == "end_of_stream"
    st.apply(_hb(), None, 3.0, 3.0)  # the daemon came back
    assert st.snapshot(0, 0)["lines"][0]["state"] == "running"


def test_pictures_outline_regions_and_place_a_mask_space_mask_in_its_roi():
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 255
    r = _result(1, "FAIL", 2.0, regions=(Region((24, 20, 16, 16), 256, 0.9),), mask=MaskInfo(8, 8, "mask", (16, 16, 32, 32)))
    full = images.frame_mask(r, _png(mask))
    assert full.shape == (48, 64) and full[24, 24] == 255 and full[23, 30] == 0 and full[24:40, 24:40].all() and full.sum() == 255 * 256
    frame = np.full((48, 64, 3), 60, np.uint8)
    thumb = cv2.imdecode(np.frombuffer(images.reject_jpeg(r, _png(frame), _png(mask)), np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape[1] == 360 and thumb.std() > 5  # tinted and outlined, not a flat copy of the frame
    blank = images.reject_jpeg(r, None, None)  # before the frame arrives: a dark canvas with the boxes
    assert cv2.imdecode(np.frombuffer(blank, np.uint8), cv2.IMREAD_COLOR).shape[1] == 360
    header = Preview("l1", 1.0, 1, "cable", "FAIL", 2.0, r.regions, (64, 48), 32, 24, "jpeg", "live", 101.0)
    small = cv2.imencode(".jpg", np.full((24, 32, 3), 60, np.uint8))[1].tobytes()
    live = cv2.imdecode(np.frombuffer(images.live_jpeg(header, small), np.uint8), cv2.IMREAD_COLOR)
    assert live.shape[1] == images.MIN_WIDTH
    # The outline sits where the region is (x 24..40, y 20..36 of 64 px -> x 96..160, y 80..144 of 256 px), yellow.
    assert live[80:144, 88:100, 2].max() > 200 and live[5:20, 5:20].std() < 5
