"""Liveness of the daemon from message times alone, and a link attached to an asyncio loop."""

from __future__ import annotations

import asyncio
import threading
import time

import zmq

from inspector.bridge.config import LineConfig
from inspector.bridge.link import DaemonLink, Liveness
from inspector.protocol import messages, sockets
from inspector.protocol.messages import Heartbeat


def test_down_within_two_heartbeat_intervals_and_up_again():
    lv = Liveness(interval_s=1.0)
    assert not lv.up and lv.check(100.0) is None  # never seen: not a transition
    assert lv.message(0.0) == (True, "messages from the daemon")
    assert lv.message(1.0) is None
    assert lv.check(2.5) is None  # 1.5 intervals: still up (a late heartbeat is fine)
    t = lv.check(2.51)
    assert t is not None and t[0] is False and "no message from the daemon for 1.5 s" in t[1]
    assert not lv.up and lv.check(3.0) is None  # reported once
    assert lv.message(9.0) == (True, "messages from the daemon")


def test_end_of_stream_is_down_at_once():
    lv = Liveness(interval_s=1.0)
    lv.message(0.0)
    up, why = lv.end(0.1, "signal")
    assert not up and "ended its stream (signal)" in why
    assert lv.end(0.2, "signal") is None


def _heartbeat(seq: int) -> Heartbeat:
    return Heartbeat(line="t1", ts=time.time(), seq=seq, uptime_s=1.0, fps=0.0, frames=0, results=0, dropped=0,
                     errors=0, queue_depth=0, queue_size=4, backend="fake", product="p", calibration_id=None,
                     camera="up", paused=False, mode="trigger")


def test_an_attached_link_reads_on_the_loop_in_order_skips_bad_messages_and_sees_silence():
    """The OPC UA bridge's way: the loop reads the subscriber itself (an edge-triggered FD: everything queued
    is read, also what came before the reader was added); a malformed message is counted, not fatal; silence
    turns the link down from the loop's own timer."""
    ctx = zmq.Context.instance()
    pub = sockets.pub_socket(ctx)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    cfg = LineConfig(line="t1", publish=f"tcp://127.0.0.1:{port}", control="tcp://127.0.0.1:1", heartbeat_ms=200)

    async def run() -> tuple[list, list, set]:
        got, states, threads = [], [], set()
        link = DaemonLink(cfg, lambda m, _mask, _t: (got.append(m.seq), threads.add(threading.get_ident())),
                          lambda up, why: states.append((up, why)))
        link.attach(asyncio.get_running_loop())
        try:
            for _ in range(100):  # the slow joiner: send until the subscription has arrived
                pub.send_multipart(messages.encode(_heartbeat(-1)))
                await asyncio.sleep(0.02)
                if got:
                    break
            await asyncio.sleep(0.05)
            got.clear()
            pub.send_multipart([messages.topic("t1", "heartbeat"), b"{not json"])
            for seq in range(50):  # a burst: one wake-up of the reader must read all of it
                pub.send_multipart(messages.encode(_heartbeat(seq)))
            deadline = time.monotonic() + 5
            while len(got) < 50 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.6)  # 3 intervals of silence
            return got, states, threads
        finally:
            link.detach()
            link.stop()
            assert link.bad_messages == 1

    try:
        got, states, threads = asyncio.run(run())
    finally:
        pub.close(0)
    assert got == list(range(50))
    assert threads == {threading.get_ident()}  # on the loop's thread: no hand-off
    assert states[0] == (True, "messages from the daemon")
    assert states[-1][0] is False and "no message from the daemon" in states[-1][1]
