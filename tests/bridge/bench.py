"""Bridge latency benchmarks (docs/benchmarks.md). Not a pytest test: run by hand.

    python -m tests.bridge.bench opcua --home H --product cable --images DIR --parts 300
    python -m tests.bridge.bench mqtt --home H --product cable --images DIR --results 500 --outage 10
    python -m tests.bridge.bench floor --parts 1000 [--burn]

Three processes, as on a line: the daemon (``inspector run``, a memory source of ``--images`` resized to the
product's frame size, paced at ``--rate`` frames/s, onnxruntime on the CPU), the bridge (this process), and
the client (a spawned process). Times compared across processes are CLOCK_MONOTONIC (system-wide) or, for
MQTT delivery, the wall clock of the same host.

``opcua``: the daemon in trigger mode; the client is an asyncua PLC over SignAndEncrypt that writes PartId and
Trigger in one request and polls ResultValid every 0.5 ms. Per part: Trigger written -> ResultValid read (the
PLC's span), the daemon's own capture -> publish latency (its result), and the bridge's share = the PLC's span
minus the time from the bridge sending the control request to it receiving the daemon's result (which holds
the wait for the next frame, inference and publishing: the daemon's work). A polling PLC also sleeps between
its reads: the part of those sleeps after the bridge raised ResultValid is the PLC's own cycle, not the
bridge's time, and ``bridge_added_ms_without_plc_sleep`` leaves it out (every read's round trip stays in). A
watching PLC (``--plc watch``) does not sleep: there the two are equal.

``mqtt``: the daemon in continuous mode; the client is a paho subscriber (persistent session, QoS 1) on a
Mosquitto broker started here. Delivery = subscriber receive time - the daemon's ``publish_ts``. With
``--outage S`` the broker is killed once a third of the results are in and restarted S seconds later;
catch-up = broker restart -> the subscriber has every result the daemon published before the restart.

``floor``: what two asyncua endpoints on this machine take for the same exchange without the bridge or a
daemon. A bare asyncua server, secured as the bridge is (``inspector.bridge.opcua.secure``: Basic256Sha256
SignAndEncrypt, trusted client certificates, the X509 user token), raises a Boolean from its PostWrite callback
at once; a client in another process writes a Boolean, learns of the raised flag from a subscription
(publishing interval 0, as ``--plc watch``) and reads it back once, ``--parts`` times after ``--warmup``, 25 ms
apart. With ``--burn`` a third process keeps one core busy throughout, as the daemon's inference does during a
part.

``--fake`` uses the tests' fake backend (tests/stream/fakes.py) instead of a product.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from inspector.bridge.config import BridgeFile
from inspector.bridge.run import BridgeThread
from inspector.client.subscriber import ControlClient
from inspector.config import load_dataclass

from .support import Plc, free_port, make_certs, opcua_file

REPO = Path(__file__).resolve().parents[2]


def _pct(xs: list[float]) -> dict:
    a = np.asarray(xs, float)
    return {"n": len(a), "p50": round(float(np.percentile(a, 50)), 2), "p99": round(float(np.percentile(a, 99)), 2),
            "max": round(float(a.max()), 2)}


def _daemon(args: argparse.Namespace, tmp: Path, mode: str, frames: int = 0) -> tuple[subprocess.Popen, str, str]:
    """Start the daemon as its own process; (process, publish endpoint, control endpoint)."""
    pub, ctl = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    if args.fake:
        hw, home = (48, 64), str(tmp)
    else:
        from inspector.manifest import load_manifest

        hw, home = load_manifest(Path(args.home) / "engines" / args.product).frame_shape, args.home
    cfg = {
        "line": "bench", "home": home, "product": args.product, "backend": args.backend, "device": "cpu",
        "threads": args.threads,
        "source": {"kind": "memory", "uri": args.images, "width": hw[1], "height": hw[0], "frames": frames,
                   "rate_fps": args.rate},
        "pipeline": {"mode": mode, "queue_size": 4, "drop_policy": "block", "max_batch": 1, "batch_timeout_ms": 0,
                     "trigger_timeout_s": 2.0, "start_paused": mode == "continuous"},
        "zmq": {"publish": [pub], "control": ctl, "heartbeat_ms": 500},
        "audit": {"dir": str(tmp / "audit")}, "log": {"format": "text", "level": "warning"},
    }
    for key, value in json.loads(args.daemon_set or "{}").items():  # e.g. {"preview": {"rate_fps": 0}}
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    path = tmp / "daemon.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if args.fake:
        gate = tmp / "gate"
        gate.touch()
        cmd = [sys.executable, "-m", "tests.stream.fakes", str(path), "0", str(gate)]
    else:
        cmd = [sys.executable, "-c", "import sys; from inspector.cli import main; sys.exit(main())", "run",
               "--config", str(path)]
    proc = subprocess.Popen(cmd, env=env, stdout=(tmp / "daemon.log").open("ab"), stderr=subprocess.STDOUT)
    port = int(ctl.rsplit(":", 1)[1])
    deadline = time.monotonic() + 300
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the daemon did not start; see {tmp / 'daemon.log'}")
        time.sleep(0.1)
    return proc, pub, ctl


def _plc_process(port: int, certs_dir: str, warmup: int, parts: int, watch: bool, out: mp.Queue) -> None:
    import pickle

    certs = pickle.loads(Path(certs_dir, "certs.pickle").read_bytes())

    async def run() -> list[dict]:
        plc = await Plc(port, "bench", certs, watch=watch).connect()
        try:
            await plc.wait("State", "Ready", 60)
            for i in range(warmup):
                await plc.part(f"W{i}")
            return [await plc.part(f"B{i:05d}") for i in range(parts)]
        finally:
            await plc.close()

    out.put(asyncio.run(run()))


def bench_opcua(args: argparse.Namespace) -> dict:
    import pickle

    tmp = Path(tempfile.mkdtemp(prefix="bench-opcua-"))
    proc, pub, ctl = _daemon(args, tmp, "trigger")
    certs = make_certs(tmp)
    (tmp / "certs.pickle").write_bytes(pickle.dumps(certs))
    port = free_port()
    lines = [{"line": "bench", "publish": pub, "control": ctl, "heartbeat_ms": 500}]
    try:
        with BridgeThread(opcua_file(certs, lines, port, deadline_ms=args.deadline_ms)) as bridges:
            q: mp.Queue = mp.get_context("spawn").Queue()
            plc = mp.get_context("spawn").Process(target=_plc_process, args=(port, str(tmp), args.warmup, args.parts,
                                                                    args.plc == "watch", q))
            plc.start()
            parts = q.get(timeout=1800)
            plc.join(30)
            timings = {t.part_id: t for t in bridges.get("plc").lines["bench"].timings}
    finally:
        proc.terminate()
        proc.wait(60)
    total, bridge, daemon_span, latency, plc_sleep, bridge_awake = [], [], [], [], [], []
    steps: dict[str, list[float]] = {"write_to_seen": [], "seen_to_sent": [], "received_to_valid": [],
                                     "valid_to_plc_read": []}
    codes: dict[str, int] = {}
    for p in parts:
        codes[p["ResultCode"]] = codes.get(p["ResultCode"], 0) + 1
        t = timings[p["PartId"]]
        span = (p["t_valid"] - p["t_trigger"]) * 1000
        total.append(span)
        if t.received is not None and t.sent is not None:
            daemon_span.append((t.received - t.sent) * 1000)
            bridge.append(span - daemon_span[-1])
            # the PLC's sleeps between reads, the part after ResultValid was raised (CLOCK_MONOTONIC is system-wide)
            plc_sleep.append(sum(max(0.0, e - max(s, t.valid)) for s, e in p["sleeps"]) * 1000)
            bridge_awake.append(bridge[-1] - plc_sleep[-1])
            latency.append(p["LatencyMs"])
            for k, (a, b) in {"write_to_seen": (p["t_trigger"], t.seen), "seen_to_sent": (t.seen, t.sent),
                              "received_to_valid": (t.received, t.valid),
                              "valid_to_plc_read": (t.valid, p["t_valid"])}.items():
                steps[k].append((b - a) * 1000)
    if args.dump:
        rows = [{"part": p["PartId"], "decision": p["Decision"], "t_trigger": p["t_trigger"], "t_valid": p["t_valid"],
                 "sleeps": p["sleeps"],
                 **{k: getattr(timings[p["PartId"]], k) for k in ("seen", "sent", "received", "valid")}} for p in parts]
        Path(args.dump).write_text(json.dumps(rows))
    return {"plc": args.plc, "parts": len(parts), "codes": codes, "trigger_to_result_valid_ms": _pct(total),
            "daemon_capture_to_publish_ms": _pct(latency), "daemon_request_to_result_ms": _pct(daemon_span),
            "bridge_added_ms": _pct(bridge), "plc_sleep_after_valid_ms": _pct(plc_sleep),
            "bridge_added_ms_without_plc_sleep": _pct(bridge_awake), "bridge_steps_ms": {k: _pct(v) for k, v in steps.items()},
            "load_avg": os.getloadavg()}


async def _floor_server(cfg_file: BridgeFile, ready: mp.Event) -> None:
    from asyncua import Server, ua
    from asyncua.common.callback import CallbackType

    from inspector.bridge.opcua import secure
    from inspector.bridge.opcua_space import written

    settings = cfg_file.bridges[0].settings
    server = Server()
    await server.init()
    server.set_endpoint(settings.endpoint)
    await secure(server, settings)
    idx = await server.register_namespace(settings.namespace)
    obj = await server.nodes.objects.add_object(ua.NodeId("floor", idx), ua.QualifiedName("floor", idx))
    trigger = await obj.add_variable(ua.NodeId("floor.Trigger", idx), ua.QualifiedName("Trigger", idx), False)
    await trigger.set_writable()
    flag = await obj.add_variable(ua.NodeId("floor.Valid", idx), ua.QualifiedName("Valid", idx), False)

    async def post_write(event, _dispatcher) -> None:
        for nodeid, value in written(event.request_params, event.response_params):  # as the bridge reads them
            if nodeid == trigger.nodeid:
                await server.write_attribute_value(flag.nodeid, ua.DataValue(ua.Variant(value, ua.VariantType.Boolean)))

    server.subscribe_server_callback(CallbackType.PostWrite, post_write)
    await server.start()
    ready.set()
    while True:
        await asyncio.sleep(3600)


def _floor_server_process(cfg_file: BridgeFile, ready: mp.Event) -> None:
    asyncio.run(_floor_server(cfg_file, ready))


async def _floor_client(port: int, certs, warmup: int, parts: int) -> dict:
    from asyncua import ua

    plc = await Plc(port, "floor", certs).connect()  # the bench's PLC: same security, same X509 user token
    try:
        await plc.subscribe("Valid")
        await plc.changed_to(False, 10)  # the initial value
        trigger, flag = plc.node("Trigger"), plc.node("Valid")
        exchange, read = [], []
        for i in range(warmup + parts):
            want = i % 2 == 0
            t0 = time.monotonic()
            await trigger.write_value(ua.DataValue(ua.Variant(want, ua.VariantType.Boolean)))
            t1 = await plc.changed_to(want, 10)
            t2 = time.monotonic()
            await flag.read_value()
            if i >= warmup:
                exchange.append((t1 - t0) * 1000)
                read.append((time.monotonic() - t2) * 1000)
            await asyncio.sleep(0.025)
    finally:
        await plc.close()
    return {"write_to_notification_ms": _pct(exchange), "read_round_trip_ms": _pct(read)}


def bench_floor(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    certs = make_certs(tmp)
    port = free_port()
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    # A bridge file needs a line; the floor's server has none of its nodes, and nothing connects to it.
    unused = {"line": "floor", "publish": "tcp://127.0.0.1:1", "control": "tcp://127.0.0.1:1"}
    server = ctx.Process(target=_floor_server_process, args=(opcua_file(certs, [unused], port), ready), daemon=True)
    server.start()
    burn = None
    try:
        if not ready.wait(60):
            raise RuntimeError("the floor's OPC UA server did not start")
        if args.burn:
            burn = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        out = asyncio.run(_floor_client(port, certs, args.warmup, args.parts))
    finally:
        if burn is not None:
            burn.kill()
        server.kill()
    return {"parts": args.parts, "burn": args.burn, **out, "load_avg": os.getloadavg()}


def _subscriber_process(port: int, topic: str, path: str, ready: mp.Event) -> None:
    import paho.mqtt.client as mqtt

    f = open(path, "a", buffering=1)  # noqa: SIM115 - open for the process's life

    def on_message(_c, _u, m) -> None:
        f.write(json.dumps({"t": time.time(), "r": json.loads(m.payload)}) + "\n")

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-mes", clean_session=False)
    c.on_connect = lambda cl, *_a: cl.subscribe(topic, qos=1)
    c.on_subscribe = lambda *_a: ready.set()
    c.on_message = on_message
    c.reconnect_delay_set(0.1, 0.5)
    c.connect("127.0.0.1", port)
    c.loop_forever()


def _received(path: Path) -> dict[tuple, tuple[float, dict]]:
    seen: dict[tuple, tuple[float, dict]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                x = json.loads(line)
            except ValueError:
                continue  # the last line, half written
            seen.setdefault((x["r"]["bridge_run"], x["r"]["bridge_seq"]), (x["t"], x["r"]))
    return seen


def bench_mqtt(args: argparse.Namespace) -> dict:
    from .mosquitto import Mosquitto

    tmp = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    broker = Mosquitto(tmp / "broker")
    broker.start()
    ctx = mp.get_context("spawn")
    ready, inbox = ctx.Event(), tmp / "inbox.jsonl"
    sub = ctx.Process(target=_subscriber_process, args=(broker.port, "bench/+/result", str(inbox), ready), daemon=True)
    sub.start()
    ready.wait(30)
    proc, pub, ctl = _daemon(args, tmp, "continuous", frames=args.results)
    data = {"bridges": [{"name": "mes", "kind": "mqtt", "lines": [
        {"line": "bench", "publish": pub, "control": ctl, "heartbeat_ms": 500}],
        "mqtt": {"port": broker.port, "topic_prefix": "bench", "reconnect_min_s": 0.1, "reconnect_max_s": 0.5}}]}
    restarted = None
    try:
        with BridgeThread(load_dataclass(BridgeFile, data, "bench")) as bridges:
            while not bridges.get("mes").links[0].liveness.up:
                time.sleep(0.05)
            time.sleep(1.5)  # the broker's autosave has the subscriber's session
            ControlClient(ctl, timeout_ms=5000).request("resume")
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                n = len(_received(inbox))
                if args.outage and restarted is None and n >= args.results // 3:
                    broker.kill()
                    time.sleep(args.outage)
                    broker.start()
                    restarted = time.time()
                if n >= args.results:
                    break
                time.sleep(0.05)
            dropped = bridges.get("mes").buffer.dropped
    finally:
        proc.terminate()
        proc.wait(60)
        sub.terminate()
        broker.stop()
    seen = _received(inbox)
    lat = [(t - r["publish_ts"]) * 1000 for t, r in seen.values()]
    out = {"results": len(seen), "dropped": dropped, "delivery_ms": _pct(lat), "load_avg": os.getloadavg()}
    if restarted is not None:
        before = [t for t, r in seen.values() if r["publish_ts"] < restarted]
        after = [(t - r["publish_ts"]) * 1000 for t, r in seen.values() if r["publish_ts"] >= max(before)]
        out.update(outage_s=args.outage, catch_up_s=round(max(before) - restarted, 3),
                   waited_out_the_outage=sum(1 for t, r in seen.values()
                                             if restarted - args.outage <= r["publish_ts"] < restarted),
                   delivery_ms_after_catch_up=_pct(after) if after else None)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("opcua", "mqtt", "floor"))
    p.add_argument("--home", default="")
    p.add_argument("--product", default="cable")
    p.add_argument("--images", default="", help="folder of images for the memory source (opcua, mqtt)")
    p.add_argument("--fake", action="store_true", help="the tests' fake backend instead of a product")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--rate", type=float, default=200.0, help="frames/s the memory source is paced at")
    p.add_argument("--parts", type=int, default=300)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--deadline-ms", type=float, default=2000.0)
    p.add_argument("--plc", choices=("poll", "watch"), default="poll",
                   help="the PLC reads ResultValid every 0.5 ms (poll) or subscribes to it (watch)")
    p.add_argument("--daemon-set", default="", help="JSON merged into the daemon's config, per section")
    p.add_argument("--dump", default="", help="write every part's monotonic times (PLC and bridge) to this JSON file")
    p.add_argument("--results", type=int, default=500)
    p.add_argument("--outage", type=float, default=0.0)
    p.add_argument("--burn", action="store_true", help="floor: keep one core busy meanwhile")
    args = p.parse_args()
    if args.what != "floor" and not args.images:
        p.error(f"{args.what} needs --images")
    run = {"opcua": bench_opcua, "mqtt": bench_mqtt, "floor": bench_floor}[args.what]
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
