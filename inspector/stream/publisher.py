"""The PUB side: one socket, owned by the output thread, sending without ever blocking.

A slow or dead subscriber never slows inspection: sends are ``NOBLOCK`` and the per-subscriber high-water
mark makes ZeroMQ drop that subscriber's excess messages (see sockets.py). A send that still fails is
counted in ``send_failures``, never raised into the pipeline.

The socket is an XPUB: it behaves as a PUB and also tells which topics someone subscribes to (ZeroMQ reports a
topic's first subscription and its last unsubscription), so the daemon encodes preview images only while a
station, or anyone else, subscribes to them (``wants``).
"""

from __future__ import annotations

import logging

import zmq

from inspector.errors import ConfigError
from inspector.protocol import auth, messages, sockets
from inspector.protocol.messages import Message
from inspector.stream.config import ZmqConfig

log = logging.getLogger(__name__)


class Publisher:
    """PUB socket bound to ``cfg.publish``; CURVE server when ``cfg.curve.enabled`` (ZAP handler started by
    the caller). Use from one thread only: ZeroMQ sockets are not thread-safe."""

    def __init__(self, ctx: zmq.Context, cfg: ZmqConfig) -> None:
        self.sock = sockets.pub_socket(ctx, cfg.sndhwm, cfg.linger_ms, kind=zmq.XPUB)
        if cfg.curve.enabled:
            auth.make_server(self.sock, cfg.curve.server_secret_key)
        self.endpoints = []
        for ep in cfg.publish:
            try:
                self.sock.bind(ep)
            except zmq.ZMQError as e:
                self.sock.close(0)
                raise ConfigError(f"cannot bind zmq.publish endpoint {ep!r}: {e}") from e
            self.endpoints.append(self.sock.getsockopt_string(zmq.LAST_ENDPOINT))
        self.sent = 0
        self.send_failures = 0
        self.subscribed: set[bytes] = set()  # topic prefixes somebody subscribes to now

    def poll_subscriptions(self) -> None:
        """Take the (un)subscriptions that came in; never blocks."""
        while True:
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError as e:  # pragma: no cover - a closed socket at shutdown
                log.debug("reading subscriptions: %s", e)
                return
            if frame[:1] == b"\x01":
                self.subscribed.add(frame[1:])
            elif frame[:1] == b"\x00":
                self.subscribed.discard(frame[1:])

    def wants(self, topic: bytes) -> bool:
        """Does a subscriber take ``topic`` now (a subscription that is a prefix of it)?"""
        return any(topic.startswith(t) for t in self.subscribed)

    def send(self, msg: Message, mask_png: bytes | None = None) -> bool:
        """Send one message; False (and counted) when ZeroMQ refused it."""
        try:
            self.sock.send_multipart(messages.encode(msg, mask_png), flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.send_failures += 1
            return False
        except zmq.ZMQError as e:
            self.send_failures += 1
            log.error("publish failed: %s", e)
            return False
        self.sent += 1
        return True

    def close(self, linger_ms: int | None = None) -> None:
        """Close; queued messages are flushed for up to the socket's linger (SIGTERM loses no results)."""
        self.sock.close(linger_ms)
