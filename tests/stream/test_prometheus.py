"""Prometheus metrics (stream/prometheus.py): a scrape of the daemon's endpoint counts what it published."""

from __future__ import annotations

import socket
import time
import urllib.request

from inspector.stream.prometheus import Metrics

from .fakes import write_video
from .harness import Line, config


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


def test_a_scrape_counts_decisions_latency_and_audit_health(tmp_path, monkeypatch):
    # The daemon closes its metrics endpoint when the finite source ends; hold the close back until the
    # scrape, so the scrape cannot race the shutdown on a slow machine.
    held: list[Metrics] = []
    real_close = Metrics.close
    monkeypatch.setattr(Metrics, "close", lambda self: held.append(self))
    video = write_video(tmp_path / "v.avi", 30)
    port = _free_port()
    cfg = config(tmp_path, {"kind": "file", "uri": str(video)}, metrics={"port": port})
    assert cfg.metrics.host == "127.0.0.1"  # loopback unless configured
    with Line(cfg) as line:
        got = line.collect(line.go())
        assert got.eos is not None
        scrape = _scrape(port)
        assert line.stop() == 0
    for m in held:
        real_close(m)
    assert 'inspector_decisions_total{decision="FAIL"} 10.0' in scrape
    assert "inspector_latency_seconds_count 30.0" in scrape
    assert "inspector_audit_lost_records 0.0" in scrape and "inspector_audit_spooled_records 0.0" in scrape
