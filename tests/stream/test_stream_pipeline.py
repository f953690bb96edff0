"""The daemon end to end on loopback sockets and real OpenCV sources, with the fake product."""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.request

import cv2
import numpy as np
import pytest

from inspector.stream.audit import read_records

from .fakes import FRAME_HW, SQUARE, FakeLoader, expected_decision, make_frame, write_video
from .harness import Collected, Line, config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> str:
    # Retried: on a machine shared with other test runs a scrape was once seen reset (not reproducible).
    for attempt in range(3):
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            if attempt == 2:
                raise
            time.sleep(0.3)
    return ""


def test_one_result_per_frame_in_order_with_header_mask_heartbeats_audit_metrics(tmp_path, monkeypatch):
    from inspector.stream.prometheus import Metrics

    # The daemon closes its metrics endpoint when the finite source ends; hold the close back until the
    # scrape, so the scrape cannot race the shutdown on a slow machine.
    held: list[Metrics] = []
    real_close = Metrics.close
    monkeypatch.setattr(Metrics, "close", lambda self: held.append(self))
    video = write_video(tmp_path / "v.avi", 30)
    port = _free_port()
    cfg = config(tmp_path, {"kind": "file", "uri": str(video)}, metrics={"port": port, "host": "127.0.0.1"})
    with Line(cfg) as line:
        got = line.collect(line.go())
        assert got.eos is not None, "no end of stream"
        scrape = _scrape(port)
        assert line.stop() == 0
    for m in held:
        real_close(m)
    assert [r.frame_id for r in got.results] == list(range(30))
    assert [r.decision for r in got.results] == [expected_decision(i) for i in range(30)]
    assert got.eos.frames == 30 and got.eos.results == 30 and got.eos.dropped == 0 and got.eos.reason == "source_ended"
    for r in got.results:
        assert r.line == "t1" and r.product == "cable" and r.model_sha == "sha-cable"
        assert r.calibration_id == "fake-cal-1" and r.threshold == 0.25 and r.frame_size == (64, 48)
        assert r.publish_ts >= r.capture_ts and r.latency_ms > 0 and r.part_id is None
        assert r.normalized_score == pytest.approx(r.score / 0.25)
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
    assert 'inspector_decisions_total{decision="FAIL"} 10.0' in scrape
    assert "inspector_latency_seconds_count 30.0" in scrape


def test_corrupt_video_frames_give_error_results(tmp_path):
    video = write_video(tmp_path / "v.avi", 30)
    data = bytearray(video.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 1500] = bytes(1500)  # wipe a stretch of one frame's JPEG data
    video.write_bytes(bytes(data))
    with Line(config(tmp_path, {"kind": "file", "uri": str(video)})) as line:
        got = line.collect(line.go())
    errors = [r for r in got.results if r.decision == "ERROR"]
    assert errors and all("could not be decoded" in r.error and r.score is None for r in errors)
    assert len(got.results) == got.eos.frames == got.eos.results  # still one result per captured frame
    assert [r.frame_id for r in got.results] == list(range(len(got.results)))
    assert any(r.decision == "FAIL" for r in got.results)


def test_unreadable_and_wrong_size_images_give_error_results(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "0.png"), make_frame(0))
    (d / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    cv2.imwrite(str(d / "2.png"), make_frame(1, (30, 30)))
    cv2.imwrite(str(d / "3.png"), make_frame(1))
    with Line(config(tmp_path, {"kind": "images", "uri": str(d)})) as line:
        got = line.collect(line.go())
    assert [r.decision for r in got.results] == ["FAIL", "ERROR", "ERROR", "PASS"]
    assert "cannot decode" in got.results[1].error
    assert "takes uint8 (48, 64, 3)" in got.results[2].error and got.results[2].frame_size == (30, 30)


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


def test_camera_dies_mid_stream_reconnects_with_events(tmp_path):
    video = write_video(tmp_path / "v.avi", 10)
    # A 'url' source is a live camera: the end of the stream is a lost camera, not the end of inspection.
    # OpenCV's FFmpeg backend opens a file path as a URL, so this is a real VideoCapture dying and coming back.
    cfg = config(tmp_path, {"kind": "url", "uri": str(video), "reconnect_initial_s": 0.05, "reconnect_max_s": 0.2,
                            "stall_timeout_s": 0})
    hidden = tmp_path / "away.avi"
    with Line(cfg) as line:
        got = line.go()
        line.collect(got, 10, until=lambda g: any(e.kind == "camera_lost" for e in g.events))
        os.replace(video, hidden)  # the camera stays away: reopening fails for a while
        time.sleep(0.6)
        os.replace(hidden, video)
        line.collect(got, 10, until=lambda g: sum(e.kind == "camera_restored" for e in g.events) >= 1
                     and len(g.results) >= 15)
        assert line.stop() == 0
        line.collect(got, 5)
    kinds = [e.kind for e in got.events]
    assert "camera_lost" in kinds and "camera_restored" in kinds
    assert kinds.index("camera_lost") < kinds.index("camera_restored")
    restored = next(e for e in got.events if e.kind == "camera_restored")
    assert restored.detail["outage_s"] >= 0.5
    assert "lost" in {h.camera for h in got.heartbeats}
    ids = [r.frame_id for r in got.results]
    assert len(ids) >= 15 and ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(r.decision in ("PASS", "FAIL") for r in got.results)
    assert got.eos is not None and got.eos.frames == got.eos.results


def _run_big(tmp_path, name: str, stuck: bool) -> tuple[float, int]:
    from inspector.client.subscriber import Subscriber

    n = 120
    cfg = config(tmp_path / name, {"kind": "memory", "width": 640, "height": 480, "frames": n}, product="big",
                 masks={"publish": "always", "resolution": "frame"}, audit={"enabled": False},
                 zmq={"sndhwm": 10, "heartbeat_ms": 50})
    with Line(cfg, subscribe=False) as line:
        sub = Subscriber(line.pub, line="t1", rcvhwm=1)  # connected, never reads
        time.sleep(0.3)
        if not stuck:
            sub.close()
        t0 = time.monotonic()
        line._gate.set()
        line.thread.join(30)
        elapsed = time.monotonic() - t0
        if stuck:
            sub.close()
        results = line.daemon.pipeline.output.results
    return elapsed, results


def test_a_subscriber_that_never_reads_does_not_slow_inspection(tmp_path):
    base, n0 = _run_big(tmp_path, "a", stuck=False)
    slow, n1 = _run_big(tmp_path, "b", stuck=True)
    assert n0 == n1 == 120
    assert slow < 2.0 * base + 0.5, (base, slow)  # generous: the CI machine is shared


def test_curve_unknown_client_receives_nothing(tmp_path):
    from inspector.client.subscriber import ControlClient, Subscriber
    from inspector.errors import ProtocolError
    from inspector.protocol.auth import generate_keys

    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    _, server_secret = generate_keys(keys, "server")
    client_public, client_secret = generate_keys(keys, "client")
    _, intruder_secret = generate_keys(keys, "intruder")
    allowed.mkdir()
    shutil.copy(client_public, allowed)
    server_public = keys / "server.key"
    cfg = config(tmp_path, {"kind": "memory", "width": 64, "height": 48, "frames": 0, "rate_fps": 50},
                 zmq={"curve": {"enabled": True, "server_secret_key": str(server_secret),
                                "authorized_keys": str(allowed)}})
    with Line(cfg, curve=(str(client_secret), str(server_public))) as line:
        intruder = Subscriber(line.pub, line="t1", curve=(str(intruder_secret), str(server_public)))
        plain = Subscriber(line.pub, line="t1")
        got = line.go()
        line.collect(got, 5, until=lambda g: len(g.results) >= 5)
        assert len(got.results) >= 5  # the authorised client is served
        assert intruder.recv(1500) is None and plain.recv(100) is None
        assert line.ctl.request("status")["ok"]
        bad = ControlClient(line.ctl_endpoint, timeout_ms=500, retries=0,
                            curve=(str(intruder_secret), str(server_public)))
        with pytest.raises(ProtocolError, match="no reply"):
            bad.request("status")
        bad.close()
        intruder.close()
        plain.close()


def test_frames_of_the_product_size_only(tmp_path):
    """The fake product takes FRAME_HW frames; a sanity check of the fixtures the other tests rely on."""
    assert make_frame(0).shape == (*FRAME_HW, 3)
    assert FakeLoader().load("cable").backend.infer(make_frame(0)[None]).score[0] > 0.25
    assert isinstance(Collected().results, list)


class _StallingCamera:
    """A live source whose read() hangs for a while after frame 10, as a stalled camera does."""

    live = True

    def __init__(self) -> None:
        self.n = 0

    def open(self) -> None:
        pass

    def read(self):
        from inspector.stream.sources import Read

        self.n += 1
        time.sleep(1.0 if self.n == 10 else 0.01)
        return Read("frame", make_frame(self.n))

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "stalling-camera"


def test_a_stalled_camera_is_reported_lost_then_restored(tmp_path):
    cfg = config(tmp_path, {"kind": "memory", "width": 64, "height": 48, "stall_timeout_s": 0.3})
    with Line(cfg, source=_StallingCamera()) as line:
        got = line.go()
        line.collect(got, 10, until=lambda g: any(e.kind == "camera_restored" for e in g.events))
        assert line.stop() == 0
        line.collect(got, 5)
    kinds = [e.kind for e in got.events]
    assert kinds.count("camera_lost") == 1 and kinds.count("camera_restored") == 1
    lost = next(e for e in got.events if e.kind == "camera_lost")
    assert "no frame for" in lost.message and "stall_timeout_s 0.3" in lost.message
    assert got.eos.frames == got.eos.results == len(got.results)


class _NoopBackend:
    """Instant inference at 1280x720: what is left is the daemon's own cost per frame."""

    name = "noop"
    max_batch = 4
    frame_shape = (720, 1280)

    def infer(self, frames):
        from inspector.result import InferenceResult

        return InferenceResult(np.full(len(frames), 0.1, np.float32), np.zeros((len(frames), 224, 224), np.float32))

    def describe(self):
        return {"backend": "noop"}

    def close(self):
        pass


class _NoopLoader(FakeLoader):
    def load(self, name):
        from inspector.stream.product import Product

        from .fakes import FakeCalibration

        return Product(name, _NoopBackend(), FakeCalibration(), "sha", None, (720, 1280))


def test_daemon_overhead_per_1280x720_frame_is_small(tmp_path):
    """The daemon's overhead bar: a no-op backend leaves only capture, queue, decision, publish and audit.
    Measured ~2 ms per frame (~500 fps) on 2 shared CPU cores; against ~100 ms of CPU inference per frame that
    keeps the daemon within a few percent of `inspector bench`. The bound here is loose for loaded machines."""
    n = 300
    cfg = config(tmp_path, {"kind": "memory", "width": 1280, "height": 720, "frames": n},
                 pipeline={"queue_size": 4, "max_batch": 4, "drop_policy": "block"})
    with Line(cfg, loader=_NoopLoader()) as line:
        got = line.collect(line.go(), 30)
    assert len(got.results) == n
    span = max(r.publish_ts for r in got.results) - min(r.capture_ts for r in got.results)
    assert n / span > 60, f"{n / span:.0f} fps"


def test_a_broken_audit_disk_raises_an_alarm_and_inspection_goes_on(tmp_path):
    video = write_video(tmp_path / "v.avi", 30)
    audit = tmp_path / "audit"
    cfg = config(tmp_path, {"kind": "file", "uri": str(video), "rate_fps": 60}, audit={"dir": str(audit)})
    with Line(cfg) as line:
        got = line.go()
        line.collect(got, 10, until=lambda g: len(g.results) >= 3)
        os.replace(audit, tmp_path / "audit_gone")  # the disk goes away under the daemon:
        audit.write_text("not a directory")  # FAIL images can no longer be saved there
        line.collect(got, 20)
    assert [r.frame_id for r in got.results] == list(range(30)) and got.eos.results == 30
    alarms = [e for e in got.events if e.kind == "audit_error"]
    assert len(alarms) == 1 and "inspection continues" in alarms[0].message
    assert got.heartbeats[-1].audit == "failing" and got.heartbeats[0].audit == "ok"
