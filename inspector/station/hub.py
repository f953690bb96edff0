"""The station's link to the daemons: one SUB socket on every PUB endpoint, and Lazy Pirate control clients.

The station is just another subscriber: the daemon's PUB socket never waits for it (non-blocking sends, a
per-subscriber high-water mark), so a slow browser, a slow network or a station crash cannot slow inspection.
Commands (pause, resume, switch product) go through :class:`inspector.client.subscriber.ControlClient`:
request, poll with a timeout, re-send on a new socket, give up with an error. Which line a control endpoint
serves is asked with ``status`` in the background until it answers.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import zmq

from inspector.client.subscriber import ControlClient, Subscriber
from inspector.errors import InspectorError, ProtocolError
from inspector.protocol.messages import ALL_KINDS
from inspector.station.config import StationConfig
from inspector.station.state import StationState

log = logging.getLogger(__name__)

SLOW_COMMANDS = ("switch_product", "reload_calibration")
SLOW_TIMEOUT_MS = 30000
DISCOVER_EVERY_S = 3.0


@dataclass
class ControlLink:
    """One daemon control endpoint; ``line`` once known. The lock serialises its REQ socket."""

    endpoint: str
    client: ControlClient
    line: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Hub:
    """``start()`` the receiving and discovery threads; ``control(line, cmd, **args)`` from any thread."""

    def __init__(self, cfg: StationConfig, state: StationState, ctx: zmq.Context | None = None) -> None:
        self.cfg, self.state = cfg, state
        self.ctx = ctx or zmq.Context.instance()
        self.sub = Subscriber(list(cfg.connect), line=None, kinds=ALL_KINDS, curve=cfg.curve, ctx=self.ctx)
        self.links = [ControlLink(ep, ControlClient(ep, cfg.control_timeout_ms, 1, cfg.curve, self.ctx))
                      for ep in cfg.control]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.received = 0
        self._expected: dict[tuple[str, str], dict[str, Any] | None] = {}

    def start(self) -> None:
        for name, fn in (("receive", self._receive), ("discover", self._discover)):
            t = threading.Thread(target=fn, name=f"station-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5.0)
        self.sub.close()
        for link in self.links:
            with link.lock:
                link.client.close()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                got = self.sub.recv(200)
            except zmq.ZMQError as e:
                if self._stop.is_set():
                    return
                log.error("station: receive failed: %s", e)
                time.sleep(0.5)
                continue
            if got is None:
                continue
            msg, data = got
            try:
                self.state.apply(msg, data, time.monotonic(), time.time())
            except Exception:  # noqa: BLE001 - one odd message must not stop the station
                log.exception("station: could not fold a %s message in", getattr(msg, "type", "?"))
            self.received += 1

    def _discover(self) -> None:
        while not self._stop.is_set():
            for link in self.links:
                if link.line is None and not self._stop.is_set():
                    try:
                        with link.lock:
                            reply = link.client.request("status")
                        if reply.get("ok"):
                            link.line = str(reply["result"]["line"])
                            log.info("station: control %s serves line %s", link.endpoint, link.line)
                    except ProtocolError as e:
                        log.warning("station: control %s: %s", link.endpoint, e)
            if all(link.line for link in self.links):
                return
            self._stop.wait(DISCOVER_EVERY_S)

    def controllable(self) -> dict[str, str]:
        """line -> control endpoint, for the lines whose control endpoint is known."""
        return {link.line: link.endpoint for link in self.links if link.line}

    def control(self, line: str, cmd: str, **args: Any) -> dict[str, Any]:
        """One command to ``line``'s daemon (blocking, with retries and a timeout); the daemon's reply."""
        link = next((lk for lk in self.links if lk.line == line), None)
        if link is None:
            raise InspectorError(f"no control endpoint serves line {line!r} (give the station --control ENDPOINT)")
        with link.lock:
            client = link.client
            old = client.timeout_ms
            client.timeout_ms = SLOW_TIMEOUT_MS if cmd in SLOW_COMMANDS else old
            try:
                return client.request(cmd, **args)
            finally:
                client.timeout_ms = old

    def expected_frr(self) -> dict[str, dict[str, Any] | None]:
        """line -> the running calibration's FRR promise, read from ``<home>/calibration`` when the record there
        is the one the line runs (same id); None when it is not on this machine."""
        out = {}
        with self.state.lock:
            running = {name: (v.info.get("product"), v.info.get("calibration_id")) for name, v in self.state.lines.items()}
        for line, key in running.items():
            if not all(key):
                continue
            if key not in self._expected:
                self._expected[key] = self._read_promise(*key)
            out[line] = self._expected[key]
        return out

    def _read_promise(self, product: str, calibration_id: str) -> dict[str, Any] | None:
        from inspector.calibrate.record import load_calibration

        try:
            rec = load_calibration(self.cfg.home or None, product)
        except InspectorError as e:
            log.info("station: no calibration record of %s here (%s); the FRR promise is not shown", product, e)
            return None
        if rec.id != calibration_id:
            log.info("station: calibration here is %s, the line runs %s; the FRR promise is not shown", rec.id,
                     calibration_id)
            return None
        f = rec.expected_frr
        if f is None:  # a threshold set by hand (calibrate --set-threshold): no FRR was promised for it
            return None
        return {"estimate": f.estimate, "lower": f.lower, "upper": f.upper, "n": f.n}
