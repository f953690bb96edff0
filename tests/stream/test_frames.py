"""The bounded frame queue and its drop policies, and the PLC trigger book (stream/frames.py)."""

from __future__ import annotations

import threading
import time

from inspector.stream.frames import Frame, FrameQueue, TriggerBook


def _f(i: int) -> Frame:
    return Frame(i, 0.0, 0.0, None)


def test_queue_drop_oldest_keeps_the_latest():
    q = FrameQueue(3, "drop_oldest")
    for i in range(5):
        assert q.put(_f(i))
    assert q.dropped == 2
    assert [f.frame_id for f in q.get_batch(10, 0, 0)] == [2, 3, 4]


def test_queue_drop_newest_refuses_new():
    q = FrameQueue(2, "drop_newest")
    assert [q.put(_f(i)) for i in range(4)] == [True, True, False, False]
    assert q.dropped == 2 and [f.frame_id for f in q.get_batch(10, 0, 0)] == [0, 1]


def test_queue_block_waits_and_close_drains():
    q = FrameQueue(1, "block")
    assert q.put(_f(0))
    assert not q.put(_f(1), timeout=0.05) and q.dropped == 0  # timed out, not dropped
    t = threading.Thread(target=lambda: q.put(_f(1)))
    t.start()
    assert [f.frame_id for f in q.get_batch(1, 1.0, 0)] == [0]
    t.join(2)
    q.close()
    assert [f.frame_id for f in q.get_batch(4, 1.0, 1.0)] == [1]
    assert q.get_batch(4, 0.01, 0.01) == [] and not q.put(_f(2)) and q.dropped == 1


def test_queue_batches_within_the_fill_budget():
    q = FrameQueue(10, "block")
    q.put(_f(0))
    t0 = time.monotonic()
    assert len(q.get_batch(4, 1.0, 0.05)) == 1  # waited at most the fill budget for more
    assert time.monotonic() - t0 < 0.5
    for i in range(6):
        q.put(_f(i))
    assert len(q.get_batch(4, 1.0, 0.05)) == 4


def test_trigger_book():
    b = TriggerBook()
    b.add("A", 10.0)
    b.add("B", 11.0)
    assert b.take(9.0) is None  # a frame captured before the trigger does not serve it
    assert b.take(10.5) == "A"
    assert b.expire(12.0, 2.0) == [] and b.expire(13.5, 2.0) == [("B", 11.0)] and len(b) == 0
