"""The ZeroMQ side of a bridge: a subscriber thread, the daemon's liveness, Lazy Pirate control requests.

Liveness is a pure function of message times (:class:`Liveness`, clock passed in): any message from the line
means the daemon is up; silence for ``DOWN_AFTER`` heartbeat intervals, or an end-of-stream, means it is down.
1.5 intervals leaves half an interval for a late heartbeat and, with a poll of a tenth of an interval, declares
a dead daemon within two intervals of its last heartbeat. ZeroMQ reconnects by itself, so the first message
after an outage brings the link back up without any action here.

An asyncio consumer (the OPC UA bridge) can ``attach`` the link to its loop instead: the loop reads the
subscriber's socket itself, so a result is handled in the loop's next turn rather than crossing from a thread
(that hand-off was the largest tail of the OPC UA handshake: p99 1.3-2.2 ms, measured in tests/bridge/bench.py),
and ``request_now`` sends fast commands from the loop (:mod:`inspector.bridge.loopreq`).

Control requests block (Lazy Pirate: poll, re-send on a fresh socket, give up); each :class:`DaemonLink` runs
them on two single-thread executors, one for triggers, pause and resume, one for the slow ``switch_product``,
so a product switch of many seconds never holds up a trigger.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import zmq

from inspector.bridge.config import LineConfig
from inspector.bridge.loopreq import LoopRequests
from inspector.client.subscriber import ControlClient, Subscriber
from inspector.errors import ProtocolError
from inspector.protocol.messages import EndOfStream, Message

log = logging.getLogger(__name__)

DOWN_AFTER = 1.5  # heartbeat intervals of silence

MessageFn = Callable[[Message, bytes | None, float], None]  # (message, mask PNG or None, monotonic receive time)
StateFn = Callable[[bool, str], None]  # (daemon up?, why)


class Liveness:
    """Up or down from message times alone (monotonic seconds). ``message``/``end``/``check`` return a
    transition ``(up, reason)`` when the state changes, else None."""

    def __init__(self, interval_s: float, down_after: float = DOWN_AFTER) -> None:
        self.timeout_s = interval_s * down_after
        self.up = False
        self.reason = "no message from the daemon yet"
        self.last: float | None = None

    def message(self, now: float) -> tuple[bool, str] | None:
        self.last = now
        if self.up:
            return None
        self.up, self.reason = True, "messages from the daemon"
        return True, self.reason

    def end(self, now: float, reason: str) -> tuple[bool, str] | None:
        self.last = now
        was, self.up = self.up, False
        self.reason = f"the daemon ended its stream ({reason})"
        return (False, self.reason) if was else None

    def check(self, now: float) -> tuple[bool, str] | None:
        if not self.up or self.last is None or now - self.last <= self.timeout_s:
            return None
        self.up = False
        self.reason = f"no message from the daemon for {now - self.last:.1f} s (heartbeat timeout {self.timeout_s:g} s)"
        return False, self.reason


class DaemonLink:
    """One line's daemon. ``start()`` runs the subscriber thread; ``on_message`` and ``on_state`` are called from
    it (consumers hand them to their own thread). ``request(cmd, **args)`` returns a Future of the reply dict."""

    def __init__(self, cfg: LineConfig, on_message: MessageFn, on_state: StateFn,
                 clock: Callable[[], float] = time.monotonic, ctx: zmq.Context | None = None) -> None:
        self.cfg, self.on_message, self.on_state, self.clock = cfg, on_message, on_state, clock
        self.ctx = ctx or zmq.Context.instance()
        self.liveness = Liveness(cfg.heartbeat_ms / 1000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        curve = (cfg.curve.client_secret_key, cfg.curve.server_public_key) if cfg.curve.enabled else None
        self._curve = curve
        self._fast = ControlClient(cfg.control, cfg.request_timeout_ms, cfg.request_retries, curve, self.ctx)
        self._slow = ControlClient(cfg.control, cfg.switch_timeout_ms, 0, curve, self.ctx)
        self._fast_pool = ThreadPoolExecutor(1, thread_name_prefix=f"bridge-{cfg.line}-ctl")
        self._slow_pool = ThreadPoolExecutor(1, thread_name_prefix=f"bridge-{cfg.line}-switch")
        self.bad_messages = 0
        self._sub: Subscriber | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._check: asyncio.TimerHandle | None = None
        self._requests: LoopRequests | None = None

    @property
    def line(self) -> str:
        return self.cfg.line

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"bridge-{self.cfg.line}-sub", daemon=True)
        self._thread.start()

    def _subscriber(self) -> Subscriber:
        return Subscriber(self.cfg.publish, line=self.cfg.line, curve=self._curve, ctx=self.ctx)

    @property
    def _poll_s(self) -> float:
        return max(1, min(100, self.cfg.heartbeat_ms // 10)) / 1000

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Receive on ``loop`` (call from it) instead of a thread: ``on_message`` and ``on_state`` are then
        called on the loop. ``detach()`` (also on the loop) before ``stop()``."""
        self._sub = self._subscriber()
        self._loop = loop
        self._requests = LoopRequests(loop, self.cfg.control, self.cfg.request_timeout_ms, self.cfg.request_retries,
                                      self._curve, self.ctx)
        loop.add_reader(self._sub.sock.getsockopt(zmq.FD), self._drain)
        self._check = loop.call_later(self._poll_s, self._tick)
        loop.call_soon(self._drain)  # the FD is edge-triggered: read what came before the reader was added

    def detach(self) -> None:
        if self._loop is None or self._sub is None:
            return
        self._requests.close()
        self._requests = None
        self._loop.remove_reader(self._sub.sock.getsockopt(zmq.FD))
        if self._check is not None:
            self._check.cancel()
        self.bad_messages = self._sub.bad
        self._sub.close()
        self._sub = self._loop = None

    def request_now(self, cmd: str, on_send: Callable[[], None] | None = None, **args: Any) -> asyncio.Future:
        """Attached only, on the loop: a fast command (trigger) sent from the loop itself, no thread hand-off
        (:mod:`inspector.bridge.loopreq`); the asyncio Future gives the reply as :meth:`request`'s does."""
        if self._requests is None:
            raise RuntimeError("request_now needs the link attached to a loop")
        return self._requests.request(cmd, on_send=on_send, **args)

    def _drain(self) -> None:
        # ZeroMQ's FD only signals that EVENTS changed: read until EVENTS says nothing is left, every time.
        sub = self._sub
        while sub is not None and sub.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            got = sub.recv(0)
            if got is not None:  # None: a malformed message, counted and skipped by the Subscriber
                self._handle(got, self.clock())

    def _tick(self) -> None:
        if self._loop is None:
            return
        self._transition(self.liveness.check(self.clock()))
        self._check = self._loop.call_later(self._poll_s, self._tick)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for pool, client in ((self._fast_pool, self._fast), (self._slow_pool, self._slow)):
            # The clients' sockets belong to the pool threads: close them there, then end the threads.
            pool.submit(client.close)
            pool.shutdown(wait=True)

    def request(self, cmd: str, slow: bool = False, **args: Any) -> Future:
        """Send a control command; the Future gives the reply ``{"ok", "result"|"error"}`` or raises
        ProtocolError when the daemon did not answer after the Lazy Pirate retries. ``slow``: a command that
        loads an engine (switch_product): one attempt of ``switch_timeout_ms``, on its own thread."""
        client = self._slow if slow else self._fast
        return (self._slow_pool if slow else self._fast_pool).submit(client.request, cmd, **args)

    def _run(self) -> None:
        sub = self._subscriber()
        poll_ms = int(self._poll_s * 1000)
        try:
            while not self._stop.is_set():
                got = sub.recv(poll_ms)
                now = self.clock()
                if got is None:
                    self._transition(self.liveness.check(now))
                    continue
                self._handle(got, now)
        except ProtocolError as e:  # pragma: no cover - Subscriber skips malformed messages itself
            log.error("bridge: subscriber of line %s failed: %s", self.cfg.line, e)
        finally:
            self.bad_messages = sub.bad
            sub.close()

    def _handle(self, got: tuple[Message, bytes | None], now: float) -> None:
        msg, mask = got
        if isinstance(msg, EndOfStream):
            self._transition(self.liveness.end(now, msg.reason))
        else:
            self._transition(self.liveness.message(now))
        try:
            self.on_message(msg, mask, now)
        except Exception:  # noqa: BLE001 - one bad message must not end the subscriber
            log.exception("bridge: handling a message from line %s failed", self.cfg.line)

    def _transition(self, t: tuple[bool, str] | None) -> None:
        if t is None:
            return
        up, why = t
        (log.info if up else log.error)("line %s: daemon %s: %s", self.cfg.line, "up" if up else "DOWN", why)
        self.on_state(up, why)
