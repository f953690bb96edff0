"""Run a real daemon (real sockets on loopback, real sources) in a thread, with the fake product loader."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspector.client.subscriber import ControlClient, Subscriber
from inspector.config import load_dataclass
from inspector.protocol.messages import EndOfStream, Event, Heartbeat, Result, Status
from inspector.stream.config import DaemonConfig
from inspector.stream.daemon import Daemon, seen_log_path
from inspector.stream.sources import open_source

from .fakes import FakeLoader, GatedSource


def wait_for(predicate, timeout_s: float = 10.0, poll_s: float = 0.02, what: str = "the condition"):
    """Poll ``predicate()`` until it returns something truthy (returned) or ``timeout_s`` passes (AssertionError)."""
    deadline = time.monotonic() + timeout_s
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s:g} s")
        time.sleep(poll_s)


@dataclass
class Collected:
    results: list[Result] = field(default_factory=list)
    masks: dict[int | None, bytes] = field(default_factory=dict)
    heartbeats: list[Heartbeat] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    eos: EndOfStream | None = None


def config(tmp: Path, source: dict[str, Any], **sections: Any) -> DaemonConfig:
    data = {
        "line": "t1", "home": str(tmp), "product": "cable",
        "source": source,
        "pipeline": {"queue_size": 4, "drop_policy": "block", "batch_timeout_ms": 2},
        "zmq": {"publish": ["tcp://127.0.0.1:0"], "control": "tcp://127.0.0.1:0", "heartbeat_ms": 100},
        "audit": {"dir": str(tmp / "audit"), "fsync": "never"},
        "log": {"format": "text"},
    }
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
        if isinstance(v, dict):  # None removes a key: the daemon's own default applies
            data[k] = {key: val for key, val in data[k].items() if val is not None}
    return load_dataclass(DaemonConfig, data, "test")


class Line:
    """A daemon in a thread. The source opens only after ``go()``, once the subscriber is connected."""

    def __init__(self, cfg: DaemonConfig, loader: FakeLoader | None = None, subscribe: bool = True,
                 source=None, curve: tuple | None = None) -> None:
        self.cfg = cfg
        self.loader = loader or FakeLoader()
        self._gate = threading.Event()
        source = source or open_source(cfg.source, seen_log_path(cfg))
        self.daemon = Daemon(cfg, loader=self.loader, source=GatedSource(source, self._gate.is_set))
        self.rc: int | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.daemon.wait_ready(10):
            raise RuntimeError(f"daemon did not start: {self.error!r}")
        self.pub = self.daemon.endpoints["publish"][0]
        self.ctl_endpoint = self.daemon.endpoints.get("control")
        self.sub = Subscriber(self.pub, line=cfg.line, curve=curve) if subscribe else None
        self.ctl = ControlClient(self.ctl_endpoint, timeout_ms=3000, retries=1, curve=curve) if self.ctl_endpoint \
            else None

    def _run(self) -> None:
        try:
            self.rc = self.daemon.run(install_signals=False)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def go(self, got: Collected | None = None) -> Collected:
        """Wait for the first heartbeat (subscription established), then let frames flow."""
        got = got or Collected()
        deadline = time.monotonic() + 5
        while not got.heartbeats and time.monotonic() < deadline:
            self.pump(got, 200)
        if not got.heartbeats:
            raise RuntimeError("no heartbeat within 5 s")
        self._gate.set()
        return got

    def pump(self, got: Collected, timeout_ms: int = 200) -> bool:
        """Receive one message into ``got``; False on timeout or at end of stream."""
        m = self.sub.recv(timeout_ms)
        if m is None:
            return False
        msg, mask = m
        if isinstance(msg, Result):
            got.results.append(msg)
            if mask is not None:
                got.masks[msg.frame_id] = mask
        elif isinstance(msg, Heartbeat):
            got.heartbeats.append(msg)
        elif isinstance(msg, Event):
            got.events.append(msg)
        elif isinstance(msg, Status):
            got.statuses.append(msg)
        elif isinstance(msg, EndOfStream):
            got.eos = msg
            return False
        return True

    def collect(self, got: Collected, timeout_s: float = 20.0, until=None) -> Collected:
        """Pump until end of stream, ``until(got)`` is true, or the timeout."""
        deadline = time.monotonic() + timeout_s
        while got.eos is None and time.monotonic() < deadline:
            self.pump(got, 100)
            if until is not None and until(got):
                break
        return got

    def status(self) -> dict[str, Any]:
        """The daemon's ``status`` over the control socket (the reply's result)."""
        r = self.ctl.request("status")
        assert r["ok"], r
        return r["result"]

    def settled(self, got: Collected, timeout_s: float = 10.0) -> dict[str, Any]:
        """Pump until everything captured is published (queue empty, results == frames - dropped +
        trigger_errors, the subscriber has them all); the status at that moment."""
        def done():
            self.pump(got, 20)
            st = self.status()
            n = st["frames"] - st["dropped"] + st["trigger_errors"]
            return st if st["queue_depth"] == 0 and st["results"] == n and len(got.results) >= n else None

        return wait_for(done, timeout_s, 0, "all captured frames published")

    def heartbeats(self, got: Collected, n: int, timeout_s: float = 10.0) -> None:
        """Pump until ``n`` more heartbeats came: time passing, measured by the daemon's own clock."""
        target = len(got.heartbeats) + n
        self.collect(got, timeout_s, until=lambda g: len(g.heartbeats) >= target)
        assert len(got.heartbeats) >= target, "heartbeats stopped"

    def stop(self, timeout_s: float = 20.0) -> int | None:
        self.daemon.request_stop("signal")
        self.thread.join(timeout_s)
        return self.rc

    def close(self) -> None:
        if self.thread.is_alive():
            self.stop()
        if self.sub is not None:
            self.sub.close()
        if self.ctl is not None:
            self.ctl.close()

    def __enter__(self) -> Line:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
