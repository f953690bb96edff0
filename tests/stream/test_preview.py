"""The preview topic: the pure rate limiter, the encoder, and the daemon publishing live JPEGs and lossless reject
frames beside (never instead of) its results."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from inspector.client.subscriber import Subscriber
from inspector.protocol.messages import ALL_KINDS, Preview, Region, Result
from inspector.stream.config import PreviewConfig
from inspector.stream.preview import PreviewRate, encode_preview, scaled

from .fakes import expected_decision, frame_folder, make_frame
from .harness import Line, config, wait_for


def test_rate_keeps_its_schedule_and_banks_no_backlog():
    rate = PreviewRate(5.0)
    frames = [i / 15 for i in range(150)]  # 10 s of frames at 15 per second
    due = [t for t in frames if rate.due(t)]
    assert len(due) == 50  # 5 per second on average
    assert max(sum(t <= u < t + 1.0 for u in due) for t in frames) <= 6  # never a burst over any second
    assert rate.due(100.0) and not rate.due(100.1) and rate.due(100.2)  # after a pause: no burst
    assert not PreviewRate(0.0).due(0.0)


def test_scaled_never_upscales_and_keeps_the_aspect():
    img = np.zeros((480, 640, 3), np.uint8)
    assert scaled(img, 320).shape == (240, 320, 3)
    assert scaled(img, 1280) is img and scaled(img, 0) is img


def test_encode_live_jpeg_and_lossless_reject_png():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    r = Result("l1", "cable", 3, "P7", 1.0, "FAIL", 0.5, 2.0, 0.25, (Region((1, 2, 3, 4), 5, 0.9),))
    cfg = PreviewConfig(width=32)
    live, jpeg = encode_preview(r, img, "live", cfg, 5.0)
    assert (live.width, live.height, live.encoding, live.frame_size) == (32, 24, "jpeg", (64, 48))
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (24, 32, 3)
    rej, png = encode_preview(r, img, "reject", cfg, 5.0)
    assert rej.encoding == "png" and (rej.width, rej.height) == (64, 48) and rej.regions == r.regions
    assert np.array_equal(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), img)
    assert (rej.frame_id, rej.decision, rej.capture_ts, rej.reason) == (3, "FAIL", 1.0, "reject")


def _subscribed(sub: Subscriber) -> None:
    """Wait for a heartbeat on ``sub``: its subscription is live, no result will be missed."""
    import time

    from inspector.protocol.messages import Heartbeat

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = sub.recv(100)
        if got is not None and isinstance(got[0], Heartbeat):
            return
    raise AssertionError("no heartbeat on the test subscriber")


def _collect(line: Line, sub: Subscriber, n_results: int, timeout_s: float = 30.0):
    import time

    results, previews = [], []
    deadline = time.monotonic() + timeout_s
    while len(results) < n_results and time.monotonic() < deadline:
        got = sub.recv(100)
        if got is None:
            continue
        msg, data = got
        if isinstance(msg, Result):
            results.append(msg)
        elif isinstance(msg, Preview):
            previews.append((msg, data))
    # The last previews may still be on their way once the last result is in.
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        got = sub.recv(100)
        if got is not None and isinstance(got[0], Preview):
            previews.append(got)
    return results, previews


@pytest.mark.parametrize("rate", [5.0])
def test_daemon_publishes_live_previews_at_the_rate_and_every_reject_losslessly(tmp_path, rate):
    n = 90
    folder = frame_folder(tmp_path / "frames", n)
    cfg = config(tmp_path, {"kind": "images", "uri": str(folder), "rate_fps": 30.0},
                 preview={"rate_fps": rate, "width": 32})
    with Line(cfg) as line:
        sub = Subscriber(line.pub, line="t1", kinds=ALL_KINDS)
        try:
            _subscribed(sub)
            line.go()
            results, previews = _collect(line, sub, n)
        finally:
            sub.close()
        skipped = line.daemon.pipeline.output.preview.skipped_rejects
    assert [r.frame_id for r in results] == list(range(n))
    live = [(m, d) for m, d in previews if m.reason == "live"]
    rejects = {m.frame_id: (m, d) for m, d in previews if m.reason == "reject"}
    span = results[-1].capture_ts - results[0].capture_ts
    assert 1 <= len(live) <= rate * span + 2 < n  # the rate, not every frame
    for m, d in live:
        img = cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (24, 32, 3) and (m.width, m.height) == (32, 24) and m.encoding == "jpeg"
        assert m.decision == expected_decision(m.frame_id)
    fails = [r.frame_id for r in results if r.decision == "FAIL"]
    assert len(rejects) + skipped == len(fails) and set(rejects) <= set(fails)
    for fid, (m, d) in rejects.items():
        img = cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR)
        assert np.array_equal(img, make_frame(fid)), "a reject frame must be the exact pixels inspected"
        assert m.regions == results[fid].regions and m.normalized_score == results[fid].normalized_score


def test_preview_off_sends_no_images_and_starts_no_thread(tmp_path):
    cfg = config(tmp_path, {"kind": "memory", "width": 64, "height": 48, "frames": 40},
                 preview={"rate_fps": 0.0, "rejects": False})
    with Line(cfg) as line:
        sub = Subscriber(line.pub, line="t1", kinds=ALL_KINDS)
        try:
            _subscribed(sub)
            got = line.collect(line.go(), 20)
            results, previews = _collect(line, sub, 0, 0.0)
        finally:
            sub.close()
    assert got.eos is not None and len(got.results) == 40 and previews == []
    assert line.daemon.pipeline.output.preview._thread is None  # no encoding thread at all


def test_a_dead_preview_thread_stops_the_watchdog(tmp_path, monkeypatch):
    """issue 13, 1: healthy() covers every thread the daemon owns, the preview encoder's too."""
    from inspector.stream import preview as preview_mod

    def broken(self):
        raise RuntimeError("encoder gone")

    monkeypatch.setattr(preview_mod.Previewer, "_run", broken)
    cfg = config(tmp_path, {"kind": "memory", "width": 64, "height": 48, "rate_fps": 50},
                 preview={"rate_fps": 5.0, "width": 32})
    with Line(cfg) as line:
        line.go()
        p = line.daemon.pipeline
        wait_for(lambda: "preview thread is dead" in p.problems(max_silence_s=5.0), 10)
        assert not p.healthy(5.0)


def test_the_lossless_budget_refills_at_its_share_of_a_core_and_goes_into_debt():
    from inspector.stream.preview import CpuBudget

    b = CpuBudget(0.1, burst=0.5)
    assert b.allows(0.0)
    b.spend(0.6, 0.0)  # one dear frame may overdraw it...
    assert not b.allows(0.5)  # ...then it must earn it back at 0.1 s per s
    assert b.allows(1.1) and b.level == pytest.approx(0.01)
    assert not CpuBudget(0.0).allows(100.0)
    b2 = CpuBudget(0.05)
    assert b2.allows(1000.0) and b2.level == 0.1  # never banks more than the (default) burst


def test_rejects_over_the_cpu_budget_come_as_jpeg_pictures(tmp_path):
    folder = frame_folder(tmp_path / "frames", 30)
    cfg = config(tmp_path, {"kind": "images", "uri": str(folder), "rate_fps": 30.0},
                 preview={"rate_fps": 0.0, "reject_cpu": 0.0, "width": 32})
    with Line(cfg) as line:
        sub = Subscriber(line.pub, line="t1", kinds=ALL_KINDS)
        try:
            _subscribed(sub)
            line.go()
            results, previews = _collect(line, sub, 30)
        finally:
            sub.close()
        lossy = line.daemon.pipeline.output.preview.lossy_rejects
    rejects = [m for m, _ in previews if m.reason == "reject"]
    assert rejects and all(m.encoding == "jpeg" and m.width == 32 for m in rejects) and lossy == len(rejects)
    assert len(rejects) == sum(r.decision == "FAIL" for r in results)


def test_nothing_is_encoded_while_nobody_subscribes_to_previews(tmp_path):
    """The publisher is an XPUB: while no subscriber takes the preview topic (a PLC gateway, `inspector listen
    --line`), the daemon encodes no preview at all; a station subscribing starts them within a moment."""
    cfg = config(tmp_path, {"kind": "memory", "width": 64, "height": 48, "rate_fps": 100.0},
                 preview={"rate_fps": 20.0})
    with Line(cfg) as line:
        got = line.go()  # the harness's subscriber takes results, heartbeats, events: not previews
        line.collect(got, 10, until=lambda g: len(g.results) >= 60)
        preview = line.daemon.pipeline.output.preview
        assert preview.sent == {"live": 0, "reject": 0} and preview.unwatched > 0
        sub = Subscriber(line.pub, line="t1", kinds=("preview",))
        try:
            deadline = time.monotonic() + 10
            previews = []
            while len(previews) < 3 and time.monotonic() < deadline:
                m = sub.recv(100)
                if m is not None and isinstance(m[0], Preview):
                    previews.append(m[0])
        finally:
            sub.close()
    assert len(previews) == 3 and {p.reason for p in previews} <= {"live", "reject"}
