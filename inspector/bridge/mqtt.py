"""The MQTT bridge: results, events and status of one or more lines as JSON to a broker, QoS 1, store-and-forward.

Topics (``P`` = ``mqtt.topic_prefix``, ``L`` = the line):

- ``P/L/result``, ``P/L/event``, ``P/L/status``: the daemon's message header as JSON (docs/zeromq.md), plus
  ``bridge_run`` (an id of this bridge process) and ``bridge_seq`` (increasing per message of this bridge);
  ``P/L/mask/<frame_id>``: the defect mask PNG, with ``mqtt.masks``;
- ``P/L/heartbeat``: the daemon's heartbeats while the broker is reachable (a stale heartbeat is not worth keeping);
- ``P/L/bridge`` (retained): ``{"state": "up" | "fault", "reason", "ts"}``: the daemon as this bridge sees it;
- ``P/bridge/<name>/status`` (retained; the last will says offline): online, waiting, dropped;
  ``P/bridge/<name>/alarm`` (retained): ``{"kind": "buffer_overflow", "dropped", "dropped_total", ...}``.

Everything but heartbeats goes through :class:`~inspector.bridge.buffer.ForwardBuffer`. One pump thread hands
messages to paho in order and learns which were acknowledged from the mids paho's on_publish hands it (and
their ``MQTTMessageInfo``); paho's callbacks (which run under paho's own locks) only flip the connection state
under the buffer's lock, append a mid and wake the pump, and the pump never holds that lock while it calls
paho, so the two can never wait for each other.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inspector.bridge.buffer import ForwardBuffer, Item, SqliteStore
from inspector.bridge.config import BridgeConfig, MqttConfig
from inspector.bridge.link import DaemonLink
from inspector.errors import ConfigError
from inspector.protocol.messages import EndOfStream, Event, Heartbeat, Message, Result, Status, to_header

log = logging.getLogger(__name__)

QOS = 1


def read_password(path: str) -> str:
    p = Path(path)
    try:
        mode = p.stat().st_mode
        text = p.read_text().strip("\r\n")
    except OSError as e:
        raise ConfigError(f"mqtt.password_file {p}: {e.strerror}") from e
    if mode & 0o007:
        raise ConfigError(f"mqtt.password_file {p} is readable by others (mode {mode & 0o777:o}); chmod 600 {p}")
    return text


def make_client(cfg: MqttConfig, client_id: str, will: tuple[str, bytes]) -> Any:
    """A paho client with this config's TLS, credentials, reconnect backoff and last will (not connected)."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                    protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(cfg.buffer.max_inflight)
    c.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
    c.will_set(will[0], will[1], qos=QOS, retain=True)
    if cfg.username:
        c.username_pw_set(cfg.username, read_password(cfg.password_file) if cfg.password_file else None)
    if cfg.tls.enabled:
        c.tls_set(ca_certs=cfg.tls.ca_certs or None, certfile=cfg.tls.certfile or None,
                  keyfile=cfg.tls.keyfile or None)
        c.tls_insecure_set(cfg.tls.insecure)
    return c


class MqttBridge:
    """One broker connection for the lines of one bridge config."""

    def __init__(self, cfg: BridgeConfig, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.cfg, self.m, self.clock, self.wall = cfg, cfg.settings, clock, wall
        b = self.m.buffer
        self.buffer = ForwardBuffer(b.max_messages, b.max_inflight, b.alarm_interval_s)
        self.store = SqliteStore(b.path) if b.path else None
        self.run_id = uuid.uuid4().hex[:12]
        self.prefix = self.m.topic_prefix
        self.status_topic = f"{self.prefix}/bridge/{cfg.name}/status"
        self._lock = threading.Lock()  # the buffer; never held while calling paho
        self._infos: dict[int, Any] = {}  # seq -> paho's MQTTMessageInfo of a handed-over item (pump thread only)
        self._acked: deque[int] = deque()  # mids from on_publish, for the pump
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._alarmed = 0  # dropped_total in the last alarm published
        self._last_alarm = float("-inf")
        self._flush_alarm = False
        self.broker = "connecting"
        self.store_errors = 0
        self.links: list[DaemonLink] = []
        self.client: Any = None
        self._pump_thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.store is not None:
            kept = self.store.load(self.clock())
            self.buffer.restore(kept)
            if kept:
                log.info("MQTT bridge %s: %d undelivered message(s) from %s", self.cfg.name, len(kept), self.store.path)
        offline = json.dumps({"online": False, "bridge_run": self.run_id}).encode()
        self.client = make_client(self.m, self.m.client_id or f"inspector-{self.cfg.name}", (self.status_topic,
                                                                                             offline))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.connect_async(self.m.host, self.m.port, self.m.keepalive_s)
        self.client.loop_start()
        self._pump_thread = threading.Thread(target=self._pump, name=f"bridge-{self.cfg.name}-pump", daemon=True)
        self._pump_thread.start()
        for line in self.cfg.lines:
            link = DaemonLink(line, self._on_message_of(line.line), self._on_state_of(line.line), self.clock)
            self.links.append(link)
            link.start()
        log.info("MQTT bridge %s -> %s:%d (prefix %s, TLS %s) for lines %s", self.cfg.name, self.m.host, self.m.port,
                 self.prefix, self.m.tls.enabled, [x.line for x in self.cfg.lines])

    async def stop(self) -> None:
        for link in self.links:
            link.stop()
        self._stop.set()
        self._wake.set()
        if self._pump_thread is not None:
            self._pump_thread.join(5)
        if self.client is not None:
            if self.buffer.connected:
                self._direct(self.status_topic, self._status(online=False), retain=True).wait_for_publish(2)
            self.client.disconnect()
            self.client.loop_stop()
        with self._lock:
            waiting = len(self.buffer)
        if self.store is not None:
            self.store.close()
            if waiting:
                log.warning("MQTT bridge %s: %d message(s) not delivered yet stay in %s for the next start",
                            self.cfg.name, waiting, self.store.path)
        elif waiting:
            log.error("MQTT bridge %s: %d message(s) not delivered are lost at this stop (no mqtt.buffer.path "
                      "to keep them)", self.cfg.name, waiting)

    # -- the daemon's side (link threads) ---------------------------------------------------------------
    def _on_message_of(self, line: str) -> Callable[[Message, bytes | None, float], None]:
        def on_message(msg: Message, mask: bytes | None, _received: float) -> None:
            if isinstance(msg, Heartbeat):
                if self.m.heartbeats and self.buffer.connected:
                    self._direct(f"{self.prefix}/{line}/heartbeat", self._json(to_header(msg)))
                return
            kind = {Result: "result", Event: "event", Status: "status", EndOfStream: "status"}[type(msg)]
            self.enqueue(f"{self.prefix}/{line}/{kind}", to_header(msg))
            if isinstance(msg, Result) and mask is not None and self.m.masks:
                self.enqueue(f"{self.prefix}/{line}/mask/{msg.frame_id}", mask)
        return on_message

    def _on_state_of(self, line: str) -> Callable[[bool, str], None]:
        def on_state(up: bool, why: str) -> None:
            self.enqueue(f"{self.prefix}/{line}/bridge", {"state": "up" if up else "fault", "reason": why,
                                                           "ts": self.wall(), "bridge": self.cfg.name}, retain=True)
        return on_state

    def enqueue(self, topic: str, body: dict[str, Any] | bytes, retain: bool = False) -> None:
        """Buffer one message for delivery in order (``body``: a JSON object, or raw bytes such as a PNG)."""
        now = self.clock()
        with self._lock:
            if isinstance(body, dict):
                payload = self._json({**body, "bridge_run": self.run_id, "bridge_seq": self.buffer.next_seq})
            else:
                payload = body
            item, dropped = self.buffer.push(topic, payload, now, retain)
        self._mirror(add=item, remove=[d.seq for d in dropped])
        self._wake.set()

    def _mirror(self, add: Item | None = None, remove: list[int] | None = None) -> None:
        if self.store is None:
            return
        try:
            if add is not None:
                self.store.add(add)
            if remove:
                self.store.remove(remove)
        except Exception as e:  # noqa: BLE001 - a full disk must not stop delivery from memory
            self.store_errors += 1
            if self.store_errors == 1 or self.store_errors % 1000 == 0:
                log.error("MQTT bridge %s: buffer file %s failed (%d time(s)); delivering from memory only: %s",
                          self.cfg.name, self.store.path, self.store_errors, e)

    # -- paho callbacks (network thread) -----------------------------------------------------------------
    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.broker = f"refused: {reason}"
            log.error("MQTT bridge %s: broker %s:%d refused the connection: %s", self.cfg.name, self.m.host,
                      self.m.port, reason)
            return
        self.broker = "connected"
        log.info("MQTT bridge %s: connected to %s:%d (%d waiting)", self.cfg.name, self.m.host, self.m.port,
                 len(self.buffer))
        with self._lock:
            self.buffer.on_connect()
        self._flush_alarm = True
        self._wake.set()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        with self._lock:
            was = self.buffer.connected
            self.buffer.on_disconnect()
        if not self.broker.startswith("refused"):  # keep why the broker said no, not the disconnect after it
            self.broker = f"disconnected: {reason}"
        if was:
            log.warning("MQTT bridge %s: lost the broker (%s); buffering", self.cfg.name, reason)

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, _reason: Any, _props: Any) -> None:
        # paho calls this before it marks the message's MQTTMessageInfo published: hand the pump the mid
        # itself, or a pump that wakes at once would find nothing acknowledged and sleep on.
        self._acked.append(mid)
        self._wake.set()

    # -- the pump thread -----------------------------------------------------------------------------------
    def _pump(self) -> None:
        last_status = 0.0
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            now = self.clock()
            acked = set()
            while self._acked:
                acked.add(self._acked.popleft())
            done = [seq for seq, info in self._infos.items() if info.mid in acked or info.is_published()]
            for seq in done:
                del self._infos[seq]
            with self._lock:
                for seq in done:
                    self.buffer.acked(seq)
                alarm = self.buffer.alarm(now)
                items = self.buffer.take()
                connected = self.buffer.connected
            self._mirror(remove=done)
            if alarm is not None:  # the log, rate-limited by the buffer
                log.error("MQTT bridge %s: buffer full (%d messages): dropped the %d oldest since %.1f s ago, "
                          "%d in all", self.cfg.name, alarm.capacity, alarm.dropped, now - alarm.since,
                          alarm.dropped_total)
            if connected:
                self._publish_alarm(now)
            for it in items:
                self._infos[it.seq] = self.client.publish(it.topic, it.payload, qos=QOS, retain=it.retain)
            if connected and now - last_status >= 5.0:
                last_status = now
                self._direct(self.status_topic, self._status(online=True), retain=True)

    def _publish_alarm(self, now: float) -> None:
        # Every drop reaches the broker: right after a (re)connect, ahead of the backlog (the consumer learns of
        # the gap before it reads what is after it), then at most every alarm_interval_s.
        total = self.buffer.dropped
        interval = self.m.buffer.alarm_interval_s
        if total <= self._alarmed or not (self._flush_alarm or now - self._last_alarm >= interval):
            return
        self._direct(f"{self.prefix}/bridge/{self.cfg.name}/alarm", self._json({
            "kind": "buffer_overflow", "dropped": total - self._alarmed, "dropped_total": total,
            "capacity": self.buffer.capacity, "waiting": len(self.buffer), "ts": self.wall(), "bridge": self.cfg.name}),
            retain=True)
        self._alarmed, self._last_alarm, self._flush_alarm = total, now, False

    def _direct(self, topic: str, payload: bytes, retain: bool = False) -> Any:
        return self.client.publish(topic, payload, qos=QOS, retain=retain)

    def _status(self, online: bool) -> bytes:
        with self._lock:
            waiting, dropped, delivered = len(self.buffer), self.buffer.dropped, self.buffer.delivered
        return self._json({"online": online, "bridge_run": self.run_id, "waiting": waiting, "dropped_total": dropped,
                           "delivered": delivered, "store_errors": self.store_errors, "ts": self.wall(),
                           "lines": [x.line for x in self.cfg.lines]})

    @staticmethod
    def _json(obj: dict[str, Any]) -> bytes:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str).encode()
