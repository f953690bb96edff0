"""Store-and-forward for the MQTT bridge: a bounded, ordered buffer (pure: times passed in) and its SQLite mirror.

Every message to deliver gets a sequence number and waits in ``pending`` until it may be handed to the MQTT
client, then in ``inflight`` until the broker acknowledges it (QoS 1 PUBACK). Rules:

- order: messages are handed over in sequence order; after a reconnect nothing new is handed over until
  every message handed over before it is acknowledged (the MQTT client re-sends those first), so the broker
  receives them in order, possibly twice (QoS 1 is at-least-once: consumers drop a repeated ``bridge_seq``);
- bounded: at most ``capacity`` messages (pending + inflight); a new one beyond that drops the oldest pending
  one. Nothing is dropped silently: ``dropped`` counts every one, and :meth:`alarm` reports the drops since the
  last alarm at most every ``alarm_interval_s`` (the shell logs it and publishes it ahead of the backlog);
- at most ``max_inflight`` handed over and unacknowledged at once.

:class:`SqliteStore` keeps pending and inflight messages on disk, so a bridge restarted after a crash or a
power cut delivers what it had not delivered yet (all of it as pending, in order).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

from inspector.errors import ConfigError


@dataclass(frozen=True)
class Item:
    """One message: ``seq`` orders them; ``queued_at`` monotonic seconds when it entered the buffer."""

    seq: int
    topic: str
    payload: bytes
    retain: bool = False
    queued_at: float = 0.0


@dataclass(frozen=True)
class Alarm:
    dropped: int  # since the last alarm
    dropped_total: int
    capacity: int
    waiting: int
    since: float  # monotonic time of the first drop counted here


class ForwardBuffer:
    """The pure core. ``push`` -> dropped items; ``take`` -> items to hand to the client; ``acked`` on PUBACK."""

    def __init__(self, capacity: int, max_inflight: int, alarm_interval_s: float, next_seq: int = 0) -> None:
        if not 0 < max_inflight < capacity:
            raise ValueError(f"need 0 < max_inflight ({max_inflight}) < capacity ({capacity})")
        self.capacity, self.max_inflight, self.alarm_interval_s = capacity, max_inflight, alarm_interval_s
        self.pending: deque[Item] = deque()
        self.inflight: OrderedDict[int, Item] = OrderedDict()
        self.connected = False
        self._barrier = False  # after a reconnect: wait for the re-sent ones
        self.next_seq = next_seq
        self.dropped = 0
        self.delivered = 0
        self._unalarmed = 0
        self._first_drop: float | None = None
        self._last_alarm: float | None = None

    def __len__(self) -> int:
        return len(self.pending) + len(self.inflight)

    def push(self, topic: str, payload: bytes, now: float, retain: bool = False) -> tuple[Item, list[Item]]:
        """Queue a message; (its item, the items dropped to make room)."""
        item = Item(self.next_seq, topic, payload, retain, now)
        self.next_seq += 1
        self.pending.append(item)
        return item, self._trim(now)

    def restore(self, items: list[Item]) -> None:
        """Items kept from an earlier run (in seq order), before any push."""
        for it in items:
            self.pending.append(it)
            self.next_seq = max(self.next_seq, it.seq + 1)

    def _trim(self, now: float) -> list[Item]:
        out = []
        while len(self) > self.capacity and self.pending:
            out.append(self.pending.popleft())
        if out:
            self.dropped += len(out)
            self._unalarmed += len(out)
            if self._first_drop is None:
                self._first_drop = now
        return out

    def on_connect(self) -> None:
        self.connected = True
        self._barrier = bool(self.inflight)

    def on_disconnect(self) -> None:
        self.connected = False

    def take(self) -> list[Item]:
        """Items to hand to the client now, in order (none while disconnected or behind the barrier)."""
        if self._barrier and not self.inflight:
            self._barrier = False
        if not self.connected or self._barrier:
            return []
        out = []
        while self.pending and len(self.inflight) < self.max_inflight:
            it = self.pending.popleft()
            self.inflight[it.seq] = it
            out.append(it)
        return out

    def acked(self, seq: int) -> Item | None:
        """The broker has ``seq``; the item, or None when it was not in flight (a repeat)."""
        it = self.inflight.pop(seq, None)
        if it is not None:
            self.delivered += 1
        return it

    def alarm(self, now: float) -> Alarm | None:
        """An alarm when messages were dropped since the last one and ``alarm_interval_s`` has passed."""
        if not self._unalarmed:
            return None
        if self._last_alarm is not None and now - self._last_alarm < self.alarm_interval_s:
            return None
        a = Alarm(self._unalarmed, self.dropped, self.capacity, len(self), self._first_drop or now)
        self._unalarmed, self._first_drop, self._last_alarm = 0, None, now
        return a


class SqliteStore:
    """The buffer's items on disk (WAL journal). Every call is one short transaction; thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # 0600 before SQLite opens it: its -wal and -shm files take the database file's permissions.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS items (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, "
                            "payload BLOB NOT NULL, retain INTEGER NOT NULL)")
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"mqtt.buffer.path {self.path}: cannot open the buffer database: {e}") from e
        self.lock = threading.Lock()

    def load(self, now: float) -> list[Item]:
        with self.lock:
            rows = self.db.execute("SELECT seq, topic, payload, retain FROM items ORDER BY seq").fetchall()
        return [Item(seq, topic, bytes(payload), bool(retain), now) for seq, topic, payload, retain in rows]

    def add(self, item: Item) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?)",
                            (item.seq, item.topic, item.payload, int(item.retain)))

    def remove(self, seqs: list[int]) -> None:
        if seqs:
            with self.lock:
                self.db.executemany("DELETE FROM items WHERE seq = ?", [(s,) for s in seqs])

    def close(self) -> None:
        with self.lock:
            self.db.close()
