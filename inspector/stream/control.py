"""The control channel: a ROUTER socket taking JSON requests ``{"id": ..., "cmd": ..., ...}`` from PLCs and tools.

Commands: ``status``; ``switch_product`` (``product``); ``trigger`` (``part_id``); ``pause``; ``resume``;
``reload_calibration``. Every request gets exactly one reply ``{"id", "ok": true, "result": {...}}`` or
``{"id", "ok": false, "error": "..."}``; malformed input (not JSON, no cmd, unknown cmd, missing argument)
gets an error reply, never silence. Replies to the last requests are remembered by their exact bytes, so a
Lazy Pirate client that re-sends a request after a timeout gets the first answer instead of running the
command twice (a trigger must not make two results). Clients therefore give every request a unique id.

Request parsing and dispatch are pure (:func:`handle`); :class:`ControlServer` is the thin socket shell.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import zmq

from inspector.errors import ConfigError, InspectorError, ProtocolError
from inspector.protocol import auth, sockets
from inspector.stream.config import ZmqConfig

log = logging.getLogger(__name__)

# cmd -> required arguments (name, type)
COMMANDS: dict[str, tuple[tuple[str, type], ...]] = {
    "status": (),
    "switch_product": (("product", str),),
    "trigger": (("part_id", str),),
    "pause": (),
    "resume": (),
    "reload_calibration": (),
}
# Commands that take seconds (loading an engine) run on a worker thread, so status and triggers are
# still answered while a product is being switched.
SLOW_COMMANDS = ("switch_product", "reload_calibration")
MAX_REQUEST_BYTES = 64 * 1024
REMEMBERED_REPLIES = 256

Handler = Callable[..., dict[str, Any]]


def parse_request(payload: bytes) -> tuple[Any, str, dict[str, Any]]:
    """(id, cmd, arguments) of a request; ProtocolError names what is wrong."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise ProtocolError(f"request is {len(payload)} bytes; the limit is {MAX_REQUEST_BYTES}")
    try:
        req = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(f"request is not valid JSON: {e}") from e
    if not isinstance(req, dict):
        raise ProtocolError('request must be a JSON object like {"id": 1, "cmd": "status"}')
    cmd = req.get("cmd")
    if cmd not in COMMANDS:
        raise ProtocolError(f"unknown or missing 'cmd' {cmd!r}; commands: {sorted(COMMANDS)}")
    args = {}
    for name, tp in COMMANDS[cmd]:
        v = req.get(name)
        if not isinstance(v, tp) or (tp is str and not v):
            raise ProtocolError(f"'{cmd}' needs '{name}' ({tp.__name__}), got {v!r}")
        args[name] = v
    return req.get("id"), cmd, args


def reply(req_id: Any, ok: bool, body: Any) -> bytes:
    key = "result" if ok else "error"
    return json.dumps({"id": req_id, "ok": ok, key: body}, separators=(",", ":"), default=str).encode()


def _command(payload: bytes) -> str | None:
    try:
        return parse_request(payload)[1]
    except ProtocolError:
        return None


def _request_id(payload: bytes) -> Any:
    try:
        req = json.loads(payload)
        return req.get("id") if isinstance(req, dict) else None
    except (ValueError, UnicodeDecodeError):
        return None


def handle(payload: bytes, handlers: dict[str, Handler]) -> bytes:
    """One request -> one reply. Handler errors (InspectorError) become error replies with their message."""
    try:
        req_id, cmd, args = parse_request(payload)
    except ProtocolError as e:
        return reply(_request_id(payload), False, str(e))
    try:
        return reply(req_id, True, handlers[cmd](**args))
    except InspectorError as e:
        return reply(req_id, False, f"{cmd} failed: {e}")
    except Exception as e:  # noqa: BLE001 - a bug in one command must not kill the control channel
        log.exception("control command %s failed", cmd)
        return reply(req_id, False, f"{cmd} failed: internal error: {e!r}")


class ControlServer:
    """ROUTER bound to ``cfg.control``; ``run()`` is the thread body, ``stop()`` ends it within 100 ms."""

    def __init__(self, ctx: zmq.Context, cfg: ZmqConfig, handlers: dict[str, Handler]) -> None:
        self.handlers = handlers
        self.sock = sockets.router_socket(ctx)
        if cfg.curve.enabled:
            auth.make_server(self.sock, cfg.curve.server_secret_key)
        try:
            self.sock.bind(cfg.control)
        except zmq.ZMQError as e:
            self.sock.close(0)
            raise ConfigError(f"cannot bind zmq.control endpoint {cfg.control!r}: {e}") from e
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stop = threading.Event()
        self._replies: OrderedDict[bytes, bytes] = OrderedDict()
        self._replies_lock = threading.Lock()
        self._slow: queue.Queue = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        self.requests = 0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        worker = threading.Thread(target=self._work, name="inspector-control-worker", daemon=True)
        worker.start()
        try:
            while not self._stop.is_set():
                while not self._done.empty():
                    self._send(*self._done.get())
                if not dict(poller.poll(20)):
                    continue
                frames = self.sock.recv_multipart()
                if len(frames) < 2:
                    continue  # a ROUTER always prefixes the peer identity; nothing to reply to
                envelope, payload = frames[:-1], frames[-1]
                self.requests += 1
                if _command(payload) in SLOW_COMMANDS:
                    self._slow.put((envelope, payload))
                else:
                    self._send(envelope, self._answer(payload))
        finally:
            self._slow.put(None)
            worker.join(timeout=1.0)
            self.sock.close(0)

    def _send(self, envelope: list[bytes], out: bytes) -> None:
        try:
            self.sock.send_multipart([*envelope, out], flags=zmq.NOBLOCK)
        except zmq.ZMQError as e:
            log.warning("control reply not delivered: %s", e)

    def _work(self) -> None:
        while True:
            item = self._slow.get()
            if item is None:
                return
            envelope, payload = item
            self._done.put((envelope, self._answer(payload)))

    def _answer(self, payload: bytes) -> bytes:
        # A Lazy Pirate retry comes from a new socket (new peer identity) with the same bytes, so the key is
        # the request itself. 'status' is always answered fresh.
        try:
            req_id, cmd, _args = parse_request(payload)
            key = payload if req_id is not None and cmd != "status" else None
        except ProtocolError:
            key = None
        with self._replies_lock:
            if key is not None and key in self._replies:
                log.info("control: repeated request answered from memory: %s", payload[:200])
                return self._replies[key]
        out = handle(payload, self.handlers)
        if key is not None:
            with self._replies_lock:
                self._replies[key] = out
                while len(self._replies) > REMEMBERED_REPLIES:
                    self._replies.popitem(last=False)
        return out
