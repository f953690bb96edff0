"""The capture thread (stream/capture.py) in the real daemon: a camera that dies and comes back, one that stalls,
trigger mode, and a capture thread that fails (the daemon stops and exits 1)."""

from __future__ import annotations

import os
import time

from inspector.stream.sources import Read, Source

from .fakes import make_frame, write_video
from .harness import Line, config, wait_for


def _memory(rate: float = 0.0, frames: int = 0) -> dict:
    return {"kind": "memory", "width": 64, "height": 48, "frames": frames, "rate_fps": rate}


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
    assert got.eos is not None and got.eos.results == got.eos.frames - got.eos.dropped


class _StallingCamera(Source):
    """A live source whose read() hangs for a while after frame 10, as a stalled camera does."""

    live = True

    def __init__(self) -> None:
        self.n = 0

    def open(self) -> None:
        pass

    def read(self):
        self.n += 1
        time.sleep(1.0 if self.n == 10 else 0.01)
        return Read("frame", make_frame(self.n))


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


def test_trigger_mode_inspects_only_triggered_frames(tmp_path):
    cfg = config(tmp_path, _memory(rate=100), pipeline={"mode": "trigger", "trigger_timeout_s": 0.3})
    with Line(cfg) as line:
        got = line.go()
        wait_for(lambda: line.status()["read"] >= 20, what="frames being read")
        line.collect(got, 0.1)
        assert got.results == [] and line.status()["results"] == 0  # frames flow, but nobody asked
        for part in ("A1", "A2", "A3"):
            assert line.ctl.request("trigger", part_id=part)["ok"]
        line.collect(got, 5, until=lambda g: len(g.results) >= 3)
        assert [r.part_id for r in got.results] == ["A1", "A2", "A3"]
        assert all(r.decision in ("PASS", "FAIL") and r.frame_id is not None for r in got.results)
        ids = [r.frame_id for r in got.results]
        assert ids == sorted(ids)
        # No frame for a trigger (paused camera): the PLC still gets an answer, ERROR, in time.
        line.ctl.request("pause")
        line.ctl.request("trigger", part_id="LATE")
        line.collect(got, 5, until=lambda g: any(r.part_id == "LATE" for r in g.results))
        late = next(r for r in got.results if r.part_id == "LATE")
        assert late.decision == "ERROR" and "no frame within 0.3 s" in late.error and late.frame_id is None
        # A trigger still pending when the daemon stops is answered too.
        line.ctl.request("trigger", part_id="AT-STOP")
        assert line.stop() == 0
        line.collect(got, 5)
        at_stop = [r for r in got.results if r.part_id == "AT-STOP"]
        assert len(at_stop) == 1 and at_stop[0].decision == "ERROR"
        assert got.eos is not None
    # Expired triggers are results without a frame: end of stream counts them apart.
    assert got.eos.trigger_errors == 2 and got.eos.results == got.eos.frames - got.eos.dropped + 2


def test_a_paced_source_keeps_its_pace_between_triggers(tmp_path):
    """Found by the OPC UA benchmark: in trigger mode a paced memory source read the frames nobody asked for
    as fast as it could, a whole core spent between triggers. Every frame read keeps the pace."""
    rate = 50.0
    cfg = config(tmp_path, _memory(rate=rate), pipeline={"mode": "trigger", "trigger_timeout_s": 0.5})
    with Line(cfg) as line:
        got = line.go()
        wait_for(lambda: line.status()["read"] >= 5, what="frames being read")
        r0, t0 = line.status()["read"], time.monotonic()
        time.sleep(1.0)
        read, elapsed = line.status()["read"] - r0, time.monotonic() - t0
        assert line.ctl.request("trigger", part_id="P1")["ok"]
        line.collect(got, 5, until=lambda g: len(g.results) >= 1)
    assert 0.5 * rate * elapsed <= read <= 1.2 * rate * elapsed + 2, (read, elapsed)
    assert [r.part_id for r in got.results] == ["P1"] and got.results[0].decision in ("PASS", "FAIL")


class _BuggySource(_StallingCamera):
    """A source with a bug: read() raises something that is not a SourceError after 5 frames."""

    live = False

    def read(self):
        self.n += 1
        if self.n > 5:
            raise KeyError("a bug in the source")
        return Read("frame", make_frame(self.n))


def test_a_failed_capture_thread_stops_the_daemon_with_exit_1(tmp_path):
    """docs/zeromq.md: on capture_error the daemon finishes what it captured, ends the stream, exits 1."""
    with Line(config(tmp_path, _memory()), source=_BuggySource()) as line:
        got = line.collect(line.go(), 20)
        line.thread.join(20)
        assert line.rc == 1
    assert [e.kind for e in got.events].count("capture_error") == 1
    assert got.eos is not None and got.eos.reason == "error" and got.eos.frames == got.eos.results == 5


def test_a_paced_source_does_not_burst_to_catch_up_after_a_pause(tmp_path):
    """Found by the soak: after an outage (or a pause) a paced file read the frames it had missed back to back,
    queueing them (160 ms median latency). Frames after a resume keep the pace."""
    rate = 20.0
    with Line(config(tmp_path, _memory(rate=rate))) as line:
        got = line.go()
        line.collect(got, 10, until=lambda g: len(g.results) >= 5)
        assert line.ctl.request("pause")["ok"]
        n = line.settled(got)["results"]
        line.heartbeats(got, 8)  # 0.8 s paused: 16 frames' worth of schedule missed
        assert line.ctl.request("resume")["ok"]
        line.collect(got, 10, until=lambda g: len(g.results) >= n + 10)
    after = [r.capture_ts for r in got.results[n : n + 10]]
    gaps = [b - a for a, b in zip(after, after[1:], strict=False)]
    assert min(gaps) >= 0.5 / rate, gaps  # paced (a sleep never ends early), not a catch-up burst
