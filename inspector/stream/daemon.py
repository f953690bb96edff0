"""`inspector run`: wire config, product, source, sockets, audit and metrics into a pipeline and keep it running.

Process behaviour:

- SIGTERM / SIGINT: stop capture, inspect and publish every frame already captured, send end-of-stream,
  flush the audit, exit 0. A finite source (file, image folder) ending does the same.
- SIGHUP: reload the product's calibration (same as the ``reload_calibration`` command).
- systemd: ``READY=1`` once running, ``WATCHDOG=1`` every half ``WatchdogSec`` while every thread the daemon
  owns (capture, inference, output, control and its worker) is alive and the ticking ones tick
  (``Pipeline.problems``), ``STOPPING=1`` on the way out; through the ``NOTIFY_SOCKET`` datagram, no extra
  dependency. A dead or stuck thread stops the pings, so systemd restarts the daemon.
- Exposure: binding beyond loopback without CURVE (or metrics beyond loopback) is logged as a warning at
  start and listed in ``status`` (``security.exposed``).
- Logs: one JSON object per line on stderr (``log.format: json``) for journald and log shippers.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from inspector.stream.config import DaemonConfig, LogConfig, exposure
from inspector.stream.control import ControlServer
from inspector.stream.pipeline import Pipeline
from inspector.stream.product import BundleLoader, ProductLoader
from inspector.stream.prometheus import Metrics
from inspector.stream.publisher import Publisher
from inspector.stream.sources import Source, open_source

log = logging.getLogger(__name__)

TICK_S = 0.1


def sd_notify(state: str) -> bool:
    """Send ``state`` (e.g. 'READY=1') to systemd's NOTIFY_SOCKET; False when not run by systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]  # abstract namespace socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(state.encode())
        return True
    except OSError as e:
        log.warning("sd_notify(%s) failed: %s", state, e)
        return False


def watchdog_interval_s() -> float | None:
    """Half of systemd's WatchdogSec (from WATCHDOG_USEC), or None when there is no watchdog for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


def seen_log_path(cfg: DaemonConfig) -> Path | None:
    """Where a watched image folder keeps the names of the files it took: beside the audit trail."""
    if cfg.source.kind != "images" or cfg.source.images_mode != "watch":
        return None
    return Path(cfg.audit.dir) / f"images-seen-{cfg.line}.jsonl"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (Unix s), level, logger, msg, and exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": round(record.created, 6), "level": record.levelname.lower(),
                               "logger": record.name, "msg": record.getMessage(), "thread": record.threadName}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(cfg: LogConfig) -> None:
    root = logging.getLogger()
    root.setLevel(cfg.level.upper())
    if cfg.format == "json":
        for h in root.handlers:
            h.setFormatter(JsonFormatter())


class Daemon:
    """One line's daemon. ``loader`` and ``source`` default to the real ones; tests inject fakes."""

    def __init__(self, cfg: DaemonConfig, loader: ProductLoader | None = None, source: Source | None = None,
                 ctx: zmq.Context | None = None) -> None:
        self.cfg = cfg
        self.loader = loader or BundleLoader(cfg.home, cfg.backend, cfg.device, cfg.threads, cfg.precision,
                                             cfg.pipeline.max_batch or None, cfg.spin)
        self.source = source
        self.ctx = ctx or zmq.Context()
        self._own_ctx = ctx is None
        self._stop_reason: str | None = None
        self._reload = threading.Event()
        self._ready = threading.Event()
        self.pipeline: Pipeline | None = None
        self.control: ControlServer | None = None
        self.publisher: Publisher | None = None
        self.endpoints: dict[str, Any] = {}
        self.exposed = exposure(cfg)

    # -- signals and other threads ----------------------------------------------------------------------------------
    def request_stop(self, reason: str = "signal") -> None:
        if self._stop_reason is None:
            self._stop_reason = reason

    def request_reload(self) -> None:
        self._reload.set()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop("signal"))
        signal.signal(signal.SIGINT, lambda *_: self.request_stop("signal"))
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    # -- main -------------------------------------------------------------------------------------------------------
    def run(self, install_signals: bool = True) -> int:
        cfg = self.cfg
        if install_signals:
            self._install_signals()
        auth = None
        control_thread = None
        product = None
        metrics = Metrics(cfg.metrics.port, cfg.metrics.host)
        try:
            # The source first: a config that can never work (no GStreamer) fails before seconds of engine loading.
            source = self.source or open_source(cfg.source, seen_log_path(cfg))
            product = self.loader.load(cfg.product)
            if cfg.zmq.curve.enabled:
                from inspector.protocol.auth import start_authenticator

                auth = start_authenticator(self.ctx, cfg.zmq.curve.authorized_keys)
            self.publisher = Publisher(self.ctx, cfg.zmq)
            self.pipeline = Pipeline(cfg, product, self.loader, source, self.publisher, metrics=metrics)
            self.endpoints["publish"] = self.publisher.endpoints
            if cfg.zmq.control:
                self.control = ControlServer(self.ctx, cfg.zmq, self._handlers(), self.pipeline.event)
                self.endpoints["control"] = self.control.endpoint
                control_thread = threading.Thread(target=self.control.run, name="inspector-control", daemon=True)
                control_thread.start()
                self.pipeline.watch("control", control_thread, lambda: self.control.tick)
                self.pipeline.watch("control-worker", self.control.worker)
            log.info("line %s: inspecting %s from %s; publish %s, control %s", cfg.line, product.name,
                     source.describe(), self.publisher.endpoints, self.endpoints.get("control"))
            self._warn_exposure()
            self.pipeline.start()
            self._ready.set()
            sd_notify("READY=1")
            self._loop()
            reason = self._stop_reason or "signal"
            sd_notify("STOPPING=1")
            if self.control is not None:
                self.control.stop()
                control_thread.join()
            self.pipeline.stop(reason)
            # A capture thread that crashed is a failure (systemd restarts us); a stop or the source's end is not.
            return 1 if reason == "error" else 0
        finally:
            if self.control is not None and control_thread is None:
                self.control.sock.close(0)
            if self.pipeline is None and product is not None:
                product.backend.close()
            if self.publisher is not None:
                self.publisher.close()
            if auth is not None:
                auth.stop()
            metrics.close()
            if self._own_ctx:
                self.ctx.term()

    def _loop(self) -> None:
        p = self.pipeline
        wd = watchdog_interval_s()
        next_wd = time.monotonic()
        while self._stop_reason is None:
            time.sleep(TICK_S)
            if p.source_ended:
                self.request_stop("error" if p.capture.failed else "source_ended")
                break
            if self._reload.is_set():
                self._reload.clear()
                try:
                    log.info("SIGHUP: %s", p.reload_calibration())
                except Exception as e:  # noqa: BLE001 - a failed reload keeps the running calibration
                    log.error("SIGHUP: calibration reload failed, keeping the running one: %s", e)
            p.capture.check_stall()
            if wd is not None and time.monotonic() >= next_wd:
                next_wd = time.monotonic() + wd
                problems = p.problems(max_silence_s=2 * wd)
                if not problems:
                    sd_notify("WATCHDOG=1")
                else:
                    log.error("not feeding the systemd watchdog: %s", "; ".join(problems))

    def _warn_exposure(self) -> None:
        if self.exposed:
            log.warning("reachable beyond this machine without authentication: %s. Anyone who can reach these "
                        "can subscribe, trigger and switch products; bind to 127.0.0.1 or enable zmq.curve "
                        "(docs/zeromq.md, Security)", ", ".join(self.exposed))

    def _status(self) -> dict[str, Any]:
        return {**self.pipeline.snapshot(),
                "security": {"curve": self.cfg.zmq.curve.enabled, "exposed": list(self.exposed)}}

    def _handlers(self) -> dict[str, Any]:
        p = self.pipeline
        return {
            "status": self._status,
            "switch_product": p.switch_product,
            "trigger": p.trigger,
            "pause": p.pause,
            "resume": p.resume,
            "reload_calibration": p.reload_calibration,
        }
