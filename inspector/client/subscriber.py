"""Clients of the daemon: the Lazy Pirate control client and a subscriber that decodes the PUB stream.

Lazy Pirate (ZeroMQ guide, ch. 4): send on a REQ socket, poll for the reply with a timeout; on timeout
close the socket (linger 0), open a new one and re-send, up to ``retries`` times, then give up with a
clear error. The server remembers replies by request bytes, so a re-sent command does not run twice.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import zmq

from inspector.errors import ProtocolError
from inspector.protocol import auth, messages, sockets
from inspector.protocol.messages import Message

log = logging.getLogger(__name__)


def request_prefix() -> str:
    """A prefix for request ids unique to one client (its process and a random part)."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def encode_request(rid: str, cmd: str, args: dict[str, Any]) -> bytes:
    return json.dumps({"id": rid, "cmd": cmd, **args}).encode()


def connect_req(ctx: zmq.Context, endpoint: str, timeout_ms: int, curve: tuple[str, str] | None) -> zmq.Socket:
    """A REQ socket connected to a daemon's control endpoint (CURVE client when ``curve``)."""
    s = sockets.req_socket(ctx)
    # A REQ send blocks while no connection is ready (a CURVE handshake the server refuses never gets
    # ready): bounded like the reply, so a client never hangs on a daemon that will not talk to it.
    s.setsockopt(zmq.SNDTIMEO, timeout_ms)
    if curve:
        auth.make_client(s, *curve)
    sockets.connect(s, endpoint)
    return s


def decode_reply(endpoint: str, raw: bytes) -> dict[str, Any]:
    """A reply's JSON; ProtocolError naming the endpoint when it is not JSON."""
    try:
        return json.loads(raw)
    except ValueError as e:
        raise ProtocolError(f"reply from {endpoint} is not JSON: {raw[:200]!r}") from e


def no_reply(endpoint: str, attempts: int, timeout_ms: int) -> ProtocolError:
    return ProtocolError(f"no reply from {endpoint} after {attempts} attempts of {timeout_ms} ms; "
                         "is `inspector run` up, and the endpoint and CURVE keys right?")


class ControlClient:
    """Sends control commands; ``request(cmd, **args)`` returns the reply's ``result`` or raises ProtocolError.

    ``curve``: (client secret key file, server public key file) to talk to a CURVE daemon.
    """

    def __init__(self, endpoint: str, timeout_ms: int = sockets.DEFAULTS.request_timeout_ms,
                 retries: int = sockets.DEFAULTS.request_retries, curve: tuple[str, str] | None = None,
                 ctx: zmq.Context | None = None) -> None:
        self.endpoint, self.timeout_ms, self.retries, self.curve = endpoint, timeout_ms, retries, curve
        self.ctx = ctx or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._prefix = request_prefix()
        self.sock: zmq.Socket | None = None

    def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        """One command with retries; the full reply dict ({'id', 'ok', 'result'|'error'})."""
        return self.send_raw(encode_request(f"{self._prefix}-{next(self._ids)}", cmd, args))

    def send_raw(self, payload: bytes) -> dict[str, Any]:
        """Send raw bytes (tests send garbage through this) and return the decoded reply."""
        for attempt in range(self.retries + 1):
            if self.sock is None:
                self.sock = connect_req(self.ctx, self.endpoint, self.timeout_ms, self.curve)
            try:
                self.sock.send(payload)
                answered = bool(self.sock.poll(self.timeout_ms, zmq.POLLIN))
            except zmq.Again:
                answered = False
            if answered:
                return decode_reply(self.endpoint, self.sock.recv())
            log.warning("no reply from %s within %d ms (attempt %d of %d)", self.endpoint, self.timeout_ms,
                        attempt + 1, self.retries + 1)
            # A REQ socket that sent without a reply is stuck in its state machine: throw it away.
            self.sock.close(0)
            self.sock = None
        raise no_reply(self.endpoint, self.retries + 1, self.timeout_ms)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None


class Subscriber:
    """SUB socket on one or more endpoints; ``recv(timeout_ms)`` returns (message, mask PNG) or None."""

    def __init__(self, endpoints: list[str] | str, line: str | None = None, kinds: tuple[str, ...] = messages.KINDS,
                 curve: tuple[str | Path, str | Path] | None = None, ctx: zmq.Context | None = None,
                 rcvhwm: int | None = None) -> None:
        self.ctx = ctx or zmq.Context.instance()
        topics = [messages.topic(line, k) for k in kinds] if line else [f"{messages.TOPIC_PREFIX}/".encode()]
        self.kinds = kinds
        self.sock = sockets.sub_socket(self.ctx, topics, rcvhwm)
        if curve:
            auth.make_client(self.sock, *curve)
        for ep in [endpoints] if isinstance(endpoints, str) else endpoints:
            sockets.connect(self.sock, ep)
        self.bad = 0

    def recv(self, timeout_ms: int = 1000) -> tuple[Message, bytes | None] | None:
        """The next message of the subscribed kinds, or None on timeout. Malformed messages are counted
        and skipped (logged), so one bad publisher cannot stop a listener."""
        if not self.sock.poll(timeout_ms, zmq.POLLIN):
            return None
        frames = self.sock.recv_multipart()
        try:
            msg, mask = messages.decode(frames)
        except ProtocolError as e:
            self.bad += 1
            log.warning("skipping a malformed message: %s", e)
            return None
        if not self.kinds or messages.kind_of(msg) in self.kinds:
            return msg, mask
        return None

    def close(self) -> None:
        self.sock.close(0)
