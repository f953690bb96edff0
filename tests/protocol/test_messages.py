"""Message encoding: round trips, the wire layout, and refusal of malformed input."""

from __future__ import annotations

import json

import pytest

from inspector.errors import ProtocolError
from inspector.protocol import messages as m


def _result(**kw) -> m.Result:
    base = dict(line="l1", product="cable", frame_id=7, part_id="P-1", capture_ts=1.5, decision="FAIL", score=0.8,
                normalized_score=1.6, threshold=0.5, regions=(m.Region((1, 2, 3, 4), 12, 0.9),), model_sha="abc",
                calibration_id="cable-1", backend="onnxruntime", frame_size=(64, 48),
                mask=m.MaskInfo(64, 48, "frame"), publish_ts=1.6, latency_ms=100.0)
    base.update(kw)
    return m.Result(**base)


def test_a_region_without_kind_decodes_as_a_defect_and_an_unknown_kind_is_refused():
    frames = m.encode(_result())
    header = json.loads(frames[1])
    del header["regions"][0]["kind"]  # a header from before region kinds
    back, _ = m.decode([frames[0], json.dumps(header).encode()])
    assert back.regions[0].kind == "defect"
    header["regions"][0]["kind"] = "ghost"
    with pytest.raises(ProtocolError):
        m.decode([frames[0], json.dumps(header).encode()])


def test_result_round_trip_with_mask():
    msg = _result()
    frames = m.encode(msg, b"\x89PNG fake")
    assert frames[0] == b"inspector/l1/result"
    header = json.loads(frames[1])
    for key in ("schema", "line", "product", "frame_id", "part_id", "capture_ts", "publish_ts", "latency_ms",
                "decision", "score", "normalized_score", "threshold", "regions", "model_sha", "calibration_id"):
        assert key in header, key
    assert header["schema"] == m.SCHEMA and header["type"] == "result"
    assert header["regions"] == [{"bbox": [1, 2, 3, 4], "area": 12, "peak": 0.9, "kind": "defect"}]
    back, mask = m.decode(frames)
    assert back == msg and mask == b"\x89PNG fake"


@pytest.mark.parametrize("msg", [
    m.Heartbeat("l1", 2.0, 3, 10.0, 12.5, 100, 99, 1, 0, 2, 8, "torch", "cable", "c-1", "up", False, "continuous"),
    m.Status("l1", 2.0, "running", "cable", "torch", {"reason": "x"}),
    m.Event("l1", 2.0, "camera_lost", "gone", {"source": "device:0"}),
    m.EndOfStream("l1", 2.0, "signal", 10, 10, 0),
])
def test_other_messages_round_trip(msg):
    frames = m.encode(msg)
    kind = "status" if msg.type == "end_of_stream" else msg.type
    assert frames[0] == f"inspector/l1/{kind}".encode() and len(frames) == 2
    back, mask = m.decode(frames)
    assert back == msg and mask is None
    assert m.kind_of(back) == kind


def test_non_finite_score_is_null_not_invalid_json():
    frames = m.encode(_result(score=float("nan"), normalized_score=float("inf"), mask=None))
    header = json.loads(frames[1])
    assert header["score"] is None and header["normalized_score"] is None


def test_error_result_has_no_score():
    r = _result(decision="ERROR", score=None, normalized_score=None, threshold=None, regions=(), mask=None,
                error="inference failed")
    back, _ = m.decode(m.encode(r))
    assert back.decision == "ERROR" and back.error == "inference failed" and back.score is None


def test_unknown_header_keys_are_ignored():
    frames = m.encode(_result(mask=None))
    h = json.loads(frames[1])
    h["added_in_a_later_minor"] = 1
    back, _ = m.decode([frames[0], json.dumps(h).encode()])
    assert back.frame_id == 7


@pytest.mark.parametrize("frames, why", [
    ([b"inspector/l1/result"], "expected 2 or 3"),
    ([b"inspector/l1/result", b"not json"], "not valid JSON"),
    ([b"inspector/l1/result", b"[1]"], "JSON object"),
    ([b"inspector/l1/result", b'{"schema": 99, "type": "result"}'], "schema"),
    ([b"inspector/l1/event", b'{"schema": 1, "type": "nope", "line": "l1"}'], "unknown message type"),
    ([b"inspector/other/event", b'{"schema": 1, "type": "event", "line": "l1", "ts": 1, "kind": "k",'
      b' "message": "x"}'], "does not match"),
    ([b"inspector/l1/event", b'{"schema": 1, "type": "event", "line": "l1"}'], "lacks required key"),
])
def test_decode_refuses_malformed(frames, why):
    with pytest.raises(ProtocolError, match=why):
        m.decode(frames)


def test_mask_frame_only_with_a_described_mask():
    with pytest.raises(ProtocolError):
        m.encode(_result(mask=None), b"png")
    frames = m.encode(m.Event("l1", 1.0, "k", "x"))
    with pytest.raises(ProtocolError, match="third frame"):
        m.decode([*frames, b"png"])


def test_bad_decision_and_topic_kind():
    with pytest.raises(ProtocolError):
        _result(decision="MAYBE")
    with pytest.raises(ProtocolError):
        m.topic("l1", "results")


def _preview(**kw) -> m.Preview:
    base = dict(line="l1", ts=3.0, frame_id=9, product="cable", decision="FAIL", normalized_score=1.4,
                regions=(m.Region((1, 2, 3, 4), 12, 0.9),), frame_size=(64, 48), width=32, height=24,
                encoding="jpeg", reason="live", capture_ts=2.9)
    base.update(kw)
    return m.Preview(**base)


def test_preview_round_trip_on_its_own_topic_with_its_image():
    msg = _preview()
    frames = m.encode(msg, b"\xff\xd8jpeg")
    assert frames[0] == b"inspector/l1/preview" and len(frames) == 3
    back, image = m.decode(frames)
    assert back == msg and image == b"\xff\xd8jpeg" and m.kind_of(back) == "preview"
    # The preview topic is not one of the default kinds: a PLC's subscription never carries images.
    assert "preview" not in m.KINDS and "preview" in m.ALL_KINDS


def test_preview_without_image_or_with_a_bad_encoding_is_refused():
    with pytest.raises(ProtocolError, match="third frame"):
        m.encode(_preview())
    frames = m.encode(_preview(), b"x")
    with pytest.raises(ProtocolError, match="third frame"):
        m.decode(frames[:2])
    with pytest.raises(ProtocolError, match="encoding"):
        _preview(encoding="gif")


def test_heartbeat_drift_fields_round_trip_and_default_for_old_publishers():
    hb = m.Heartbeat("l1", 2.0, 3, 10.0, 12.5, 100, 99, 1, 0, 2, 8, "torch", "cable", "c-1", "up", False,
                     "continuous", "ok", 4, 1, drift="raised", drift_stats={"reject_rate": 0.5, "score_shift": 1.2})
    back, _ = m.decode(m.encode(hb))
    assert back == hb and back.drift == "raised" and back.drift_stats["score_shift"] == 1.2
    assert (back.audit_spooled, back.audit_lost) == (4, 1)  # beside the audit figures, each in its own field
    header = json.loads(m.encode(hb)[1])
    del header["drift"], header["drift_stats"]  # a daemon from before drift existed
    old, _ = m.decode([b"inspector/l1/heartbeat", json.dumps(header).encode()])
    assert old.drift == "off" and old.drift_stats == {}
