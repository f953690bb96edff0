"""Bridge latency benchmarks (docs/benchmarks.md). Not a pytest test: run by hand.

    python -m tests.bridge.bench opcua --home H --product cable --images DIR --parts 300
    python -m tests.bridge.bench mqtt --home H --product cable --images DIR --results 500 --outage 10

``opcua``: a daemon in this process (trigger mode, memory source of ``--images`` resized to the product's frame
size, paced at ``--rate`` frames/s), the OPC UA bridge (SignAndEncrypt) in a thread, and an asyncua client as
the PLC in the main thread, polling every 0.5 ms. Per part: Trigger written -> ResultValid read (PLC), the
daemon's capture -> publish latency (its result), and the bridge's share: PLC's span minus the span between
the bridge sending the control request and receiving the daemon's result (that span holds the wait for the
next frame, inference and publishing: the daemon's work).

``mqtt``: a daemon (continuous mode, paced), the MQTT bridge, a Mosquitto broker started here, and a paho
subscriber. Delivery latency = subscriber receive time - the daemon's ``publish_ts`` (same host clock). With
``--outage S`` the broker is killed once a third of the results are in and restarted S seconds later;
catch-up = broker restart -> the subscriber has every result published before the restart.

``--fake`` uses the tests' fake backend instead of a product (no ``--home`` needed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from inspector.bridge.run import BridgeThread
from inspector.client.subscriber import ControlClient, Subscriber
from inspector.config import load_dataclass
from inspector.protocol.messages import Heartbeat
from inspector.stream.config import DaemonConfig
from inspector.stream.daemon import Daemon

from .support import Plc, free_port, make_certs, opcua_file


def _pct(xs: list[float]) -> dict:
    a = np.asarray(xs, float)
    return {"n": len(a), "p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3),
            "max": round(float(a.max()), 3)}


def _daemon(args: argparse.Namespace, tmp: Path, mode: str, frames: int = 0) -> Daemon:
    if args.fake:
        from tests.stream.fakes import FRAME_HW, FakeLoader

        loader, hw, product = FakeLoader(), FRAME_HW, "cable"
    else:
        from inspector.manifest import frame_shape, load_manifest

        loader, product = None, args.product
        hw = frame_shape(load_manifest(Path(args.home) / "engines" / args.product))
    cfg = load_dataclass(DaemonConfig, {
        "line": "bench", "home": args.home or str(tmp), "product": product, "backend": args.backend,
        "device": "cpu", "threads": args.threads,
        "source": {"kind": "memory", "uri": args.images or "", "width": hw[1], "height": hw[0], "frames": frames,
                   "rate_fps": args.rate},
        "pipeline": {"mode": mode, "queue_size": 4, "drop_policy": "block", "max_batch": 1, "batch_timeout_ms": 0,
                     "trigger_timeout_s": 2.0, "start_paused": mode == "continuous"},
        "zmq": {"publish": ["tcp://127.0.0.1:0"], "control": "tcp://127.0.0.1:0", "heartbeat_ms": 500},
        "audit": {"dir": str(tmp / "audit")}, "log": {"format": "text", "level": "warning"},
    }, "bench")
    d = Daemon(cfg, loader=loader)
    threading.Thread(target=d.run, kwargs={"install_signals": False}, daemon=True).start()
    if not d.wait_ready(300):
        raise RuntimeError("daemon did not start")
    return d


def bench_opcua(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-opcua-"))
    d = _daemon(args, tmp, "trigger")
    certs = make_certs(tmp)
    port = free_port()
    lines = [{"line": "bench", "publish": d.endpoints["publish"][0], "control": d.endpoints["control"],
              "heartbeat_ms": 500}]
    with BridgeThread(opcua_file(certs, lines, port, deadline_ms=args.deadline_ms)) as bridges:
        async def plc_side() -> list[dict]:
            plc = await Plc(port, "bench", certs).connect()
            try:
                await plc.wait("State", "Ready", 30)
                for i in range(args.warmup):
                    await plc.part(f"W{i}")
                return [await plc.part(f"B{i:05d}") for i in range(args.parts)]
            finally:
                await plc.close()

        parts = asyncio.run(plc_side())
        timings = {t.part_id: t for t in bridges.get("plc").lines["bench"].timings}
    d.request_stop()
    total, bridge, daemon_span, latency = [], [], [], []
    codes: dict[str, int] = {}
    for p in parts:
        codes[p["ResultCode"]] = codes.get(p["ResultCode"], 0) + 1
        t = timings[p["PartId"]]
        span = (p["t_valid"] - p["t_trigger"]) * 1000
        total.append(span)
        if t.received is not None and t.sent is not None:
            daemon_span.append((t.received - t.sent) * 1000)
            bridge.append(span - daemon_span[-1])
            latency.append(p["LatencyMs"])
    return {"parts": len(parts), "codes": codes, "trigger_to_result_valid_ms": _pct(total),
            "daemon_capture_to_publish_ms": _pct(latency), "daemon_request_to_result_ms": _pct(daemon_span),
            "bridge_added_ms": _pct(bridge)}


def _mqtt_subscriber(port: int, topic: str, got: list, lock: threading.Lock):
    import paho.mqtt.client as mqtt

    def on_message(_c, _u, m) -> None:
        with lock:
            got.append((time.time(), json.loads(m.payload)))

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub", clean_session=False)
    c.on_connect = lambda cl, *_a: cl.subscribe(topic, qos=1)
    c.on_message = on_message
    c.reconnect_delay_set(0.1, 0.5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def bench_mqtt(args: argparse.Namespace) -> dict:
    from .mosquitto import Mosquitto

    tmp = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    broker = Mosquitto(tmp / "broker")
    broker.start()
    got: list = []
    lock = threading.Lock()
    sub = _mqtt_subscriber(broker.port, "bench/+/result", got, lock)
    d = _daemon(args, tmp, "continuous", frames=args.results)
    zsub = Subscriber(d.endpoints["publish"][0], line="bench", kinds=("heartbeat",))
    while not isinstance((m := zsub.recv(1000)) and m[0], Heartbeat):
        pass
    zsub.close()
    data = {"bridges": [{"name": "mes", "kind": "mqtt", "lines": [
        {"line": "bench", "publish": d.endpoints["publish"][0], "control": d.endpoints["control"],
         "heartbeat_ms": 500}], "mqtt": {"port": broker.port, "topic_prefix": "bench"}}]}
    from inspector.bridge.config import BridgeFile

    restarted = None
    with BridgeThread(load_dataclass(BridgeFile, data, "bench")):
        time.sleep(1.0)  # the bridge's subscription is up before the first frame
        ControlClient(d.endpoints["control"]).request("resume")
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with lock:
                n = len({r["bridge_seq"] for _t, r in got})
            if args.outage and restarted is None and n >= args.results // 3:
                broker.kill()
                time.sleep(args.outage)
                broker.start()
                restarted = time.time()
            if n >= args.results:
                break
            time.sleep(0.01)
    d.request_stop()
    sub.loop_stop()
    broker.stop()
    with lock:
        seen: dict[int, tuple[float, dict]] = {}
        for t, r in got:
            seen.setdefault(r["bridge_seq"], (t, r))
    lat_ms = [(t - r["publish_ts"]) * 1000 for t, r in seen.values()]
    out = {"results": len(seen), "duplicates": len(got) - len(seen), "delivery_ms": _pct(lat_ms)}
    if restarted is not None:
        before = [t for t, r in seen.values() if r["publish_ts"] < restarted]
        out["catch_up_s"] = round(max(before) - restarted, 3)
        out["outage_s"] = args.outage
        out["delivery_ms_outside_outage"] = _pct([(t - r["publish_ts"]) * 1000 for t, r in seen.values()
                                                  if t - r["publish_ts"] < 0.5])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("opcua", "mqtt"))
    p.add_argument("--home", default="")
    p.add_argument("--product", default="cable")
    p.add_argument("--images", default="", help="folder of images for the memory source")
    p.add_argument("--fake", action="store_true", help="the tests' fake backend instead of a product")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--rate", type=float, default=200.0, help="frames/s the memory source is paced at")
    p.add_argument("--parts", type=int, default=300)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--deadline-ms", type=float, default=2000.0)
    p.add_argument("--results", type=int, default=500)
    p.add_argument("--outage", type=float, default=0.0)
    args = p.parse_args()
    print(json.dumps(bench_opcua(args) if args.what == "opcua" else bench_mqtt(args), indent=2))


if __name__ == "__main__":
    main()
