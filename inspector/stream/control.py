"""The control channel: a ROUTER socket taking JSON requests ``{"id": ..., "cmd": ..., ...}`` from PLCs and tools.

The commands are defined once in :mod:`inspector.protocol.commands`. What no input can do:

- cost more than ``zmq.max_request_bytes`` (default 64 KiB): the socket's ``MAXMSGSIZE`` makes libzmq drop a
  bigger message and that client's connection before the daemon reads a byte of it;
- stop the control thread: every request that reaches the daemon gets exactly one reply, an error reply for
  anything malformed (not JSON, nested deeper than ``MAX_JSON_DEPTH``, not an object, a ``cmd`` of the wrong
  type, a missing argument); a command that fails inside the daemon is an error reply and a
  ``control_error`` event, never a dead thread.

Lazy Pirate retries: a client that gets no reply re-sends the same bytes on a new socket. An identical
request within ``replay_window_s`` of the first reply is answered from memory with ``"replayed": true``
(a trigger must not make two results); a slow command still running takes the retry along and answers
both. Anything later is executed again. ``status`` is never replayed.

Request parsing and dispatch are pure (:func:`handle`, :class:`ReplyCache`); :class:`ControlServer` is
the socket shell.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq

from inspector.errors import ConfigError, InspectorError, ProtocolError
from inspector.protocol import auth, sockets
from inspector.protocol.commands import COMMANDS, MAX_JSON_DEPTH, SLOW
from inspector.stream.config import ZmqConfig

log = logging.getLogger(__name__)

REMEMBERED_REPLIES = 256
# The control thread runs this much nicer than the daemon (Linux threads have their own nice value): under a
# flood of requests the CPU goes to inspection first.
CONTROL_NICE = 5
# A ROUTER message is [identity, (empty delimiter,) request]; more frames than this is not a request.
MAX_FRAMES = 4

Handler = Callable[..., dict[str, Any]]
EventFn = Callable[[str, str, dict[str, Any]], None]


# Each byte becomes its step in nesting depth: [ and { +1, ] and } -1 (0xff as int8), anything else 0.
_DEPTH_STEP = bytes(1 if c in b"[{" else 0xFF if c in b"]}" else 0 for c in range(256))


def json_depth_ok(payload: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when brackets in ``payload`` nest no deeper than ``limit``.

    Counted at C speed (numpy), so a 64 KiB bracket bomb costs the control thread well under a millisecond
    and never holds the interpreter lock long enough to slow inspection. Brackets inside strings count
    too: a request whose strings hold more than ``limit`` nested brackets is refused, which no real command
    needs. A payload with fewer brackets than the limit cannot nest deeper and is not scanned.
    """
    if payload.count(b"[") + payload.count(b"{") <= limit:
        return True
    depth = np.cumsum(np.frombuffer(payload.translate(_DEPTH_STEP), np.int8), dtype=np.int32)
    return int(depth.max(initial=0)) <= limit


def parse_request(payload: bytes) -> tuple[Any, str, dict[str, Any]]:
    """(id, cmd, arguments) of a request; ProtocolError names what is wrong. Never raises anything else."""
    if not json_depth_ok(payload):
        raise ProtocolError(f"request nests JSON deeper than {MAX_JSON_DEPTH} levels")
    try:
        req = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ProtocolError(f"request is not valid JSON: {e}") from e
    if not isinstance(req, dict):
        raise ProtocolError('request must be a JSON object like {"id": 1, "cmd": "status"}')
    cmd = req.get("cmd")
    if not isinstance(cmd, str) or cmd not in COMMANDS:
        raise ProtocolError(f"unknown or missing 'cmd' {_short(cmd)}; commands: {sorted(COMMANDS)}")
    args = {}
    for name, tp in COMMANDS[cmd].args:
        v = req.get(name)
        if not isinstance(v, tp) or (tp is str and not v):
            raise ProtocolError(f"'{cmd}' needs '{name}' ({tp.__name__}), got {_short(v)}")
        args[name] = v
    return req.get("id"), cmd, args


def _short(v: Any, n: int = 80) -> str:
    text = repr(v)
    return text if len(text) <= n else text[:n] + "..."


def reply(req_id: Any, ok: bool, body: Any, replayed: bool = False) -> bytes:
    out = {"id": req_id, "ok": ok, "result" if ok else "error": body}
    if replayed:
        out["replayed"] = True
    return json.dumps(out, separators=(",", ":"), default=str).encode()


def request_id(payload: bytes) -> Any:
    """The ``id`` of a request as far as it can be read (None for garbage); never raises."""
    if not json_depth_ok(payload):
        return None
    try:
        req = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return req.get("id") if isinstance(req, dict) else None


def handle(payload: bytes, handlers: dict[str, Handler], event: EventFn | None = None) -> bytes:
    """One request -> one reply. A refusal (InspectorError) is an error reply with its message; any other
    exception is an error reply and a ``control_error`` event."""
    try:
        req_id, cmd, args = parse_request(payload)
    except ProtocolError as e:
        return reply(request_id(payload), False, str(e))
    try:
        return reply(req_id, True, handlers[cmd](**args))
    except InspectorError as e:
        return reply(req_id, False, f"{cmd} failed: {e}")
    except Exception as e:  # noqa: BLE001 - a bug in one command must not kill the control channel
        log.exception("control command %s failed", cmd)
        if event is not None:
            event("control_error", f"control command {cmd} failed inside the daemon: {e!r}",
                  {"cmd": cmd, "error": repr(e)})
        return reply(req_id, False, f"{cmd} failed: internal error: {e!r}")


def classify(payload: bytes) -> tuple[str | None, bytes | None]:
    """(command or None for garbage, the key its reply is remembered under or None).

    The key is the request's bytes: a Lazy Pirate retry comes from a new socket (a new peer identity)
    with the same bytes. Requests without an id, garbage and ``status`` are never replayed.
    """
    try:
        req_id, cmd, _ = parse_request(payload)
    except ProtocolError:
        return None, None
    return cmd, (payload if req_id is not None and cmd != "status" else None)


def _lower_priority() -> None:
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + CONTROL_NICE))
    except (OSError, AttributeError) as e:  # not Linux, or not allowed: the control thread simply keeps its priority
        log.debug("control thread priority unchanged: %s", e)


class ReplyCache:
    """Replies by request bytes, each for ``window_s`` seconds after it was made (clock passed in), at most
    ``size`` of them. What it hands back is marked ``"replayed": true``."""

    def __init__(self, window_s: float, size: int = REMEMBERED_REPLIES) -> None:
        self.window_s, self.size = window_s, size
        self._items: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes, now: float) -> bytes | None:
        with self._lock:
            self._expire(now)
            hit = self._items.get(key)
            return None if hit is None else hit[1]

    def put(self, key: bytes, out: bytes, now: float) -> None:
        try:
            r = json.loads(out)
            replayed = reply(r.get("id"), bool(r.get("ok")), r.get("result" if r.get("ok") else "error"), True)
        except (ValueError, AttributeError):
            return
        with self._lock:
            self._items[key] = (now, replayed)
            self._items.move_to_end(key)
            self._expire(now)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._items:
            key, (t, _) = next(iter(self._items.items()))
            if now - t <= self.window_s:
                return
            del self._items[key]

    def __len__(self) -> int:
        return len(self._items)


class ControlServer:
    """ROUTER bound to ``cfg.control``; ``run()`` is the thread body, ``stop()`` ends it within 100 ms.

    ``tick`` (monotonic seconds) is refreshed by every loop of the thread, so a watchdog sees it alive.
    """

    def __init__(self, ctx: zmq.Context, cfg: ZmqConfig, handlers: dict[str, Handler],
                 event: EventFn | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if set(handlers) != set(COMMANDS):
            raise InspectorError(f"control handlers {sorted(handlers)} do not match the commands of "
                                 f"inspector.protocol.commands {sorted(COMMANDS)}")
        self.handlers, self.event, self.clock = handlers, event, clock
        self.sock = sockets.router_socket(ctx, max_msg_bytes=cfg.max_request_bytes)
        if cfg.curve.enabled:
            auth.make_server(self.sock, cfg.curve.server_secret_key)
        try:
            self.sock.bind(cfg.control)
        except zmq.ZMQError as e:
            self.sock.close(0)
            raise ConfigError(f"cannot bind key 'zmq.control' endpoint {cfg.control!r}: {e}") from e
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.cache = ReplyCache(cfg.replay_window_s)
        self._stop = threading.Event()
        self._slow: queue.Queue = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        self._inflight: dict[bytes, list[list[bytes]]] = {}
        self.requests = 0
        self.replayed = 0
        self.tick = clock()
        self.worker = threading.Thread(target=self._work, name="inspector-control-worker", daemon=True)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        _lower_priority()
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        self.worker.start()
        try:
            while not self._stop.is_set():
                self.tick = self.clock()
                try:
                    self._flush_done()
                    if dict(poller.poll(20)):
                        self._serve_one()
                except Exception as e:  # noqa: BLE001 - the control thread outlives anything one request does
                    log.exception("control: a request could not be served")
                    if self.event is not None:
                        self.event("control_error", f"control channel error: {e!r}", {"error": repr(e)})
        finally:
            self._slow.put(None)
            self.worker.join(timeout=1.0)
            self.sock.close(0)

    def _serve_one(self) -> None:
        frames = self.sock.recv_multipart(zmq.NOBLOCK)
        if len(frames) < 2 or len(frames) > MAX_FRAMES:
            log.warning("control: ignored a message of %d frames (a request is identity, [delimiter,] payload)",
                        len(frames))
            return
        envelope, payload = frames[:-1], frames[-1]
        self.requests += 1
        cmd, key = classify(payload)
        if key is not None:
            if key in self._inflight:  # a retry of a slow command still running: answered with it
                self._inflight[key].append(envelope)
                return
            cached = self.cache.get(key, self.clock())
            if cached is not None:
                self.replayed += 1
                log.info("control: a repeated request answered from memory: %s", payload[:200])
                self._send(envelope, cached)
                return
        if cmd in SLOW:
            if key is not None:
                self._inflight[key] = []
            self._slow.put((envelope, payload, key))
        else:
            self._send(envelope, self._answer(payload, key))

    def _flush_done(self) -> None:
        while not self._done.empty():
            envelope, out, key = self._done.get()
            self._send(envelope, out)
            for other in self._inflight.pop(key, []) if key is not None else []:
                self.replayed += 1
                self._send(other, self.cache.get(key, self.clock()) or out)

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
            envelope, payload, key = item
            try:
                out = self._answer(payload, key)
            except Exception as e:  # noqa: BLE001 - the worker must answer and live on
                out = reply(request_id(payload), False, f"internal error: {e!r}")
            self._done.put((envelope, out, key))

    def _answer(self, payload: bytes, key: bytes | None) -> bytes:
        out = handle(payload, self.handlers, self.event)
        if key is not None:
            self.cache.put(key, out, self.clock())
        return out

