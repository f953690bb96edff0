"""The pipeline (stream/pipeline.py) end to end on loopback sockets with the fake product: one result per
inspected frame in order, ERROR for unusable frames, product switches under load, and the end-of-stream
identity results == frames - dropped + trigger_errors under every drop policy."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.stream.audit import read_records

from .fakes import FRAME_HW, SQUARE, FakeLoader, expected_decision, make_frame, write_video
from .harness import Collected, Line, config


def test_one_result_per_frame_in_order_with_header_mask_heartbeats_audit(tmp_path):
    video = write_video(tmp_path / "v.avi", 30)
    with Line(config(tmp_path, {"kind": "file", "uri": str(video)})) as line:
        got = line.collect(line.go())
        assert got.eos is not None, "no end of stream"
        assert line.stop() == 0
    assert [r.frame_id for r in got.results] == list(range(30))
    assert [r.decision for r in got.results] == [expected_decision(i) for i in range(30)]
    assert got.eos.frames == 30 and got.eos.results == 30 and got.eos.dropped == 0 and got.eos.reason == "source_ended"
    assert got.eos.trigger_errors == 0 and got.eos.audit_lost == 0
    for r in got.results:
        assert r.line == "t1" and r.product == "cable" and r.model_sha == "sha-cable"
        assert r.calibration_id == "fake-cal-1" and r.threshold == 0.25 and r.frame_size == (64, 48)
        assert r.publish_ts >= r.capture_ts and r.latency_ms > 0 and r.part_id is None
        assert r.normalized_score == pytest.approx(r.score / 0.25) and r.source_file is None
        if r.decision == "FAIL":
            assert r.mask is not None and (r.mask.width, r.mask.height, r.mask.space) == (64, 48, "frame")
            png = cv2.imdecode(np.frombuffer(got.masks[r.frame_id], np.uint8), cv2.IMREAD_UNCHANGED)
            assert png.shape == (48, 64)
            assert len(r.regions) == 1
            x, y, w, h = r.regions[0].bbox
            assert abs(x - SQUARE[0]) <= 4 and abs(y - SQUARE[1]) <= 4 and abs(w - SQUARE[2]) <= 8
            assert png[y + h // 2, x + w // 2] == 255 and png[2, 2] == 0
        else:
            assert r.mask is None and r.frame_id not in got.masks and r.regions == ()
    hb = got.heartbeats[-1]
    assert hb.backend == "fake" and hb.product == "cable" and hb.queue_size == 4 and hb.mode == "continuous"
    assert {h.camera for h in got.heartbeats} <= {"connecting", "up", "ended"}
    assert [h.seq for h in got.heartbeats] == sorted(h.seq for h in got.heartbeats)
    records = [r for r in read_records(tmp_path / "audit") if r["type"] == "result"]
    assert [r["frame_id"] for r in records] == list(range(30))
    fails = [r for r in records if r["decision"] == "FAIL"]
    assert len(fails) == 10 and all(len(r["audit_images"]) == 2 for r in fails)
    assert all((tmp_path / "audit" / p).is_file() for r in fails for p in r["audit_images"])


def test_inference_failure_gives_error_results(tmp_path):
    video = write_video(tmp_path / "v.avi", 6)
    cfg = config(tmp_path, {"kind": "file", "uri": str(video)}, product="broken")
    with Line(cfg) as line:
        got = line.collect(line.go())
    assert [r.decision for r in got.results] == ["ERROR"] * 6
    assert all("inference failed: fake backend failure" in r.error for r in got.results)


def test_a_nan_score_gives_error_results_never_pass(tmp_path):
    video = write_video(tmp_path / "v.avi", 4)
    with Line(config(tmp_path, {"kind": "file", "uri": str(video)}, product="nan")) as line:
        got = line.collect(line.go())
    assert [r.decision for r in got.results] == ["ERROR"] * 4
    assert all("decision failed" in r.error and "not a finite number" in r.error for r in got.results)


def test_switch_product_under_load(tmp_path):
    n = 400
    cfg = config(tmp_path, {"kind": "memory", "width": 64, "height": 48, "frames": n},
                 pipeline={"queue_size": 8, "drop_policy": "block"})
    loader = FakeLoader(delay_s=0.002, load_s=0.2)  # loading takes a while, as an engine does
    with Line(cfg, loader=loader) as line:
        got = line.go()
        line.collect(got, 10, until=lambda g: len(g.results) >= 50)
        r = line.ctl.request("switch_product", product="cable2")
        assert r["ok"] and r["result"]["previous"] == "cable", r
        line.collect(got, 10, until=lambda g: g.results[-1].product == "cable2")
        old, new = loader.loaded[0].backend, loader.loaded[1].backend
        assert old.closed and not new.closed  # the old engine is released once the new one took over
        got = line.collect(got, 30)
        assert got.eos is not None
    products = [x.product for x in got.results]
    assert [x.frame_id for x in got.results] == list(range(n))  # nothing lost or reordered across the swap
    assert all(x.decision != "ERROR" for x in got.results)
    first = products.index("cable2")
    assert 50 <= first < n and set(products[:first]) == {"cable"} and set(products[first:]) == {"cable2"}
    assert all(x.calibration_id == "fake-cal-2" and x.threshold == 0.3 for x in got.results[first:])
    assert any(e.kind == "product_switched" for e in got.events)


def test_frames_of_the_product_size_only():
    """The fake product takes FRAME_HW frames; a sanity check of the fixtures the other tests rely on."""
    assert make_frame(0).shape == (*FRAME_HW, 3)
    assert FakeLoader().load("cable").backend.infer(make_frame(0)[None]).score[0] > 0.25
    assert isinstance(Collected().results, list)


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_end_of_stream_identity_holds_when_frames_are_dropped(tmp_path, policy):
    """"Every captured frame gets exactly one result" is false when frames are dropped; what holds is
    results == frames - dropped + trigger_errors, and every result is of a distinct captured frame, in order."""
    cfg = config(tmp_path, {"kind": "memory", "width": 64, "height": 48, "frames": 300},
                 pipeline={"queue_size": 2, "drop_policy": policy, "max_batch": 1})
    with Line(cfg, loader=FakeLoader(delay_s=0.01)) as line:
        got = line.collect(line.go(), 60)
    e = got.eos
    assert e is not None and e.frames == 300 and e.dropped > 0, e
    assert e.results == e.frames - e.dropped + e.trigger_errors == len(got.results)
    ids = [r.frame_id for r in got.results]
    assert ids == sorted(set(ids)) and got.heartbeats[-1].dropped <= e.dropped


def test_a_recording_is_inspected_whole_by_default(tmp_path):
    """issue 13, 10: with the default drop policy a video file behind a slow engine loses no frame."""
    video = write_video(tmp_path / "v.avi", 40)
    cfg = config(tmp_path, {"kind": "file", "uri": str(video)}, pipeline={"drop_policy": None, "queue_size": 2})
    assert cfg.pipeline.drop_policy == "auto"
    with Line(cfg, loader=FakeLoader(delay_s=0.02)) as line:
        got = line.go()
        assert line.status()["drop_policy"] == "block"
        got = line.collect(got, 60)
    assert got.eos.dropped == 0 and [r.frame_id for r in got.results] == list(range(40))


def test_a_live_camera_drops_oldest_by_default(tmp_path):
    video = write_video(tmp_path / "v.avi", 10)
    cfg = config(tmp_path, {"kind": "url", "uri": str(video), "stall_timeout_s": 0},
                 pipeline={"drop_policy": None})
    with Line(cfg) as line:
        line.go()
        assert line.status()["drop_policy"] == "drop_oldest"
