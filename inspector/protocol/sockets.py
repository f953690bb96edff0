"""ZeroMQ socket defaults in one named place, and the factories that apply them.

Why these values:

- PUB ``SNDHWM``: per-subscriber queue length; past it ZeroMQ drops messages for that subscriber only, so a
  slow or dead subscriber costs memory up to the HWM and never blocks the daemon.
- PUB sends use ``NOBLOCK``: belt and braces, a send can never wait.
- ``LINGER`` on PUB: how long close() keeps flushing queued results at shutdown (SIGTERM must not lose
  the last results); on clients 0, so a dead daemon never hangs a client's exit.
- Heartbeat (ZMTP PING) options detect dead TCP peers in seconds instead of the OS's hours.
- ROUTER ``MAXMSGSIZE``: libzmq refuses a bigger frame and drops that peer's connection before the daemon
  reads it, so an oversized request costs nothing; ``RCVHWM`` bounds how many requests can wait.
"""

from __future__ import annotations

from dataclasses import dataclass

import zmq

from inspector.errors import ProtocolError
from inspector.protocol.commands import MAX_REQUEST_BYTES


@dataclass(frozen=True)
class SocketDefaults:
    """Options every inspector socket gets unless the config overrides them (milliseconds, message counts)."""

    pub_sndhwm: int = 1000
    pub_linger_ms: int = 1000
    sub_rcvhwm: int = 10000
    router_sndhwm: int = 1000
    router_rcvhwm: int = 100
    router_linger_ms: int = 0
    client_linger_ms: int = 0
    zmtp_heartbeat_ivl_ms: int = 2000
    zmtp_heartbeat_timeout_ms: int = 6000
    request_timeout_ms: int = 2500
    request_retries: int = 3


DEFAULTS = SocketDefaults()


def _heartbeats(sock: zmq.Socket, d: SocketDefaults) -> None:
    sock.setsockopt(zmq.HEARTBEAT_IVL, d.zmtp_heartbeat_ivl_ms)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, d.zmtp_heartbeat_timeout_ms)


def pub_socket(ctx: zmq.Context, sndhwm: int | None = None, linger_ms: int | None = None,
               d: SocketDefaults = DEFAULTS, kind: int = zmq.PUB) -> zmq.Socket:
    """A PUB socket (not yet bound); ``kind=zmq.XPUB`` for one that also tells which topics are subscribed."""
    s = ctx.socket(kind)
    s.setsockopt(zmq.SNDHWM, d.pub_sndhwm if sndhwm is None else sndhwm)
    s.setsockopt(zmq.LINGER, d.pub_linger_ms if linger_ms is None else linger_ms)
    _heartbeats(s, d)
    return s


def sub_socket(ctx: zmq.Context, topics: list[bytes], rcvhwm: int | None = None,
               d: SocketDefaults = DEFAULTS) -> zmq.Socket:
    """A SUB socket subscribed to the topic prefixes (not yet connected)."""
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.RCVHWM, d.sub_rcvhwm if rcvhwm is None else rcvhwm)
    s.setsockopt(zmq.LINGER, d.client_linger_ms)
    _heartbeats(s, d)
    for t in topics:
        s.setsockopt(zmq.SUBSCRIBE, t)
    return s


def router_socket(ctx: zmq.Context, d: SocketDefaults = DEFAULTS, max_msg_bytes: int | None = None) -> zmq.Socket:
    """The control ROUTER; unroutable replies (a client that left) are dropped, not errors. ``max_msg_bytes``:
    the largest frame read (default :data:`inspector.protocol.commands.MAX_REQUEST_BYTES`)."""
    s = ctx.socket(zmq.ROUTER)
    s.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES if max_msg_bytes is None else max_msg_bytes)
    s.setsockopt(zmq.RCVHWM, d.router_rcvhwm)
    s.setsockopt(zmq.SNDHWM, d.router_sndhwm)
    s.setsockopt(zmq.LINGER, d.router_linger_ms)
    s.setsockopt(zmq.ROUTER_MANDATORY, 0)
    _heartbeats(s, d)
    return s


def req_socket(ctx: zmq.Context, d: SocketDefaults = DEFAULTS) -> zmq.Socket:
    """A REQ client socket: linger 0 so a Lazy Pirate retry can throw it away at once."""
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, d.client_linger_ms)
    _heartbeats(s, d)
    return s


def connect(sock: zmq.Socket, endpoint: str) -> None:
    """``sock.connect(endpoint)``, with a ProtocolError naming the endpoint and the accepted forms."""
    try:
        sock.connect(endpoint)
    except zmq.ZMQError as e:
        raise ProtocolError(f"cannot connect to {endpoint!r}: {e}; an endpoint looks like tcp://HOST:PORT or "
                            "ipc:///PATH") from e
