"""Daemon overhead: end-to-end throughput of `inspector run` vs `inspector bench` for the same backend and frame.

    python -m tests.stream.overhead --home H --product P --backend onnxruntime --device cpu --batch 1 \
        --frames 200 --images DIR --rounds 2

``bench``: ``inspector.tools.bench.bench`` (what ``inspector bench`` runs) on random frames of the product's frame
size. ``daemon``: the real daemon in this process with a memory source of the same size (the images of
``--images`` resized, so decisions, masks and the audit are those of real parts; noise otherwise), every
frame inspected (block policy), batches up to ``--batch``, publishing to a live subscriber over loopback
TCP, audit on. Throughput = frames / (last publish - first capture), with the source as fast as the daemon
takes frames. Latency (capture to publish) is measured in a second daemon run paced at ``--pace`` times the
bench throughput, as a camera below capacity would be: at full speed it would mostly measure queueing.
The runs alternate ``--rounds`` times, so load from other processes hits them alike. Not a pytest test: it needs an exported, calibrated product.

    python -m tests.stream.overhead --noop --frames 300 --rounds 3

``--noop``: no product; a backend that does no work at 1280x720 (the daemon's own cost per frame: capture,
queue, decision, mask, publish, audit), each round once with a live subscriber only and once with a second
subscriber connected that never reads (masks always sent, tiny high-water marks): the ratio is what a stuck
subscriber costs (the old suite asserted > 60 frames/s and a ratio within 2x + 0.5 s; speed belongs here).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from inspector.client.subscriber import ControlClient, Subscriber
from inspector.config import load_dataclass
from inspector.protocol.messages import EndOfStream, Heartbeat, Result
from inspector.stream.config import DaemonConfig
from inspector.stream.daemon import Daemon


def start_daemon(d: Daemon, ready_s: float) -> tuple[Daemon, threading.Thread]:
    """Run ``d`` in a thread of this process (no signal handlers) and wait until it serves."""
    t = threading.Thread(target=d.run, kwargs={"install_signals": False}, daemon=True)
    t.start()
    if not d.wait_ready(ready_s):
        raise RuntimeError("daemon did not start")
    return d, t


def resume_and_collect(d: Daemon, sub: Subscriber) -> list[Result]:
    """Once the subscription is live (a heartbeat came), resume the paused daemon; every result until end of stream."""
    while not isinstance((m := sub.recv(1000)) and m[0], Heartbeat):
        pass
    ControlClient(d.endpoints["control"]).request("resume")
    results: list[Result] = []
    while True:
        m = sub.recv(60000)
        if m is None:
            raise RuntimeError("no message for 60 s")
        if isinstance(m[0], Result):
            results.append(m[0])
        elif isinstance(m[0], EndOfStream):
            return results


def run_daemon(args: argparse.Namespace, frame_hw: tuple[int, int], tmp: Path, rate_fps: float = 0.0,
               frames: int | None = None) -> dict:
    cfg = load_dataclass(DaemonConfig, {
        "line": "bench", "home": args.home, "product": args.product, "backend": args.backend, "device": args.device,
        "threads": args.threads, "spin": args.spin,
        "source": {"kind": "memory", "uri": args.images or "", "width": frame_hw[1], "height": frame_hw[0],
                   "frames": frames or args.frames, "rate_fps": rate_fps},
        "pipeline": {"queue_size": args.queue or args.batch, "drop_policy": "block", "max_batch": args.batch,
                     "batch_timeout_ms": 2, "start_paused": True},
        "zmq": {"publish": ["tcp://127.0.0.1:0"], "control": "tcp://127.0.0.1:0", "heartbeat_ms": 500},
        "audit": {"dir": str(tmp / "audit")}, "log": {"format": "text", "level": "warning"},
    }, "overhead")
    d, t = start_daemon(Daemon(cfg), 300)
    sub = Subscriber(d.endpoints["publish"][0], line="bench")
    results = resume_and_collect(d, sub)
    t.join(60)
    sub.close()
    lat = np.array([r.latency_ms for r in results])
    span = max(r.publish_ts for r in results) - min(r.capture_ts for r in results)
    decisions = {k: sum(r.decision == k for r in results) for k in ("PASS", "FAIL", "ERROR")}
    return {"frames": len(results), "fps": len(results) / span, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "decisions": decisions}


class NoopBackend:
    """Instant inference at 1280x720: what is left is the daemon's own cost per frame."""

    name = "noop"
    max_batch = 4
    frame_shape = (720, 1280)

    def infer(self, frames):
        from inspector.result import InferenceResult

        return InferenceResult(np.full(len(frames), 0.1, np.float32), np.zeros((len(frames), 224, 224), np.float32))

    def describe(self):
        return {"backend": "noop"}

    def close(self):
        pass


class NoopLoader:
    def load(self, name):
        from inspector.stream.product import Product
        from tests.stream.fakes import FakeCalibration

        return Product(name, NoopBackend(), FakeCalibration(), "sha", None, (720, 1280))

    def reload_calibration(self, product):
        return product


def run_noop(frames: int, tmp: Path, stuck: bool) -> dict:
    """The daemon with the no-op backend on a 1280x720 memory source; optionally a subscriber that never reads."""
    cfg = load_dataclass(DaemonConfig, {
        "line": "noop", "product": "noop",
        "source": {"kind": "memory", "width": 1280, "height": 720, "frames": frames},
        "pipeline": {"queue_size": 4, "max_batch": 4, "drop_policy": "block", "start_paused": True},
        "zmq": {"publish": ["tcp://127.0.0.1:0"], "control": "tcp://127.0.0.1:0", "heartbeat_ms": 200,
                "sndhwm": 10},
        "masks": {"publish": "always"}, "audit": {"dir": str(tmp / "audit")}, "log": {"format": "text"},
    }, "overhead-noop")
    d, t = start_daemon(Daemon(cfg, loader=NoopLoader()), 60)
    sub = Subscriber(d.endpoints["publish"][0], line="noop")
    never = Subscriber(d.endpoints["publish"][0], line="noop", rcvhwm=1) if stuck else None
    results = resume_and_collect(d, sub)
    t.join(60)
    sub.close()
    if never is not None:
        never.close()
    span = max(r.publish_ts for r in results) - min(r.capture_ts for r in results)
    return {"frames": len(results), "fps": len(results) / span, "ms_per_frame": 1000 * span / len(results)}


def noop_main(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            free = run_noop(args.frames, Path(tmp) / f"f{i}", stuck=False)
            stuck = run_noop(args.frames, Path(tmp) / f"s{i}", stuck=True)
            rows.append({"free": free, "stuck_subscriber": stuck, "ratio": stuck["fps"] / free["fps"]})
            print(f"round {i}: no-op 1280x720 {free['fps']:.0f} frames/s ({free['ms_per_frame']:.2f} ms each) | with a "
                  f"subscriber that never reads {stuck['fps']:.0f} frames/s | ratio {rows[-1]['ratio']:.2f}", flush=True)
    out = {"frame": "1280x720", "backend": "noop", "rounds": rows,
           "fps_median": float(np.median([r["free"]["fps"] for r in rows])),
           "stuck_ratio_median": float(np.median([r["ratio"] for r in rows]))}
    print(f"overall: {out['fps_median']:.0f} frames/s of daemon overhead alone; a stuck subscriber leaves "
          f"{out['stuck_ratio_median']:.2f} of it")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


def run_bench(args: argparse.Namespace) -> tuple[dict, tuple[int, int]]:
    from inspector.runtime import open_backend
    from inspector.tools.bench import bench, frame_pool

    b = open_backend(args.backend, args.home, args.product, device=args.device, threads=args.threads,
                     max_batch=args.batch, spin=args.spin)
    try:
        pool = frame_pool(max(8, 2 * args.batch), b.frame_shape)
        r = bench({args.backend: b}, args.batch, args.frames, 5, pool)[0].summary()
        return {"fps": r["throughput_fps"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"]}, tuple(b.frame_shape)
    finally:
        b.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--noop", action="store_true", help="no product: the daemon's own cost with a no-op backend")
    p.add_argument("--home")
    p.add_argument("--product")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--spin", action="store_true",
                   help="onnxruntime threads spin, in bench and daemon alike (default: off, as the daemon runs)")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--images", help="folder of real part images for the daemon's memory source")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--queue", type=int, default=0, help="daemon queue size (default: the batch)")
    p.add_argument("--pace", type=float, default=0.7,
                   help="latency run: source paced at this share of the bench throughput (a camera below capacity)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    if args.noop:
        noop_main(args)
        return
    if not (args.home and args.product):
        p.error("--home and --product are required (or --noop)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            b, hw = run_bench(args)
            d = run_daemon(args, hw, Path(tmp) / str(i))
            paced = run_daemon(args, hw, Path(tmp) / f"p{i}", rate_fps=args.pace * b["fps"],
                               frames=max(20, args.frames // 2))
            rows.append({"bench": b, "daemon": d, "paced": paced, "ratio": d["fps"] / b["fps"]})
            print(f"round {i}: bench {b['fps']:.2f} fps (p50 {b['p50_ms']:.1f} ms/frame) | daemon {d['fps']:.2f} fps "
                  f"({d['decisions']}) | ratio {d['fps'] / b['fps']:.3f} | paced at {args.pace * b['fps']:.2f} fps: "
                  f"latency p50 {paced['p50_ms']:.1f} ms, p99 {paced['p99_ms']:.1f} ms", flush=True)
    bench_fps = sum(r["bench"]["fps"] for r in rows)
    daemon_fps = sum(r["daemon"]["fps"] for r in rows)
    out = {"frame": f"{hw[1]}x{hw[0]}", "backend": args.backend, "device": args.device, "batch": args.batch,
           "rounds": rows, "ratio": daemon_fps / bench_fps,
           "latency_p50_ms": float(np.median([r["paced"]["p50_ms"] for r in rows])),
           "latency_p99_ms": float(np.median([r["paced"]["p99_ms"] for r in rows]))}
    print(f"overall: daemon/bench throughput = {out['ratio']:.3f}; capture->publish latency at {args.pace:g}x the "
          f"bench rate: p50 {out['latency_p50_ms']:.1f} ms, p99 {out['latency_p99_ms']:.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    time.sleep(0.1)


if __name__ == "__main__":
    main()
