"""Prometheus metrics (prometheus_client) on ``metrics.port``: frames, decisions, latency, drops, camera state.

prometheus_client is an optional dependency (``pip install inspector[metrics]``); asking for a port without
it is a ConfigError, not a silent no-op. Port 0 disables metrics. Each daemon uses its own registry, so
several pipelines in one process (the tests) do not collide.
"""

from __future__ import annotations

import logging
from typing import Any

from inspector.errors import ConfigError

log = logging.getLogger(__name__)

CAMERA_STATES = ("connecting", "up", "lost", "ended")
# Latency buckets in seconds: a line decision is due within tens of milliseconds; CPU runs take longer.
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)


class Metrics:
    """The daemon's metrics; every method is a no-op when disabled."""

    def __init__(self, port: int, host: str = "127.0.0.1", line: str = "") -> None:
        self.enabled = port > 0
        self.server: Any = None
        if not self.enabled:
            return
        try:
            import prometheus_client as pc
        except ImportError as e:
            raise ConfigError("key 'metrics.port' is set but prometheus_client is not installed; "
                              "`pip install inspector[metrics]` or set metrics.port: 0") from e
        self.registry = pc.CollectorRegistry()
        r = self.registry
        self.frames = pc.Counter("inspector_frames", "frames captured for inspection", registry=r)
        self.decisions = pc.Counter("inspector_decisions", "published decisions", ["decision"], registry=r)
        self.dropped = pc.Gauge("inspector_dropped_frames", "frames dropped by the queue policy since start",
                                registry=r)
        self.latency = pc.Histogram("inspector_latency_seconds", "capture to publish latency",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = pc.Gauge("inspector_queue_depth", "frames waiting for inference", registry=r)
        self.camera = pc.Enum("inspector_camera_state", "camera state", states=list(CAMERA_STATES), registry=r)
        self.camera_outages = pc.Counter("inspector_camera_outages", "camera_lost events", registry=r)
        self.audit_errors = pc.Gauge("inspector_audit_errors", "audit write errors since start", registry=r)
        self.audit_lost = pc.Gauge("inspector_audit_lost_records", "audit records lost since start (spool overflow)",
                                   registry=r)
        self.audit_spooled = pc.Gauge("inspector_audit_spooled_records", "audit records waiting for the disk",
                                      registry=r)
        self.info = pc.Info("inspector", "line, product, backend, calibration", registry=r)
        self.drift_raised = pc.Gauge("inspector_drift", "1 while drift is raised (docs/zeromq.md), else 0",
                                     registry=r)
        self.drift_reject_rate = pc.Gauge("inspector_drift_reject_rate", "reject rate over the drift window",
                                          registry=r)
        self.drift_score_shift = pc.Gauge("inspector_drift_score_shift", "median passing score minus the "
                                          "calibration's good median, in calibration good-score std", registry=r)
        try:
            self.server = pc.start_http_server(port, addr=host, registry=r)
        except OSError as e:
            raise ConfigError(f"cannot serve metrics on {host}:{port} (keys 'metrics.host', 'metrics.port'): {e}") from e
        log.info("prometheus metrics on http://%s:%d/metrics", host, port)

    def result(self, decision: str, latency_s: float) -> None:
        if self.enabled:
            self.decisions.labels(decision=decision).inc()
            self.latency.observe(latency_s)

    def captured(self, n: int = 1) -> None:
        if self.enabled:
            self.frames.inc(n)

    def gauges(self, queue_depth: int, dropped: int, camera: str, audit_errors: int, audit_lost: int = 0,
               audit_spooled: int = 0) -> None:
        if self.enabled:
            self.queue_depth.set(queue_depth)
            self.dropped.set(dropped)
            self.camera.state(camera if camera in CAMERA_STATES else "lost")
            self.audit_errors.set(audit_errors)
            self.audit_lost.set(audit_lost)
            self.audit_spooled.set(audit_spooled)

    def drift(self, state: str, stats: dict[str, Any]) -> None:
        """The heartbeat's drift state and figures (NaN while a statistic is not judged yet)."""
        if self.enabled:
            self.drift_raised.set(1 if state == "raised" else 0)
            for gauge, key in ((self.drift_reject_rate, "reject_rate"), (self.drift_score_shift, "score_shift")):
                v = stats.get(key)
                gauge.set(float("nan") if v is None else v)

    def camera_lost(self) -> None:
        if self.enabled:
            self.camera_outages.inc()

    def describe(self, **info: str) -> None:
        if self.enabled:
            self.info.info({k: str(v) for k, v in info.items()})

    def close(self) -> None:
        if self.server is not None:
            server, _thread = self.server
            server.shutdown()
            server.server_close()
            self.server = None
