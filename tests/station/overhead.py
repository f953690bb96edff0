"""Does the operator station cost the line anything? Daemon throughput with and without a station and a browser.

    python -m tests.station.overhead --home H --product cable --video demo_out/line.avi --frames 600 --rounds 3

Each round runs the real daemon (in this process, as tests/stream/overhead.py does) on an in-memory source of the
first 32 frames of ``--video`` (the demo's line: good and defective parts), every frame inspected (block policy),
as fast as it goes, a subscriber counting results; throughput = results / (last publish - first capture).
Arms, interleaved in every round so a neighbour's load hits them alike:

- ``alone``: the daemon with its default preview topic (5 live JPEGs per second and every reject as PNG);
- ``station``: the same, with ``inspector station`` (a separate process; it runs at nice 10 by default)
  subscribed and a headless Chromium showing its page (WebSocket connected, gallery loading reject pictures);
- ``station-kiosk``: the same as ``station``, but the browser is the one ``inspector station --kiosk`` starts
  itself (the product's own launcher, inspector/station/kiosk.py, given the same headless flags and window size
  as the Selenium browser): the whole browser tree at nice 19 (``DEFAULT_BROWSER_NICE``) and unable to raise it,
  so it renders only in CPU time the daemon leaves. Each row reports the highest priority (lowest nice) found
  among the browser's threads; the page counts as attached once the station reports its WebSocket (``clients``);
- ``station-only``: the station subscribed, no browser (a browser on another PC);
- ``no-preview``: the daemon with the preview topic off (``preview.rate_fps: 0``, ``rejects: false``).

Then one paced run at the video's 15 frames per second with the station and the browser, for the station's CPU
at 5 preview frames per second on a line that keeps up. CPU is user + system seconds from /proc (the browser:
all of chromedriver's descendants). Not a pytest test: it needs an exported, calibrated product.

``--alternate N`` measures the same in one daemon run instead (the bar's "same run"):

    python -m tests.station.overhead --home H --video demo_out/line.avi --alternate 5 --window-s 24 \
        --arms station-kiosk,station-only,station

The daemon runs flat out throughout, and each station arm is attached and detached N times in turn, with a
window without it before and after each window with it. On a shared virtual machine the speed of the machine
itself drifts by 10-30 % within a minute, more than the effect measured; comparing each window with its two
neighbours cancels that; each window also reports ``steal_pct``, the CPU the hypervisor gave to other guests
meanwhile (% of one vCPU), which is what moves the machine's speed on a shared host. Windows should be longer
than the page's gallery period at the benchmark's reject rate (24 s, station.js), or the windows see fewer new
gallery pictures than a steady page loads.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from inspector.client.subscriber import ControlClient, Subscriber
from inspector.config import load_dataclass
from inspector.protocol.messages import EndOfStream, Heartbeat, Result
from inspector.station.config import DEFAULT_BROWSER_NICE
from inspector.stream.config import DaemonConfig
from inspector.stream.daemon import Daemon
from tests.station.support import children, proc_stat, process_tree, thread_nices
from tests.stream.overhead import start_daemon

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int, tree: bool = False) -> float:
    """User + system CPU seconds of ``pid`` (and with ``tree`` its living descendants) from /proc."""
    total = 0.0
    for p in process_tree(pid) if tree else [pid]:
        f = proc_stat(p)
        if f is not None:
            total += (int(f[11]) + int(f[12])) / TICK
    return total


def steal_s() -> float:
    """CPU seconds the hypervisor gave to others (all vCPUs, /proc/stat's steal): the host's share of a scatter."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[8]) / TICK


def lowest_nice(pid: int) -> int | None:
    """The lowest nice value (highest priority) of any thread of ``pid``'s tree (stat field 19), None if gone."""
    nices = [n for p in process_tree(pid) for n in thread_nices(p)]
    return min(nices) if nices else None


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frames_folder(video: Path, out: Path, n: int = 32) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(video))
    for i in range(n):
        ok, img = cap.read()
        if not ok:
            break
        cv2.imwrite(str(out / f"{i:03d}.png"), img)
    return out


# The Selenium browser's (tests/station/support.py) rendering flags and window, for the kiosk arm alike.
KIOSK_BROWSER_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                      "--window-size=1600,1100"]


class Attached:
    """``inspector station`` as a separate process and a headless Chromium on its page: driven by Selenium, or
    (``kiosk``) the one the station starts itself with ``--kiosk``."""

    def __init__(self, pub: str, ctl: str, home: Path, browser: bool = True, kiosk: bool = False) -> None:
        from tests.station.support import CHROMIUM, chromium_driver

        port = _port()
        env = {**os.environ, "INSPECTOR_STATION_TOKEN": "bench-token-0123456789"}
        argv = [sys.executable, "-c", "import sys; from inspector.cli import main; sys.exit(main())", "station",
                "--connect", pub, "--control", ctl, "--bind", f"127.0.0.1:{port}", "--home", str(home)]
        if kiosk:
            cfg = home / "station.yaml"
            cfg.parent.mkdir(parents=True, exist_ok=True)
            cfg.write_text(json.dumps({"browser": str(CHROMIUM), "browser_args": KIOSK_BROWSER_ARGS}))  # YAML too
            argv += ["--config", str(cfg), "--kiosk"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("station: http"):
            raise RuntimeError(f"the station did not start: {line!r}")
        self.driver = chromium_driver() if browser and not kiosk else None
        self.browser_pid: int | None = None
        if kiosk:
            self._wait(lambda: _clients(port) >= 1, "the kiosk page's WebSocket did not connect (see the station's "
                       "log above)")
            self.browser_pid = children()[self.proc.pid][0]  # the station's one child: the kiosk browser
        elif self.driver is not None:
            self.driver.get(f"http://127.0.0.1:{port}/")
            self.browser_pid = self.driver.service.process.pid
            self._wait(lambda: self.driver.find_element("id", "conn").get_attribute("data-state") == "live",
                       "the page's WebSocket did not connect")

    @staticmethod
    def _wait(cond, what: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > deadline:
                raise RuntimeError(what)
            time.sleep(0.1)

    def cpu(self) -> tuple[float, float]:
        return cpu_s(self.proc.pid), cpu_s(self.browser_pid, tree=True) if self.browser_pid else 0.0

    def close(self) -> None:
        from tests.station.support import quit_driver

        if self.driver is not None:
            quit_driver(self.driver)
        self.proc.terminate()
        self.proc.wait(20)


def _clients(port: int) -> int:
    """How many pages the station on ``port`` has connected (its /api/state)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=5) as r:
        return int(json.loads(r.read())["clients"])


def daemon_config(args: argparse.Namespace, images: Path, tmp: Path, arm: str, frames: int,
                  pace: float = 0.0) -> DaemonConfig:
    """The benchmark daemon: ``images`` in a loop, ``frames`` of them, every one inspected (block policy)."""
    live, rejects = {"no-preview": (False, False), "live-only": (True, False), "rejects-only": (False, True)}.get(
        arm, (True, True))
    return load_dataclass(DaemonConfig, {
        "line": "bench", "home": args.home, "product": args.product, "backend": args.backend, "device": "cpu",
        "threads": args.threads,
        "source": {"kind": "memory", "uri": str(images), "width": args.size, "height": args.size,
                   "frames": frames, "rate_fps": pace},
        "pipeline": {"queue_size": 4, "drop_policy": "block", "max_batch": 1, "batch_timeout_ms": 2,
                     "start_paused": True},
        "zmq": {"publish": ["tcp://127.0.0.1:0"], "control": "tcp://127.0.0.1:0", "heartbeat_ms": 500},
        "preview": {"rate_fps": 5.0 if live else 0.0, "rejects": rejects},
        "audit": {"dir": str(tmp / "audit")}, "log": {"format": "text", "level": "warning"},
    }, "station overhead")


def run(args: argparse.Namespace, images: Path, tmp: Path, arm: str, pace: float = 0.0) -> dict:
    cfg = daemon_config(args, images, tmp, arm, args.frames if not pace else int(pace * args.paced_s), pace)
    d, t = start_daemon(Daemon(cfg), 300)
    pub, ctl = d.endpoints["publish"][0], d.endpoints["control"]
    attached = Attached(pub, ctl, tmp, browser=arm != "station-only", kiosk=arm == "station-kiosk") \
        if arm.startswith("station") else None
    sub = Subscriber(pub, line="bench")
    while not isinstance((m := sub.recv(1000)) and m[0], Heartbeat):
        pass
    cpu0, wall0 = (attached.cpu() if attached else (0.0, 0.0)), time.monotonic()
    self0 = cpu_s(os.getpid())
    ControlClient(ctl).request("resume")
    results = []
    while True:
        m = sub.recv(60000)
        if m is None:
            raise RuntimeError("no message for 60 s")
        if isinstance(m[0], Result):
            results.append(m[0])
        elif isinstance(m[0], EndOfStream):
            break
    wall = time.monotonic() - wall0
    cpu1 = attached.cpu() if attached else (0.0, 0.0)
    nice = lowest_nice(attached.browser_pid) if attached and attached.browser_pid else None
    daemon_cpu = cpu_s(os.getpid()) - self0
    t.join(60)
    sub.close()
    if attached:
        attached.close()
    span = max(r.publish_ts for r in results) - min(r.capture_ts for r in results)
    out = {"arm": arm, "frames": len(results), "fps": len(results) / span, "wall_s": wall,
           "fails": sum(r.decision != "PASS" for r in results), "daemon_cpu_pct": 100 * daemon_cpu / wall}
    if attached:
        out.update(station_cpu_pct=100 * (cpu1[0] - cpu0[0]) / wall, browser_cpu_pct=100 * (cpu1[1] - cpu0[1]) / wall)
    if nice is not None:
        out["browser_lowest_nice"] = nice  # the kiosk arm's should be DEFAULT_BROWSER_NICE
        if arm == "station-kiosk" and nice != DEFAULT_BROWSER_NICE:
            print(f"warning: a kiosk browser thread ran at nice {nice}, not {DEFAULT_BROWSER_NICE}", flush=True)
    return out


class Counter:
    """Counts the daemon's results as they arrive (a thread): ``count_between(t0, t1)`` on ``time.monotonic``."""

    def __init__(self, pub: str) -> None:
        self.sub = Subscriber(pub, line="bench")
        self.arrivals: list[float] = []
        self.heartbeat = threading.Event()
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.ended.is_set():
            m = self.sub.recv(500)
            if m is None:
                continue
            if isinstance(m[0], Heartbeat):
                self.heartbeat.set()
            elif isinstance(m[0], Result):
                self.arrivals.append(time.monotonic())
            elif isinstance(m[0], EndOfStream):
                self.ended.set()

    def count_between(self, t0: float, t1: float) -> int:
        return sum(t0 <= t < t1 for t in self.arrivals)


def alternate(args: argparse.Namespace, images: Path, tmp: Path, arms: list[str]) -> list[dict]:
    """One daemon run; the station of each arm (station, station-kiosk or station-only) attached and detached
    ``--alternate`` times, in turn: windows of ``--window-s`` without it (W) and with it, W A W B W B W A W ...
    Each window starts ``--settle-s`` after the station has attached (its page's WebSocket connected) or has
    exited, so no start-up or shut-down work falls in a window. A with-window's ratio is its throughput over the
    mean of the two without-windows around it: a drift of the machine's speed cancels out."""
    cfg = daemon_config(args, images, tmp, "alone", 10**9)
    d, t = start_daemon(Daemon(cfg), 300)
    pub, ctl = d.endpoints["publish"][0], d.endpoints["control"]
    counter = Counter(pub)
    if not counter.heartbeat.wait(30):
        raise RuntimeError("no heartbeat from the daemon")
    ControlClient(ctl).request("resume")
    time.sleep(args.settle_s)
    windows: list[dict] = []

    preview = d.pipeline.output.preview

    def window(arm: str, attached: Attached | None) -> None:
        cpu0, daemon0 = attached.cpu() if attached else (0.0, 0.0), cpu_s(os.getpid())
        p0, sent0, lossy0, steal0 = preview.cpu_s, dict(preview.sent), preview.lossy_rejects, steal_s()
        t0 = time.monotonic()
        time.sleep(args.window_s)
        t1 = time.monotonic()
        # The daemon's own share of the cost: its preview thread encodes only while somebody subscribes.
        w = {"arm": arm, "fps": counter.count_between(t0, t1) / (t1 - t0),
             "daemon_cpu_pct": 100 * (cpu_s(os.getpid()) - daemon0) / (t1 - t0),
             "preview_cpu_pct": 100 * (preview.cpu_s - p0) / (t1 - t0),
             "previews_per_s": {k: round((preview.sent[k] - sent0[k]) / (t1 - t0), 2) for k in sent0},
             "lossy_rejects_per_s": (preview.lossy_rejects - lossy0) / (t1 - t0),
             "steal_pct": 100 * (steal_s() - steal0) / (t1 - t0)}
        if attached:
            cpu1 = attached.cpu()
            w.update(station_cpu_pct=100 * (cpu1[0] - cpu0[0]) / (t1 - t0),
                     browser_cpu_pct=100 * (cpu1[1] - cpu0[1]) / (t1 - t0))
        windows.append(w)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in w.items()}), flush=True)

    def attached_window(arm: str) -> None:
        a = Attached(pub, ctl, tmp / f"station{len(windows)}", browser=arm != "station-only",
                     kiosk=arm == "station-kiosk")
        try:
            time.sleep(args.settle_s)
            window(arm, a)
        finally:
            a.close()
        time.sleep(args.settle_s)

    try:
        window("alone", None)
        for k in range(args.alternate):
            for arm in arms if k % 2 == 0 else arms[::-1]:
                attached_window(arm)
                window("alone", None)
    finally:
        d.request_stop("benchmark done")
        t.join(60)
        counter.ended.set()
        counter.thread.join(5)
        counter.sub.close()
    # Throughput per vCPU the host left us: on a shared host the steal moves a window's speed by more than the
    # station does (22% steal: 41.9 frames/s; 1%: 48.5), so the ratios are also given with each window's fps
    # divided by the vCPUs it had (a CPU-bound daemon's throughput taken as proportional to them).
    ncpu = os.cpu_count() or 1

    def per_cpu(w: dict) -> float:
        return w["fps"] / (ncpu - w["steal_pct"] / 100)

    def neighbour_ratios(arm: str, speed) -> list[float]:
        return [speed(w) / (0.5 * (speed(windows[i - 1]) + speed(windows[i + 1])))
                for i, w in enumerate(windows) if w["arm"] == arm]

    out = []
    for arm in arms:
        ratios = neighbour_ratios(arm, lambda w: w["fps"])
        adjusted = neighbour_ratios(arm, per_cpu)
        mine = [w for w in windows if w["arm"] == arm]
        out.append({"arm": arm, "windows": len(ratios), "window_s": args.window_s,
                    "ratio_median": float(np.median(ratios)), "ratio_mean": float(np.mean(ratios)),
                    "ratio_quartiles": [round(float(q), 3) for q in np.quantile(ratios, [0.25, 0.75])],
                    "ratio_per_vcpu_left_median": float(np.median(adjusted)),
                    "ratio_per_vcpu_left_mean": float(np.mean(adjusted)),
                    **{f"{k}_mean": float(np.mean([w[k] for w in mine if k in w])) for k in
                       ("fps", "daemon_cpu_pct", "preview_cpu_pct", "station_cpu_pct", "browser_cpu_pct",
                        "steal_pct")}})
    alone = [w for w in windows if w["arm"] == "alone"]
    out.append({"arm": "alone", "windows": len(alone), "fps_mean": float(np.mean([w["fps"] for w in alone])),
                "daemon_cpu_pct_mean": float(np.mean([w["daemon_cpu_pct"] for w in alone])),
                "steal_pct_mean": float(np.mean([w["steal_pct"] for w in alone]))})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", required=True)
    ap.add_argument("--product", default="cable")
    ap.add_argument("--video", required=True)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--paced-s", type=float, default=30.0)
    ap.add_argument("--arms", default="alone,station,station-kiosk,station-only,no-preview",
                    help="comma-separated: alone, station, station-kiosk, station-only, no-preview, live-only, "
                    "rejects-only")
    ap.add_argument("--alternate", type=int, default=0, metavar="N",
                    help="instead of arms in separate runs: one daemon run, the station of each arm (other than "
                    "alone) attached and detached N times, neighbouring windows compared")
    ap.add_argument("--window-s", type=float, default=8.0)
    ap.add_argument("--settle-s", type=float, default=2.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="station-overhead-"))
    images = frames_folder(Path(args.video), tmp / "frames")
    if args.alternate:
        for summary in alternate(args, images, tmp, [a for a in args.arms.split(",") if a.startswith("station")]):
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()}),
                  flush=True)
        return
    rows = []
    print(f"load average at start: {os.getloadavg()}", flush=True)
    run(args, images, tmp / "warm-up", "alone")  # first-run costs (imports, allocators) are not an arm's
    for k in range(args.rounds):
        arms = args.arms.split(",")
        for arm in arms if k % 2 == 0 else arms[::-1]:
            r = run(args, images, tmp / f"{arm}{k}", arm)
            rows.append(r)
            print(json.dumps({"round": k, **{key: round(v, 2) if isinstance(v, float) else v
                                             for key, v in r.items()}}), flush=True)
    if args.paced_s:
        paced = run(args, images, tmp / "paced", "station", pace=15.0)
        print(json.dumps({"paced_15fps": {k: round(v, 2) if isinstance(v, float) else v for k, v in paced.items()}}))
    fps = {a: [r["fps"] for r in rows if r["arm"] == a] for a in args.arms.split(",")}
    med = {a: float(np.median(v)) for a, v in fps.items()}
    base = fps.get("alone") or next(iter(fps.values()))
    per_round = {arm: [round(s / a, 3) for a, s in zip(base, v, strict=True)] for arm, v in fps.items()}
    print(json.dumps({"median_fps": med, "per round / alone": per_round,
                      "medians / alone": {a: round(m / med.get("alone", m), 3) for a, m in med.items()},
                      "load average at end": os.getloadavg()}))


if __name__ == "__main__":
    main()
