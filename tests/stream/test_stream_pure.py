"""The pure cores: stall detection, backoff, camera state, queue policies, triggers, decisions, config, control."""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest

from inspector.errors import ConfigError, DecisionError, InspectorError
from inspector.stream import control
from inspector.stream.config import load_daemon_config
from inspector.stream.decide import decide, encode_png, mask_image
from inspector.stream.frames import Frame, FrameQueue, TriggerBook
from inspector.stream.sources import gstreamer_available
from inspector.stream.stall import Backoff, CameraState, StallDetector

from .fakes import FakeCalibration


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


def _f(i: int) -> Frame:
    return Frame(i, 0.0, 0.0, None)


def test_queue_drop_oldest_keeps_the_latest():
    q = FrameQueue(3, "drop_oldest")
    for i in range(5):
        assert q.put(_f(i))
    assert q.dropped == 2
    assert [f.frame_id for f in q.get_batch(10, 0, 0)] == [2, 3, 4]


def test_queue_drop_newest_refuses_new():
    q = FrameQueue(2, "drop_newest")
    assert [q.put(_f(i)) for i in range(4)] == [True, True, False, False]
    assert q.dropped == 2 and [f.frame_id for f in q.get_batch(10, 0, 0)] == [0, 1]


def test_queue_block_waits_and_close_drains():
    q = FrameQueue(1, "block")
    assert q.put(_f(0))
    assert not q.put(_f(1), timeout=0.05) and q.dropped == 0  # timed out, not dropped
    t = threading.Thread(target=lambda: q.put(_f(1)))
    t.start()
    assert [f.frame_id for f in q.get_batch(1, 1.0, 0)] == [0]
    t.join(2)
    q.close()
    assert [f.frame_id for f in q.get_batch(4, 1.0, 1.0)] == [1]
    assert q.get_batch(4, 0.01, 0.01) == [] and not q.put(_f(2)) and q.dropped == 1


def test_queue_batches_within_the_fill_budget():
    q = FrameQueue(10, "block")
    q.put(_f(0))
    t0 = time.monotonic()
    assert len(q.get_batch(4, 1.0, 0.05)) == 1  # waited at most the fill budget for more
    assert time.monotonic() - t0 < 0.5
    for i in range(6):
        q.put(_f(i))
    assert len(q.get_batch(4, 1.0, 0.05)) == 4


def test_trigger_book():
    b = TriggerBook()
    b.add("A", 10.0)
    b.add("B", 11.0)
    assert b.take(9.0) is None  # a frame captured before the trigger does not serve it
    assert b.take(10.5) == "A"
    assert b.expire(12.0, 2.0) == [] and b.expire(13.5, 2.0) == [("B", 11.0)] and len(b) == 0


def test_decide_pass_fail_and_regions_in_frame_pixels():
    cal = FakeCalibration(image_threshold=0.5, pixel_threshold=0.6, min_region_area=4)
    amap = np.zeros((16, 16), np.float32)
    amap[4:8, 2:6] = 0.9  # 16 px region
    amap[12, 12] = 0.95  # a single-pixel speck: below min_region_area
    d = decide(0.7, amap, cal, frame_hw=(160, 320))
    assert d.decision == "FAIL" and d.normalized_score == pytest.approx(1.4) and d.threshold == 0.5
    assert len(d.regions) == 1
    r = d.regions[0]
    assert r.bbox == (40, 40, 80, 40) and r.area == 16 * 20 * 10 and r.peak == pytest.approx(0.9)
    assert d.mask.sum() == 16 and not d.mask[12, 12]  # the speck is not in the published mask
    assert decide(0.49, amap, cal, (160, 320)).decision == "PASS"
    assert decide(0.5, amap, cal, (160, 320)).decision == "FAIL"  # FAIL iff score >= threshold


def test_a_fail_with_no_region_above_the_pixel_threshold_shows_its_peak():
    cal = FakeCalibration(image_threshold=0.5, pixel_threshold=5.0, min_region_area=4)
    amap = np.zeros((16, 16), np.float32)
    amap[10:13, 3:7] = 1.0
    d = decide(0.7, amap, cal, frame_hw=(160, 160))
    assert d.decision == "FAIL" and len(d.regions) == 1 and d.regions[0].kind == "peak"
    assert d.regions[0].bbox == (30, 100, 40, 30) and d.mask.sum() == 12
    passed = decide(0.3, amap, cal, frame_hw=(160, 160))  # a PASS shows nothing below the pixel threshold
    assert passed.regions == () and not passed.mask.any()
    with_region = decide(0.7, amap * 10, cal, frame_hw=(160, 160))
    assert [r.kind for r in with_region.regions] == ["defect"]


@pytest.mark.parametrize("score", [float("nan"), float("inf")])
def test_a_score_that_is_not_finite_is_an_error_never_a_pass(score):
    cal = FakeCalibration(image_threshold=0.5, pixel_threshold=0.6, min_region_area=4)
    with pytest.raises(DecisionError, match="not a finite number"):
        decide(score, np.zeros((8, 8), np.float32), cal, frame_hw=(80, 80))
    amap = np.zeros((8, 8), np.float32)
    amap[2, 2] = np.nan
    with pytest.raises(DecisionError, match="NaN"):
        decide(0.1, amap, cal, frame_hw=(80, 80))


def test_decide_maps_regions_through_the_roi():
    cal = FakeCalibration(image_threshold=1.0, pixel_threshold=0.5, min_region_area=1)
    amap = np.zeros((10, 10), np.float32)
    amap[0:2, 0:5] = 1.0
    d = decide(0.1, amap, cal, frame_hw=(480, 640), roi=(100, 50, 200, 100))
    assert d.regions[0].bbox == (100, 50, 100, 20)


def test_mask_png_decodes_to_the_stated_size():
    mask = np.zeros((16, 16), bool)
    mask[4:8, 2:6] = True
    img = mask_image(mask, "frame", (48, 64), roi=(8, 0, 32, 48))
    back = cv2.imdecode(np.frombuffer(encode_png(img), np.uint8), cv2.IMREAD_UNCHANGED)
    assert back.shape == (48, 64) and back.dtype == np.uint8
    assert set(np.unique(back)) == {0, 255} and back[:, :8].max() == 0 and back[:, 40:].max() == 0
    assert mask_image(mask, "mask", (48, 64)).shape == (16, 16)


def test_gstreamer_check_reads_build_info():
    assert not gstreamer_available("Video I/O:\n    GStreamer:                   NO\n")
    assert gstreamer_available("Video I/O:\n    GStreamer:                   YES (1.20.3)\n")


def _write(tmp_path, text: str):
    p = tmp_path / "d.yaml"
    p.write_text(text)
    return p


def test_config_defaults_and_relative_paths(tmp_path):
    (tmp_path / "v.avi").write_bytes(b"")
    cfg = load_daemon_config(_write(tmp_path, "product: cable\nsource: {kind: file, uri: v.avi}\n"))
    assert cfg.source.uri == str(tmp_path / "v.avi") and cfg.home == str(tmp_path)
    assert cfg.audit.dir == str(tmp_path / "audit") and cfg.zmq.publish == ("tcp://*:5555",)
    assert cfg.spin is False  # the daemon's onnxruntime threads sleep when idle unless configured


def test_the_example_config_loads_with_every_key_it_documents():
    from pathlib import Path

    cfg = load_daemon_config(Path(__file__).parents[2] / "deploy" / "inspector.example.yaml")
    assert cfg.spin is False and cfg.precision == "auto" and cfg.product


@pytest.mark.parametrize("text, words", [
    ("product: cable\nsorce: {}\n", ["sorce", "allowed keys"]),
    ("product: cable\npipeline: {drop_policy: sometimes}\n", ["pipeline.drop_policy", "allowed"]),
    ("product: cable\npipeline: {queue_size: 0}\n", ["pipeline.queue_size", "minimum"]),
    ("product: cable\nsource: {kind: device, uri: cam}\n", ["source.uri", "device index"]),
    ("product: cable\nzmq: {curve: {enabled: true}}\n", ["server_secret_key", "inspector keys"]),
    ("line: 'a/b'\nproduct: cable\n", ["line"]),
    ("source: {kind: memory, width: 8, height: 8}\n", ["product", "required"]),
    ("product: cable\nzmq: {publish: ['localhost:5555']}\n", ["endpoint"]),
])
def test_config_errors_name_the_key_and_file(tmp_path, text, words):
    with pytest.raises(ConfigError) as e:
        load_daemon_config(_write(tmp_path, text))
    msg = str(e.value)
    assert "d.yaml" in msg
    for w in words:
        assert w in msg


def test_control_parse_and_handle():
    calls = []
    handlers = {
        "status": lambda: {"ok": 1},
        "trigger": lambda part_id: calls.append(part_id) or {"part_id": part_id},
        "switch_product": lambda product: (_ for _ in ()).throw(InspectorError(f"no bundle for {product}")),
        "pause": lambda: {}, "resume": lambda: {}, "reload_calibration": lambda: {},
    }
    r = json.loads(control.handle(b'{"id": 5, "cmd": "trigger", "part_id": "P9"}', handlers))
    assert r == {"id": 5, "ok": True, "result": {"part_id": "P9"}} and calls == ["P9"]
    r = json.loads(control.handle(b'{"id": 6, "cmd": "switch_product", "product": "x"}', handlers))
    assert r["ok"] is False and "no bundle for x" in r["error"] and r["id"] == 6
    for bad, word in ((b"\xff\xfe", "JSON"), (b"[]", "object"), (b'{"id": 1}', "cmd"),
                      (b'{"id": 2, "cmd": "explode"}', "unknown"), (b'{"id": 3, "cmd": "trigger"}', "part_id"),
                      (b'{"id": 4, "cmd": "trigger", "part_id": 7}', "part_id")):
        r = json.loads(control.handle(bad, handlers))
        assert r["ok"] is False and word in r["error"], (bad, r)
