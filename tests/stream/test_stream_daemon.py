"""The daemon as a process: SIGTERM with frames in flight, SIGHUP, the CLI verbs, sd_notify, the audit trail."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inspector.cli import main
from inspector.client.subscriber import Subscriber
from inspector.protocol.messages import EndOfStream, Event, Heartbeat, Result
from inspector.stream.audit import AuditLog, read_records
from inspector.stream.config import AuditConfig
from inspector.stream.daemon import JsonFormatter, sd_notify

from .fakes import daemon_yaml, write_video

REPO = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_with_frames_in_flight_loses_no_result(tmp_path):
    video = write_video(tmp_path / "v.avi", 400)
    pub, ctl = f"tcp://127.0.0.1:{_port()}", f"tcp://127.0.0.1:{_port()}"
    cfg = daemon_yaml(tmp_path / "d.yaml", {"kind": "file", "uri": str(video)}, pub, ctl, tmp_path / "audit")
    gate = tmp_path / "go"
    # 30 ms per batch of up to 4 frames, queue of 4 in 'block' mode: frames are always waiting when SIGTERM comes.
    errlog = tmp_path / "stderr.txt"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # stands in for systemd's NOTIFY_SOCKET
    notify.bind(str(tmp_path / "notify"))
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"}
    with open(errlog, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "tests.stream.fakes", str(cfg), "0.03", str(gate)], cwd=REPO,
                                stderr=err, env=env)
    sub = Subscriber(pub, line="t1")
    results: list[Result] = []
    eos = None
    hup_events = []
    try:
        deadline = time.monotonic() + 60  # a cold start imports torch: seconds on a busy machine
        while True:  # the first heartbeat proves the subscription is live (and the signal handlers are set)
            assert time.monotonic() < deadline and proc.poll() is None, "the daemon did not start"
            m = sub.recv(200)
            if m and isinstance(m[0], Heartbeat):
                break
        gate.touch()
        deadline = time.monotonic() + 30
        while len(results) < 20 and time.monotonic() < deadline:
            m = sub.recv(200)
            if m and isinstance(m[0], Result):
                results.append(m[0])
        proc.send_signal(signal.SIGHUP)  # reload calibration while running
        # Long enough for at least three watchdog pings (every 200 ms) whatever the machine's speed; the
        # 400-frame video at 30 ms per batch of 4 is still mid-stream afterwards.
        time.sleep(0.8)
        proc.send_signal(signal.SIGTERM)
        while eos is None and time.monotonic() < deadline:
            m = sub.recv(200)
            if m is None:
                continue
            if isinstance(m[0], Result):
                results.append(m[0])
            elif isinstance(m[0], EndOfStream):
                eos = m[0]
            elif isinstance(m[0], Event) and m[0].kind == "calibration_reloaded":
                hup_events.append(m[0])
        rc = proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
    stderr = errlog.read_text()
    assert rc == 0, stderr[-3000:]
    notify.setblocking(False)
    states = []
    with contextlib.suppress(BlockingIOError):
        while True:
            states.append(notify.recv(100).decode())
    notify.close()
    assert states[0] == "READY=1" and states[-1] == "STOPPING=1" and states.count("WATCHDOG=1") >= 3, states
    assert eos is not None and eos.reason == "signal"
    assert 20 < eos.frames < 400  # stopped mid-stream
    ids = [r.frame_id for r in results]
    assert ids == list(range(eos.frames)), "a captured frame has no result at the subscriber"
    assert eos.results == eos.frames
    audited = [r["frame_id"] for r in read_records(tmp_path / "audit") if r["type"] == "result"]
    assert audited == ids, "a published result is missing from the audit"
    assert hup_events and results[-1].calibration_id.startswith("fake-cal-1-r")
    logs = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any("stopped (signal)" in rec["msg"] for rec in logs)  # structured logs
    assert all({"ts", "level", "logger", "msg"} <= set(rec) for rec in logs)


def test_sd_notify_sends_datagrams(tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(path))
    srv.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    assert sd_notify("READY=1")
    assert srv.recv(100) == b"READY=1"
    srv.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sd_notify("READY=1")


def test_cli_run_check_and_bad_config(tmp_path, capsys):
    good = daemon_yaml(tmp_path / "ok.yaml", {"kind": "memory", "width": 64, "height": 48}, "tcp://127.0.0.1:0",
                       "", tmp_path / "audit")
    assert main(["run", "--config", str(good), "--check"]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("product: cable\npipeline: {drop_policy: maybe}\n")
    assert main(["run", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "inspector run: error:" in err and "pipeline.drop_policy" in err and "bad.yaml" in err


def test_gstreamer_pipeline_without_gstreamer_fails_at_start_with_a_hint(tmp_path, capsys):
    from inspector.stream.sources import gstreamer_available

    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer; the refusal is for builds without it (PyPI wheels)")
    cfg = daemon_yaml(tmp_path / "g.yaml", {"kind": "gstreamer", "uri": "videotestsrc ! appsink"}, "tcp://127.0.0.1:0",
                      "", tmp_path / "audit")
    assert main(["run", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "GStreamer: NO" in err and "system-site-packages" in err and "JetPack" in err


def test_cli_run_refuses_a_product_without_a_bundle(tmp_path, capsys):
    cfg = daemon_yaml(tmp_path / "d.yaml", {"kind": "memory", "width": 64, "height": 48}, "tcp://127.0.0.1:0",
                      "", tmp_path / "audit")
    assert main(["run", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "inspector run: error:" in err and "cable" in err


def test_cli_ctl_without_daemon_gives_up_clearly(capsys):
    rc = main(["ctl", "--connect", f"tcp://127.0.0.1:{_port()}", "status", "--timeout", "100", "--retries", "1"])
    assert rc == 1 and "no reply" in capsys.readouterr().err


def test_cli_ctl_argument_checks(capsys):
    assert main(["ctl", "--connect", "tcp://127.0.0.1:1", "trigger"]) == 1
    assert "part id" in capsys.readouterr().err
    assert main(["ctl", "--connect", "tcp://127.0.0.1:1", "pause", "x"]) == 1


def test_cli_keys(tmp_path, capsys):
    assert main(["keys", "--out", str(tmp_path), "--name", "server", "--name", "plc1"]) == 0
    for n in ("server", "plc1"):
        assert (tmp_path / f"{n}.key").is_file() and (tmp_path / f"{n}.key_secret").is_file()
        assert oct((tmp_path / f"{n}.key_secret").stat().st_mode & 0o777) == "0o600"


def test_audit_rotation_and_budgets(tmp_path):
    import numpy as np

    alarms = []
    cfg = AuditConfig(dir=str(tmp_path / "a"), fsync="always", log_file_mb=0.002, log_budget_mb=0.006,
                      image_budget_mb=0.01, image_format="png")
    audit = AuditLog(cfg, lambda *a: alarms.append(a))
    img = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)  # ~4.8 kB as PNG
    for i in range(60):
        audit.record({"type": "result", "frame_id": i, "decision": "FAIL" if i % 2 else "PASS", "capture_ts": 1e9 + i,
                      "pad": "x" * 100}, img, np.zeros((40, 40), np.uint8))
    audit.close()
    logs = sorted((tmp_path / "a").glob("decisions-*.jsonl"))
    assert len(logs) >= 2
    assert sum(p.stat().st_size for p in logs) <= 0.006e6 + 0.002e6 + 300  # budget plus the file being written
    ids = [r["frame_id"] for r in read_records(tmp_path / "a")]
    assert ids == sorted(ids) and ids[-1] == 59 and ids[0] > 0  # the oldest files went first
    images = sorted((tmp_path / "a" / "images").iterdir())
    assert sum(p.stat().st_size for p in images) <= 0.01e6
    assert images and "_59_FAIL" in images[-1].name  # the newest survive
    assert alarms == []


def test_audit_disk_errors_raise_an_alarm_and_never_stop(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the audit directory should be")
    alarms = []
    audit = AuditLog(AuditConfig(dir=str(blocker / "audit")), lambda *a: alarms.append(a))
    for i in range(5):
        audit.record({"type": "result", "frame_id": i, "decision": "PASS"})  # must not raise
    assert [a[0] for a in alarms] == ["audit_error"] and audit.errors >= 1
    blocker.unlink()  # the disk comes back
    audit.last_retry = -1e9
    audit.record({"type": "result", "frame_id": 5, "decision": "PASS"})
    audit.close()
    assert [a[0] for a in alarms] == ["audit_error", "audit_recovered"]
    assert [r["frame_id"] for r in read_records(blocker / "audit")] == [5]


def test_json_log_lines():
    import logging

    rec = logging.LogRecord("inspector.x", logging.WARNING, __file__, 1, "camera %s lost", ("cam0",), None)
    out = json.loads(JsonFormatter().format(rec))
    assert out["level"] == "warning" and out["msg"] == "camera cam0 lost" and out["logger"] == "inspector.x"
