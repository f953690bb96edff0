"""The control socket: every command, garbage input, trigger mode, and switch_product under load."""

from __future__ import annotations

import time

import zmq

from .fakes import FakeLoader
from .harness import Line, config


def _memory(rate: float = 0.0, frames: int = 0) -> dict:
    return {"kind": "memory", "width": 64, "height": 48, "frames": frames, "rate_fps": rate}


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
        time.sleep(0.2)
        line.collect(got, 0.5)
        n = len(got.results)
        line.collect(got, 0.5)
        assert len(got.results) == n, "results kept coming while paused"
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
        dealer = zmq.Context.instance().socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(line.ctl_endpoint)
        dealer.send(b'{"id": "d1", "cmd": "status"}')
        assert dealer.poll(3000)
        assert b'"ok":true' in dealer.recv()
        dealer.close()

        # The same request re-sent (a Lazy Pirate retry) runs once and gets the first answer.
        payload = b'{"id": "retry-1", "cmd": "trigger", "part_id": "P-R"}'
        assert ctl.send_raw(payload) == ctl.send_raw(payload)
        line.collect(got, 5, until=lambda g: any(x.part_id == "P-R" for x in g.results))
        time.sleep(0.2)
        line.collect(got, 0.3)
        assert sum(x.part_id == "P-R" for x in got.results) == 1
        kinds = [e.kind for e in got.events]
        assert "calibration_reloaded" in kinds and "calibration_reload_failed" in kinds
        assert kinds.count("product_switch_failed") == 2


def test_trigger_mode_inspects_only_triggered_frames(tmp_path):
    cfg = config(tmp_path, _memory(rate=100), pipeline={"mode": "trigger", "trigger_timeout_s": 0.3})
    with Line(cfg) as line:
        got = line.go()
        line.collect(got, 0.5)
        assert got.results == []  # frames flow, but nobody asked
        for part in ("A1", "A2", "A3"):
            assert line.ctl.request("trigger", part_id=part)["ok"]
            time.sleep(0.05)
        line.collect(got, 5, until=lambda g: len(g.results) >= 3)
        assert [r.part_id for r in got.results] == ["A1", "A2", "A3"]
        assert all(r.decision in ("PASS", "FAIL") and r.frame_id is not None for r in got.results)
        ids = [r.frame_id for r in got.results]
        assert ids == sorted(ids)
        # No frame for a trigger (paused camera): the PLC still gets an answer, ERROR, in time.
        line.ctl.request("pause")
        line.ctl.request("trigger", part_id="LATE")
        line.collect(got, 5, until=lambda g: any(r.part_id == "LATE" for r in g.results))
        late = next(r for r in got.results if r.part_id == "LATE")
        assert late.decision == "ERROR" and "no frame within 0.3 s" in late.error and late.frame_id is None
        # A trigger still pending when the daemon stops is answered too.
        line.ctl.request("trigger", part_id="AT-STOP")
        assert line.stop() == 0
        line.collect(got, 5)
        at_stop = [r for r in got.results if r.part_id == "AT-STOP"]
        assert len(at_stop) == 1 and at_stop[0].decision == "ERROR"
        assert got.eos is not None


def test_switch_product_under_load(tmp_path):
    n = 400
    cfg = config(tmp_path, _memory(frames=n), pipeline={"queue_size": 8, "drop_policy": "block"})
    loader = FakeLoader(delay_s=0.002, load_s=0.2)  # loading takes a while, as an engine does
    with Line(cfg, loader=loader) as line:
        got = line.go()
        line.collect(got, 10, until=lambda g: len(g.results) >= 50)
        r = line.ctl.request("switch_product", product="cable2")
        assert r["ok"] and r["result"]["previous"] == "cable", r
        line.collect(got, 10, until=lambda g: g.results[-1].product == "cable2")
        old, new = loader.loaded[0].backend, loader.loaded[1].backend
        assert old.closed and not new.closed  # the old engine is released once the new one took over
        got = line.collect(got, 30)
        assert got.eos is not None
    products = [x.product for x in got.results]
    assert [x.frame_id for x in got.results] == list(range(n))  # nothing lost or reordered across the swap
    assert all(x.decision != "ERROR" for x in got.results)
    first = products.index("cable2")
    assert 50 <= first < n and set(products[:first]) == {"cable"} and set(products[first:]) == {"cable2"}
    assert all(x.calibration_id == "fake-cal-2" and x.threshold == 0.3 for x in got.results[first:])
    assert any(e.kind == "product_switched" for e in got.events)
