"""Lazy Pirate control requests on an asyncio loop: the OPC UA bridge's triggers leave from the loop itself.

:class:`~inspector.client.subscriber.ControlClient` blocks (this shares its socket, request ids and errors), so the bridges run it on a thread; handing a
trigger to that thread cost the handshake 0.3 ms at the median and 1.5-1.7 ms at p99 (the loop holds the GIL
while it answers the PLC's write; tests/bridge/bench.py). Here the REQ socket belongs to the loop: ``request``
sends at once (a REQ send only queues), the loop reads the reply from the socket's edge-triggered FD, and a
timer re-sends on a fresh socket (Lazy Pirate) up to ``retries`` times before the future fails with
ProtocolError, as ControlClient does. Requests go one at a time, in order (a REQ socket allows no other).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from inspector.client.subscriber import connect_req, decode_reply, encode_request, no_reply, request_prefix
from inspector.errors import ProtocolError

log = logging.getLogger(__name__)


class LoopRequests:
    """``request(cmd, **args)`` (on the loop) returns an asyncio Future of the reply dict; ``close()`` fails
    what is pending. ``on_send`` of a request is called as it first leaves."""

    def __init__(self, loop: asyncio.AbstractEventLoop, endpoint: str, timeout_ms: int, retries: int,
                 curve: tuple[str, str] | None = None, ctx: zmq.Context | None = None) -> None:
        self.loop, self.endpoint, self.timeout_ms, self.retries, self.curve = loop, endpoint, timeout_ms, retries, curve
        self.ctx = ctx or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._prefix = request_prefix()
        self._queue: deque[tuple[bytes, asyncio.Future, Callable[[], None] | None]] = deque()
        self._current: tuple[bytes, asyncio.Future, Callable[[], None] | None] | None = None
        self._attempt = 0
        self._sock: zmq.Socket | None = None
        self._timer: asyncio.TimerHandle | None = None

    def request(self, cmd: str, on_send: Callable[[], None] | None = None, **args: Any) -> asyncio.Future:
        payload = encode_request(f"{self._prefix}-{next(self._ids)}", cmd, args)
        fut = self.loop.create_future()
        self._queue.append((payload, fut, on_send))
        if self._current is None:
            self._next()
        return fut

    def close(self) -> None:
        self._drop_socket()
        pending = ([self._current] if self._current else []) + list(self._queue)
        self._current, self._queue = None, deque()
        for _payload, fut, _cb in pending:
            if not fut.done():
                fut.set_exception(ProtocolError(f"the bridge stopped before {self.endpoint} answered"))

    # -- one request at a time ----------------------------------------------------------------------------
    def _next(self) -> None:
        while self._queue:
            self._current, self._attempt = self._queue.popleft(), 0
            if not self._current[1].done():  # a caller may have given up on it (cancelled)
                self._send()
                return
        self._current = None

    def _send(self) -> None:
        payload, _fut, on_send = self._current
        if self._sock is None:
            self._sock = connect_req(self.ctx, self.endpoint, self.timeout_ms, self.curve)
            self.loop.add_reader(self._sock.getsockopt(zmq.FD), self._readable)
        if on_send is not None and self._attempt == 0:
            on_send()
        with contextlib.suppress(zmq.Again):  # no connection can take it yet: the timeout re-sends
            self._sock.send(payload, zmq.NOBLOCK)
        self._timer = self.loop.call_later(self.timeout_ms / 1000, self._timed_out)
        self.loop.call_soon(self._readable)  # a send changes EVENTS without a new edge on the FD

    def _readable(self) -> None:
        sock = self._sock
        while sock is not None and self._current is not None and sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            raw = sock.recv(zmq.NOBLOCK)
            fut = self._current[1]
            self._timer.cancel()
            if not fut.done():
                try:
                    fut.set_result(decode_reply(self.endpoint, raw))
                except ProtocolError as e:
                    fut.set_exception(e)
            self._current = None
            self._next()
            sock = self._sock

    def _timed_out(self) -> None:
        if self._current is None:
            return
        log.warning("no reply from %s within %d ms (attempt %d of %d)", self.endpoint, self.timeout_ms,
                    self._attempt + 1, self.retries + 1)
        self._drop_socket()  # a REQ socket that sent without a reply is stuck in its state machine
        self._attempt += 1
        if self._attempt <= self.retries:
            self._send()
            return
        fut = self._current[1]
        if not fut.done():
            fut.set_exception(no_reply(self.endpoint, self.retries + 1, self.timeout_ms))
        self._current = None
        self._next()

    def _drop_socket(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._sock is not None:
            self.loop.remove_reader(self._sock.getsockopt(zmq.FD))
            self._sock.close(0)
            self._sock = None
