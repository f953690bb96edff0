"""`inspector bridge` as a process: it starts without a daemon, says so, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from .mosquitto import Mosquitto, require_mosquitto
from .support import until
from .test_mqtt import Inbox

REPO = Path(__file__).resolve().parents[2]


def test_the_verb_runs_until_sigterm(tmp_path):
    require_mosquitto()
    with Mosquitto(tmp_path / "broker") as broker:
        cfg = tmp_path / "bridge.yaml"
        cfg.write_text(yaml.safe_dump({"log_level": "info", "bridges": [{
            "name": "mes", "kind": "mqtt",
            "lines": [{"line": "l1", "publish": "tcp://127.0.0.1:1", "control": "tcp://127.0.0.1:1"}],
            "mqtt": {"port": broker.port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5}}]}))
        inbox = Inbox(broker.port, ["inspector/bridge/mes/status"])
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from inspector.cli import main; sys.exit(main())",
                                 "bridge", "--config", str(cfg)], env=env, stderr=subprocess.PIPE, text=True)
        try:
            until(lambda: any(m["online"] for m in inbox.json("/status")), 60, "the bridge online")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
            until(lambda: not inbox.json("/status")[-1]["online"], 10, "the bridge offline")
        finally:
            proc.kill()
            inbox.close()
        log = proc.stderr.read()
    assert "MQTT bridge mes" in log and "Traceback" not in log
    status = inbox.json("/status")
    assert status[0]["lines"] == ["l1"] and status[-1]["online"] is False
    assert json.dumps(status)  # plain JSON all along


def test_a_bad_file_exits_1_with_the_reason(tmp_path, capsys):
    from inspector.cli import main

    cfg = tmp_path / "bridge.yaml"
    cfg.write_text("bridges: [{name: p, kind: opcua, lines: [{line: l1}], opcua: {endpoint: 'http://x'}}]\n")
    assert main(["bridge", "--config", str(cfg)]) == 1
    assert "must start with opc.tcp://" in capsys.readouterr().err
