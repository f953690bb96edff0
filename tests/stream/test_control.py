"""The control socket (stream/control.py): every command, garbage of every shape, the size limit, the
Lazy Pirate reply window, failing handlers, and the control thread in the watchdog's view."""

from __future__ import annotations

import json

import pytest
import zmq

from inspector.errors import InspectorError
from inspector.protocol.commands import COMMANDS, MAX_JSON_DEPTH
from inspector.stream import control

from .fakes import FakeLoader
from .harness import Line, config, wait_for


def _memory(rate: float = 0.0, frames: int = 0) -> dict:
    return {"kind": "memory", "width": 64, "height": 48, "frames": frames, "rate_fps": rate}


def _dealer(endpoint: str) -> zmq.Socket:
    d = zmq.Context.instance().socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    d.connect(endpoint)
    return d


def _ask(sock: zmq.Socket, payload: bytes, timeout_ms: int = 3000) -> dict | None:
    sock.send(payload)
    return json.loads(sock.recv()) if sock.poll(timeout_ms) else None


def test_control_parse_and_handle():
    calls = []
    handlers = {
        "status": lambda: {"ok": 1},
        "trigger": lambda part_id: calls.append(part_id) or {"part_id": part_id},
        "switch_product": lambda product: (_ for _ in ()).throw(InspectorError(f"no bundle for {product}")),
        "pause": lambda: {}, "resume": lambda: {}, "reload_calibration": lambda: {},
    }
    r = json.loads(control.handle(b'{"id": 5, "cmd": "trigger", "part_id": "P9"}', handlers))
    assert r == {"id": 5, "ok": True, "result": {"part_id": "P9"}} and calls == ["P9"]
    r = json.loads(control.handle(b'{"id": 6, "cmd": "switch_product", "product": "x"}', handlers))
    assert r["ok"] is False and "no bundle for x" in r["error"] and r["id"] == 6
    for bad, word in ((b"\xff\xfe", "JSON"), (b"[]", "object"), (b'{"id": 1}', "cmd"),
                      (b'{"id": 2, "cmd": "explode"}', "unknown"), (b'{"id": 3, "cmd": "trigger"}', "part_id"),
                      (b'{"id": 4, "cmd": "trigger", "part_id": 7}', "part_id")):
        r = json.loads(control.handle(bad, handlers))
        assert r["ok"] is False and word in r["error"], (bad, r)


# issue 13, 1: each of these raised out of the handler and killed the control thread.
GARBAGE = [
    b'{"id":1,"cmd":["status"]}',  # unhashable cmd
    b'{"cmd":{}}',
    b'{"id":{"a":[1,2]},"cmd":7}',
    b"[" * 60000,  # RecursionError in json.loads
    b'{"id":' + b"[" * 5000 + b"]" * 5000 + b',"cmd":"status"}',  # RecursionError in reading the id
    b'{"id":1,"cmd":"trigger","part_id":' + b"{" * 3000 + b"}" * 3000 + b"}",
    b'{"id":1,"cmd":"status","x":"' + b"\xff" * 100 + b'"}',
    b'"just a string"', b"null", b"1e999999", b"9" * 5000, b"",
]


def test_no_input_of_any_type_size_or_nesting_raises_out_of_the_handler():
    handlers = {name: (lambda **_: {"ok": True}) for name in COMMANDS}
    for bad in GARBAGE:
        r = json.loads(control.handle(bad, handlers))
        assert set(r) == {"id", "ok", "error"} and r["ok"] is False, (bad[:40], r)
    assert control.json_depth_ok(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    assert not control.json_depth_ok(b"[" * (MAX_JSON_DEPTH + 1))
    assert not control.json_depth_ok(b'{"s": "' + b"[" * 100 + b'"}')  # brackets in strings count (documented)
    assert control.json_depth_ok(b'{"s": "' + b"[]" * 100 + b'"}')


def test_a_failing_handler_is_an_error_reply_and_an_event():
    events = []
    r = json.loads(control.handle(b'{"id": 1, "cmd": "status"}', {"status": lambda: 1 / 0},
                                  lambda *a: events.append(a)))
    assert r["ok"] is False and "internal error" in r["error"] and "ZeroDivisionError" in r["error"]
    assert [e[0] for e in events] == ["control_error"] and events[0][2]["cmd"] == "status"


def test_the_reply_cache_replays_only_within_its_window():
    cache = control.ReplyCache(window_s=2.0, size=3)
    key = b'{"id": 1, "cmd": "pause"}'
    cache.put(key, control.reply(1, True, {"paused": True}), now=100.0)
    assert json.loads(cache.get(key, 101.9)) == {"id": 1, "ok": True, "result": {"paused": True}, "replayed": True}
    assert cache.get(key, 102.1) is None and len(cache) == 0  # later: executed again
    for i in range(5):
        cache.put(b"k%d" % i, control.reply(i, True, {}), now=200.0)
    assert len(cache) == 3 and cache.get(b"k0", 200.0) is None and cache.get(b"k4", 200.0) is not None


def test_every_command_and_garbage(tmp_path):
    cfg = config(tmp_path, _memory(rate=200))
    loader = FakeLoader()
    with Line(cfg, loader=loader) as line:
        got = line.go()
        ctl = line.ctl
        line.collect(got, 5, until=lambda g: len(g.results) >= 5)

        st = ctl.request("status")
        assert st["ok"] and st["result"]["product"] == "cable" and st["result"]["camera"] == "up"
        assert st["result"]["frames"] >= 5 and st["result"]["calibration_id"] == "fake-cal-1"

        assert ctl.request("pause")["result"] == {"paused": True}
        # Paused: once what was captured is published, no result comes while heartbeats go on.
        n = line.settled(got)["results"]
        line.heartbeats(got, 3)
        assert len(got.results) == n and line.status()["results"] == n, "results kept coming while paused"
        assert any(s.state == "paused" for s in got.statuses) and got.heartbeats[-1].paused
        assert ctl.request("resume")["result"] == {"paused": False}
        line.collect(got, 5, until=lambda g: len(g.results) >= n + 5)
        assert len(got.results) >= n + 5

        r = ctl.request("trigger", part_id="PART-42")
        assert r["ok"] and r["result"]["part_id"] == "PART-42"
        line.collect(got, 5, until=lambda g: any(x.part_id == "PART-42" for x in g.results))
        assert sum(x.part_id == "PART-42" for x in got.results) == 1

        r = ctl.request("reload_calibration")
        assert r["ok"] and r["result"]["calibration_id"] == "fake-cal-1-r1" and r["result"]["previous"] == "fake-cal-1"
        line.collect(got, 5, until=lambda g: g.results[-1].calibration_id == "fake-cal-1-r1")
        assert got.results[-1].calibration_id == "fake-cal-1-r1"

        loader.cal_broken = True
        r = ctl.request("reload_calibration")
        assert not r["ok"] and "inspector calibrate --product cable" in r["error"] and "still using" in r["error"]
        loader.cal_broken = False

        r = ctl.request("switch_product", product="nope")
        assert not r["ok"] and "no bundle for product 'nope'" in r["error"] and "still inspecting cable" in r["error"]
        r = ctl.request("switch_product", product="wide")
        assert not r["ok"] and "48x96" in r["error"] and "48x64" in r["error"]
        assert loader.loaded[-1].backend.closed  # the refused product's backend is released
        assert ctl.request("status")["result"]["product"] == "cable"

        for raw, word in ((b"garbage \xff", "JSON"), (b'{"cmd": "launch"}', "unknown"), (b"[1, 2]", "object"),
                          (b'{"id": 9, "cmd": "switch_product"}', "product"), (b"", "JSON")):
            r = ctl.send_raw(raw)
            assert r["ok"] is False and word in r["error"], (raw, r)

        # A DEALER without the REQ delimiter frame is answered too.
        dealer = _dealer(line.ctl_endpoint)
        dealer.send(b'{"id": "d1", "cmd": "status"}')
        assert dealer.poll(3000)
        assert b'"ok":true' in dealer.recv()
        dealer.close()

        # The same request re-sent (a Lazy Pirate retry) runs once and gets the first answer, marked replayed.
        payload = b'{"id": "retry-1", "cmd": "trigger", "part_id": "P-R"}'
        first, again = ctl.send_raw(payload), ctl.send_raw(payload)
        assert "replayed" not in first and again == {**first, "replayed": True}
        line.collect(got, 5, until=lambda g: any(x.part_id == "P-R" for x in g.results))
        wait_for(lambda: line.status()["pending_triggers"] == 0)
        line.heartbeats(got, 2)
        assert sum(x.part_id == "P-R" for x in got.results) == 1
        kinds = [e.kind for e in got.events]
        assert "calibration_reloaded" in kinds and "calibration_reload_failed" in kinds
        assert kinds.count("product_switch_failed") == 2


def test_garbage_never_kills_the_control_thread_and_the_watchdog_sees_it(tmp_path):
    with Line(config(tmp_path, _memory(rate=100))) as line:
        got = line.go()
        dealer = _dealer(line.ctl_endpoint)
        for bad in GARBAGE:
            r = _ask(dealer, bad)
            assert r is not None and r["ok"] is False, f"no reply to {bad[:40]!r}: the control thread died"
            assert line.ctl.request("status")["ok"]
        dealer.close()
        p = line.daemon.pipeline
        assert p.problems(max_silence_s=5.0) == [] and p.healthy(5.0)
        # A handler that fails inside the daemon: an error reply and an event, and the thread lives on.
        real = line.daemon.control.handlers["pause"]
        line.daemon.control.handlers["pause"] = lambda: 1 / 0
        r = line.ctl.request("pause")
        assert r["ok"] is False and "ZeroDivisionError" in r["error"]
        line.collect(got, 5, until=lambda g: any(e.kind == "control_error" for e in g.events))
        assert any(e.kind == "control_error" and e.detail["cmd"] == "pause" for e in got.events)
        line.daemon.control.handlers["pause"] = real
        assert line.ctl.request("pause")["ok"] and line.status()["paused"]
        # The control thread is one of the daemon's threads: when it is gone, the watchdog is no longer fed.
        line.daemon.control.stop()
        wait_for(lambda: "control thread is dead" in p.problems(max_silence_s=5.0), 5)
        assert not p.healthy(5.0) and "control-worker thread is dead" in p.problems(5.0)


def test_an_oversized_request_is_dropped_by_the_socket_unread(tmp_path):
    cfg = config(tmp_path, _memory(rate=100), zmq={"max_request_bytes": 4096})
    with Line(cfg) as line:
        line.go()
        server = line.daemon.control
        before = server.requests
        big = _dealer(line.ctl_endpoint)
        for _ in range(10):
            big.send(b'{"id": 1, "cmd": "trigger", "part_id": "' + b"x" * 5_000_000 + b'"}')
        assert not big.poll(1000), "an oversized request was answered"
        big.close()
        ok = _dealer(line.ctl_endpoint)
        r = _ask(ok, b'{"id": 2, "cmd": "trigger", "part_id": "' + b"y" * 3000 + b'"}')
        assert r is not None and r["ok"] and r["result"]["part_id"] == "y" * 3000
        ok.close()
        assert server.requests == before + 1  # the big ones never reached the daemon
        assert line.status()["pending_triggers"] <= 1


def test_an_identical_request_after_the_window_is_executed(tmp_path):
    """A restarted PLC that re-uses request ids: outside the retry window its commands run again."""
    cfg = config(tmp_path, _memory(rate=100), zmq={"replay_window_s": 0.3})
    with Line(cfg) as line:
        line.go()
        pause = b'{"id": 1, "cmd": "pause"}'
        dealer = _dealer(line.ctl_endpoint)
        assert _ask(dealer, pause)["result"] == {"paused": True}
        assert line.ctl.request("resume")["ok"] and not line.status()["paused"]
        server = line.daemon.control
        wait_for(lambda: server.cache.get(pause, server.clock()) is None, 5, what="the first reply leaving the window")
        r = _ask(dealer, pause)
        assert r == {"id": 1, "ok": True, "result": {"paused": True}}  # not "replayed": it ran
        assert line.status()["paused"] is True
        r = _ask(dealer, pause)  # a retry within the window: from memory
        assert r["replayed"] is True and line.daemon.control.replayed == 1
        dealer.close()


def test_a_retry_of_a_slow_command_still_running_is_answered_with_it(tmp_path):
    loader = FakeLoader(load_s=1.0)
    with Line(config(tmp_path, _memory(rate=50)), loader=loader) as line:
        line.go()
        payload = b'{"id": "sw-1", "cmd": "switch_product", "product": "cable2"}'
        a, b = _dealer(line.ctl_endpoint), _dealer(line.ctl_endpoint)
        a.send(payload)
        wait_for(lambda: line.daemon.control._inflight, 5, what="the switch running")
        b.send(payload)  # the Lazy Pirate retry, on a new socket, while the engine loads
        assert a.poll(10000) and b.poll(10000)
        ra, rb = json.loads(a.recv()), json.loads(b.recv())
        assert ra["ok"] and ra["result"]["product"] == "cable2" and rb == {**ra, "replayed": True}
        assert [p.name for p in loader.loaded] == ["cable", "cable2"]  # loaded once
        a.close()
        b.close()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_ctl_verb_and_the_docs_list_every_command(name):
    from pathlib import Path

    from inspector.cli import build_parser

    doc = (Path(__file__).resolve().parents[2] / "docs" / "zeromq.md").read_text()
    assert f"| `{name}` |" in doc
    ctl = build_parser()._subparsers._group_actions[0].choices["ctl"]
    assert name in next(a for a in ctl._actions if a.dest == "cmd").choices


def test_the_daemon_serves_exactly_the_commands_defined_once():
    from inspector.config import load_dataclass
    from inspector.stream.config import ZmqConfig

    cfg = load_dataclass(ZmqConfig, {"control": "tcp://127.0.0.1:0"}, "test")
    with pytest.raises(InspectorError, match="do not match the commands"):
        control.ControlServer(zmq.Context.instance(), cfg, {"status": lambda: {}})
