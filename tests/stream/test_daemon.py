"""The daemon as a process (stream/daemon.py): SIGTERM with frames in flight, SIGHUP, sd_notify and the
watchdog, structured logs."""

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

from inspector.client.subscriber import Subscriber
from inspector.protocol.messages import EndOfStream, Event, Heartbeat, Result
from inspector.stream.audit import read_records
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


def test_json_log_lines():
    import logging

    rec = logging.LogRecord("inspector.x", logging.WARNING, __file__, 1, "camera %s lost", ("cam0",), None)
    out = json.loads(JsonFormatter().format(rec))
    assert out["level"] == "warning" and out["msg"] == "camera cam0 lost" and out["logger"] == "inspector.x"

