"""The OPC UA bridge against a real daemon: a real asyncua client plays the PLC over SignAndEncrypt."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inspector.bridge.run import BridgeThread
from tests.stream.fakes import FakeLoader, daemon_yaml
from tests.stream.harness import Line, config

from .support import Plc, frame_folder, free_port, make_certs, memory_source, opcua_file

pytest.importorskip("asyncua")


def _line_entry(line: Line, heartbeat_ms: int = 100) -> dict:
    return {"line": line.cfg.line, "publish": line.pub, "control": line.ctl_endpoint, "heartbeat_ms": heartbeat_ms}


def _trigger_line(tmp_path: Path, loader: FakeLoader | None = None) -> Line:
    # No batch filling wait: a trigger's frame is inspected as soon as it is captured.
    cfg = config(tmp_path, memory_source(frame_folder(tmp_path / "frames"), rate=500),
                 pipeline={"mode": "trigger", "trigger_timeout_s": 2.0, "batch_timeout_ms": 0})
    return Line(cfg, loader=loader)


def _same(opc: dict, zmq_result) -> None:
    """An OPC UA result equals the daemon's ZeroMQ result for that part."""
    r = zmq_result
    assert opc["PartId"] == r.part_id and opc["FrameId"] == r.frame_id and opc["Decision"] == r.decision
    assert opc["ResultCode"] == "OK" and opc["Pass"] == (r.decision == "PASS")
    assert opc["Score"] == pytest.approx(r.score, rel=1e-12) and opc["Regions"] == len(r.regions)
    assert opc["NormalizedScore"] == pytest.approx(r.normalized_score, rel=1e-12)
    assert opc["LatencyMs"] == pytest.approx(r.latency_ms, rel=1e-12)
    assert opc["Timestamp"].timestamp() == pytest.approx(r.capture_ts, abs=1e-3)


def test_300_parts_through_the_handshake(tmp_path):
    certs = make_certs(tmp_path)
    with _trigger_line(tmp_path) as line:
        got = line.go()
        port = free_port()
        with BridgeThread(opcua_file(certs, [_line_entry(line)], port, deadline_ms=2000)):
            async def plc_side() -> list[dict]:
                plc = await Plc(port, "t1", certs).connect()
                try:
                    await plc.wait("State", "Ready")
                    assert await plc.read("ModelHash") == "sha-cable" and await plc.read("Product") == "cable"
                    return [await plc.part(f"P{i:04d}") for i in range(300)]
                finally:
                    await plc.close()

            parts = asyncio.run(plc_side())
        line.collect(got, 10, until=lambda g: sum(r.part_id is not None for r in g.results) >= 300)
    by_part = {}
    for r in got.results:
        assert r.part_id not in by_part, f"two ZeroMQ results for {r.part_id}"
        by_part[r.part_id] = r
    assert len(by_part) == 300
    for i, opc in enumerate(parts):
        assert opc["PartId"] == f"P{i:04d}"
        _same(opc, by_part[opc["PartId"]])
    decisions = {p["Decision"] for p in parts}
    assert decisions == {"PASS", "FAIL"}, decisions  # both kinds of frames went through


def test_a_slow_inference_times_out_exactly_those_parts(tmp_path):
    certs = make_certs(tmp_path)
    loader = FakeLoader()
    # Not two in a row: the part after a slow one waits for the inference thread (slow_s - deadline_s), and its
    # own deadline keeps deadline_s - (slow_s - deadline_s) = 0.3 s of margin. Its frame is captured while the
    # slow part's late result is still to come: that result must not become this part's.
    slow = {4, 9, 13}
    deadline_s, slow_s = 0.5, 0.7
    with _trigger_line(tmp_path, loader) as line:
        got = line.go()
        port = free_port()
        with BridgeThread(opcua_file(certs, [_line_entry(line)], port, deadline_ms=deadline_s * 1000)) as bridges:
            backend = loader.loaded[0].backend

            async def plc_side() -> tuple[list[dict], dict]:
                plc = await Plc(port, "t1", certs).connect()
                try:
                    await plc.wait("State", "Ready")
                    out = []
                    for i in range(16):
                        # Read when the batch starts: the frame of this part is the one that is slow.
                        backend.delay_s = slow_s if i in slow else 0.0
                        out.append(await plc.part(f"S{i:02d}"))
                        backend.delay_s = 0.0
                    await asyncio.sleep(slow_s)  # the last late result arrives
                    counters = {k: await plc.read(f"Counters.{k}") for k in ("Timeouts", "LateResults", "Parts")}
                    counters["late_part"] = await plc.read("LateResult.PartId")
                    return out, counters
                finally:
                    await plc.close()

            parts, counters = asyncio.run(plc_side())
            timings = list(bridges.get("plc").lines["t1"].timings)
        line.collect(got, 5, until=lambda g: sum(r.part_id is not None for r in g.results) >= 16)
    by_part = {r.part_id: r for r in got.results if r.part_id}
    for i, p in enumerate(parts):
        if i in slow:
            assert (p["ResultCode"], p["Decision"], p["Pass"]) == ("TIMEOUT", "ERROR", False), (i, p)
            assert math.isnan(p["Score"]) and p["FrameId"] == -1
            assert p["ResponseMs"] >= deadline_s * 1000
        else:
            _same(p, by_part[p["PartId"]])  # never the late result of the part before it
    # The late results were seen, counted and kept apart.
    assert counters == {"Timeouts": 3, "LateResults": 3, "Parts": 16, "late_part": "S13"}
    assert all(by_part[f"S{i:02d}"].decision != "ERROR" for i in slow)  # the daemon did answer them, late
    assert len(timings) == 16


def _wait_port(port: int, timeout_s: float = 60.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def _spawn_daemon(cfg_path: Path, gate: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "tests.stream.fakes", str(cfg_path), "0", str(gate)],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)


def test_killing_the_daemon_turns_the_state_to_fault_and_back(tmp_path):
    certs = make_certs(tmp_path)
    pub, ctl = free_port(), free_port()
    source = memory_source(frame_folder(tmp_path / "frames"))
    cfg_path = daemon_yaml(tmp_path / "daemon.yaml", source, f"tcp://127.0.0.1:{pub}", f"tcp://127.0.0.1:{ctl}",
                           tmp_path / "audit", extra="pipeline: {mode: trigger}\n")
    gate = tmp_path / "gate"
    gate.touch()
    daemon = _spawn_daemon(cfg_path, gate, tmp_path / "daemon.log")
    port = free_port()
    lines = [{"line": "t1", "publish": f"tcp://127.0.0.1:{pub}", "control": f"tcp://127.0.0.1:{ctl}",
              "heartbeat_ms": 100}]
    try:
        _wait_port(ctl)
        with BridgeThread(opcua_file(certs, lines, port)):
            async def plc_side() -> dict:
                plc = await Plc(port, "t1", certs).connect()
                seen = {}
                try:
                    await plc.wait("State", "Ready", 60)
                    seen["before"] = (await plc.part("K1"))["ResultCode"]
                    daemon.send_signal(signal.SIGKILL)
                    await plc.wait("State", "Fault", 10)
                    seen["message"] = await plc.read("StateMessage")
                    # Reject by default: a part triggered while the daemon is gone is answered at once, ERROR.
                    p = await plc.part("K2")
                    seen["during"] = (p["ResultCode"], p["Decision"])
                    return seen
                finally:
                    await plc.close()

            seen = asyncio.run(plc_side())
            assert seen["before"] == "OK" and seen["during"] == ("NOT_READY", "ERROR")
            assert "no message from the daemon" in seen["message"]
            daemon.wait(10)
            daemon = _spawn_daemon(cfg_path, gate, tmp_path / "daemon.log")

            async def recovered() -> str:
                plc = await Plc(port, "t1", certs).connect()
                try:
                    await plc.wait("State", "Ready", 60)  # by itself, nothing restarted on the bridge
                    return (await plc.part("K3"))["ResultCode"]
                finally:
                    await plc.close()

            assert asyncio.run(recovered()) == "OK"
    finally:
        daemon.kill()
        daemon.wait(10)


def test_an_untrusted_certificate_is_refused(tmp_path):
    from asyncua.ua.uaerrors import BadCertificateUntrusted, BadIdentityTokenRejected

    certs = make_certs(tmp_path)
    port = free_port()
    lines = [{"line": "t1", "publish": "tcp://127.0.0.1:1", "control": "tcp://127.0.0.1:1"}]
    with BridgeThread(opcua_file(certs, lines, port)):
        async def attempts() -> None:
            with pytest.raises(BadCertificateUntrusted):
                await Plc(port, "t1", certs, who="stranger").connect()
            # No security at all: there is no such endpoint.
            with pytest.raises(Exception, match="No matching endpoints"):
                await Plc(port, "t1", None).connect()
            # A trusted application that offers the anonymous user token: refused unless configured.
            with pytest.raises(BadIdentityTokenRejected):
                await Plc(port, "t1", certs, user_cert=False).connect()
            plc = await Plc(port, "t1", certs).connect()
            assert await plc.read("State") == "Fault"  # no daemon on tcp://127.0.0.1:1
            await plc.close()

        asyncio.run(attempts())


def test_methods_and_handshake_errors(tmp_path):
    from asyncua import ua

    certs = make_certs(tmp_path)
    with _trigger_line(tmp_path) as line:
        line.go()
        port = free_port()
        with BridgeThread(opcua_file(certs, [_line_entry(line)], port)):
            async def plc_side() -> dict:
                plc = await Plc(port, "t1", certs).connect()
                obj = plc.client.get_node(ua.NodeId("t1", plc.idx))

                async def call(name: str, *args: str) -> list:
                    return await obj.call_method(ua.NodeId(f"t1.{name}", plc.idx), *args)

                seen = {}
                try:
                    await plc.wait("State", "Ready")
                    seen["pause"] = await call("Pause")
                    await plc.wait("State", "Paused")
                    seen["paused_part"] = (await plc.part("M1"))["ResultCode"]
                    seen["resume"] = await call("Resume")
                    await plc.wait("State", "Ready")
                    seen["switch"] = await call("SwitchProduct", "cable2")
                    await plc.wait("CalibrationId", "fake-cal-2")
                    seen["product"] = await plc.read("Product")
                    seen["bad_switch"] = await call("SwitchProduct", "nope")
                    seen["trigger"] = await call("Trigger", "M2")
                    seen["again"] = await call("Trigger", "M3")  # still Busy or ResultValid: refused
                    await plc.wait("Handshake.ResultValid", True)
                    seen["m2"] = (await plc.read("Result.PartId"), await plc.read("Result.ResultCode"))
                    await plc.node("Handshake.ResultAck").write_value(ua.DataValue(ua.Variant(True,
                                                                                              ua.VariantType.Boolean)))
                    await plc.wait("Handshake.ResultValid", False)
                    # A ResultAck without ResultValid: counted, nothing else.
                    await plc.node("Handshake.ResultAck").write_value(ua.DataValue(ua.Variant(True,
                                                                                              ua.VariantType.Boolean)))
                    await plc.wait("Counters.HandshakeErrors", 2)
                    seen["last_error"] = await plc.read("Handshake.LastError")
                    seen["empty"] = (await plc.part(""))["ResultCode"]
                    return seen
                finally:
                    await plc.close()

            seen = asyncio.run(plc_side())
    assert seen["pause"][0] is True and seen["resume"][0] is True
    assert seen["paused_part"] == "NOT_READY"
    assert seen["switch"][0] is True and '"product": "cable2"' in seen["switch"][1] and seen["product"] == "cable2"
    assert seen["bad_switch"][0] is False and "no bundle for product 'nope'" in seen["bad_switch"][1]
    assert seen["trigger"] == [True, "triggered"]
    assert seen["again"][0] is False and "while" in seen["again"][1]
    assert seen["m2"] == ("M2", "OK")
    assert "ResultAck while Ready" in seen["last_error"] and seen["empty"] == "BAD_REQUEST"
