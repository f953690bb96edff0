"""The PUB side (stream/publisher.py): a subscriber that never reads blocks nothing.

Behaviour, by counts: with one subscriber stuck (never reading, tiny high-water marks), the daemon still
publishes every result and a second, reading subscriber receives every one of them. How fast is a
benchmark's question (tests/stream/overhead.py --stuck-subscriber; docs/benchmarks.md).
"""

from __future__ import annotations

from inspector.client.subscriber import Subscriber

from .harness import Line, config


def test_a_subscriber_that_never_reads_does_not_block_publishing(tmp_path):
    n = 120
    cfg = config(tmp_path, {"kind": "memory", "width": 640, "height": 480, "frames": n}, product="big",
                 masks={"publish": "always", "resolution": "frame"}, audit={"enabled": False},
                 zmq={"sndhwm": 10, "heartbeat_ms": 50})
    with Line(cfg) as line:
        stuck = Subscriber(line.pub, line="t1", rcvhwm=1)  # connected, never reads
        got = line.go()
        got = line.collect(got, 60)
        line.thread.join(30)
        assert not line.thread.is_alive() and line.rc == 0
        stuck.close()
        published = line.daemon.pipeline.output.results
        sent = line.daemon.publisher.sent
    assert published == n and got.eos is not None and got.eos.results == n
    assert [r.frame_id for r in got.results] == list(range(n))  # the reading subscriber missed nothing
    assert len(got.masks) == n
    assert sent >= n  # every message was handed to ZeroMQ; the stuck one's copies were dropped, not waited for
