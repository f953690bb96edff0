"""Store-and-forward: the pure buffer (order, bound, barrier, alarms) and its SQLite mirror."""

from __future__ import annotations

import pytest

from inspector.bridge.buffer import ForwardBuffer, Item, SqliteStore


def _push(b: ForwardBuffer, n: int, now: float = 0.0) -> list[Item]:
    dropped = []
    for i in range(n):
        dropped += b.push("t", f"m{b.next_seq}".encode(), now + i * 0.01)[1]
    return dropped


def test_order_window_and_acks():
    b = ForwardBuffer(capacity=10, max_inflight=3, alarm_interval_s=5)
    _push(b, 5)
    assert b.take() == []  # not connected
    b.on_connect()
    assert [i.seq for i in b.take()] == [0, 1, 2]
    assert b.take() == []  # window full
    assert b.acked(1).seq == 1 and b.acked(1) is None  # a repeated PUBACK
    assert [i.seq for i in b.take()] == [3]
    for s in (0, 2, 3):
        b.acked(s)
    assert [i.seq for i in b.take()] == [4]
    assert b.acked(4) and len(b) == 0 and b.delivered == 5


def test_after_a_reconnect_nothing_new_goes_before_the_resent_ones():
    b = ForwardBuffer(capacity=10, max_inflight=3, alarm_interval_s=5)
    b.on_connect()
    _push(b, 3)
    assert len(b.take()) == 3
    b.on_disconnect()
    _push(b, 2)
    assert b.take() == []
    b.on_connect()  # the MQTT client re-sends 0, 1, 2 itself
    assert b.take() == []
    b.acked(0)
    b.acked(1)
    assert b.take() == []
    b.acked(2)
    assert [i.seq for i in b.take()] == [3, 4]


def test_overflow_drops_the_oldest_pending_counts_and_alarms_at_most_every_interval():
    b = ForwardBuffer(capacity=4, max_inflight=2, alarm_interval_s=10)
    b.on_connect()
    _push(b, 2)
    assert len(b.take()) == 2  # 0 and 1 in flight: never dropped
    b.on_disconnect()
    assert b.alarm(0.0) is None
    dropped = _push(b, 5, now=1.0)  # 2..6 into 2 free places
    assert [d.seq for d in dropped] == [2, 3, 4]
    assert [i.seq for i in b.pending] == [5, 6] and list(b.inflight) == [0, 1]
    a = b.alarm(2.0)
    assert (a.dropped, a.dropped_total, a.capacity, a.waiting, a.since) == (3, 3, 4, 4, 1.02)
    _push(b, 1, now=3.0)
    assert b.alarm(5.0) is None  # within the interval: held
    a = b.alarm(12.0)
    assert (a.dropped, a.dropped_total) == (1, 4)
    assert b.alarm(30.0) is None  # nothing new


def test_restore_keeps_order_and_sequence():
    b = ForwardBuffer(capacity=10, max_inflight=2, alarm_interval_s=5)
    b.restore([Item(7, "t", b"a"), Item(9, "t", b"b")])
    item, _ = b.push("t", b"c", 0.0)
    assert item.seq == 10
    b.on_connect()
    assert [i.payload for i in b.take()] == [b"a", b"b"]


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError):
        ForwardBuffer(capacity=2, max_inflight=2, alarm_interval_s=1)


def test_sqlite_store_round_trip(tmp_path):
    path = tmp_path / "sub" / "buf.sqlite"
    s = SqliteStore(path)
    assert path.stat().st_mode & 0o777 == 0o600
    for i in range(5):
        s.add(Item(i, f"t/{i}", bytes([i]) * 3, retain=i == 2))
    s.remove([1, 3])
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["buf.sqlite", "buf.sqlite-shm", "buf.sqlite-wal"], files
    assert all(p.stat().st_mode & 0o077 == 0 for p in path.parent.iterdir())  # the -wal and -shm too
    s.close()
    s = SqliteStore(path)
    items = s.load(now=4.0)
    assert [(i.seq, i.topic, i.payload, i.retain, i.queued_at) for i in items] == [
        (0, "t/0", b"\0\0\0", False, 4.0), (2, "t/2", b"\2\2\2", True, 4.0), (4, "t/4", b"\4\4\4", False, 4.0)]
    s.close()
