"""`inspector soak`: the acceptance test a quality engineer runs before handing a line over.

It starts ``inspector run`` on the given config as a separate process (the real daemon, signals and all),
subscribes like a PLC, asks ``status`` every ``PROBE_S`` seconds, samples the daemon's memory, open files
and threads, and injects the chosen faults (``soakfaults.py``) on a schedule: after ``warmup_s``, one every
``every_s`` seconds, cycling through the classes. At the end it sends SIGTERM and reads the audit trail.

What it reports (printed, and as JSON; :mod:`inspector.tools.soakreport` computes it): frames captured,
results published and received, audit records; lost and duplicated decisions (against the end-of-stream
identity, frame ids and the audit); drops by cause; latency p50/p99 per phase (quiet and during each
fault class); RSS, open files and threads at start, after the warm-up and at the end; and a PASS/FAIL
line per promise.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from inspector.client.subscriber import ControlClient, Subscriber
from inspector.config import to_dict
from inspector.errors import ConfigError, InspectorError
from inspector.protocol.messages import EndOfStream, Event, Heartbeat, Result
from inspector.tools.soakfaults import DURATIONS, FAULTS, INJECTORS, Injection, Target
from inspector.tools.soakreport import Observed, report

log = logging.getLogger(__name__)

PROBE_S = 2.0
SAMPLE_S = 5.0
DAEMON = [sys.executable, "-c", "import sys; from inspector.cli import main; sys.exit(main())", "run", "--config"]


@dataclass(frozen=True)
class SoakOptions:
    """``minutes`` of soak, ``faults`` injected one every ``every_s`` s after ``warmup_s``; ``small_fs``: the
    config's audit directory is on a small filesystem the disk fault may fill."""

    config: Path
    minutes: float
    faults: tuple[str, ...] = FAULTS
    out: Path = Path("soak_out")
    every_s: float = 60.0
    warmup_s: float = 300.0
    small_fs: bool = False
    daemon: tuple[str, ...] = tuple(DAEMON)
    min_each: int = 5  # each requested fault class at least this often (with its effect) for a PASS
    seconds: tuple[tuple[str, float], ...] = ()  # fault lengths other than soakfaults.DURATIONS


def loopback(endpoint: str) -> str:
    """A bound endpoint as a local client connects to it: ``*`` and 0.0.0.0 become 127.0.0.1."""
    return endpoint.replace("://*:", "://127.0.0.1:").replace("://0.0.0.0:", "://127.0.0.1:")


def prepare(opts: SoakOptions) -> tuple[Path, dict[str, Any]]:
    """The daemon config the soak runs: the user's, started paused (the soak subscribes first). Refuses what a
    soak cannot measure (a finite source that ends, random ports, no control socket)."""
    from inspector.stream.config import load_daemon_config

    for f in opts.faults:
        if f not in FAULTS:
            raise ConfigError(f"--faults: unknown fault {f!r}; known: {', '.join(FAULTS)}")
    cfg = load_daemon_config(opts.config)
    src = cfg.source
    if src.kind in ("file", "images") and src.at_end != "loop" and src.images_mode != "watch":
        raise ConfigError(f"{opts.config}: a soak needs a source that does not end: set source.at_end: loop")
    if src.kind == "memory" and src.frames:
        raise ConfigError(f"{opts.config}: a soak needs source.frames: 0 (endless) for a memory source")
    if not cfg.zmq.control or any(ep.endswith(":0") for ep in (*cfg.zmq.publish, cfg.zmq.control)):
        raise ConfigError(f"{opts.config}: a soak connects to zmq.publish and zmq.control: give fixed ports")
    # The config as loaded (paths resolved), started paused so the soak's subscriber misses nothing.
    data = to_dict(dataclasses.replace(cfg, pipeline=dataclasses.replace(cfg.pipeline, start_paused=True)))
    opts.out.mkdir(parents=True, exist_ok=True)
    path = opts.out / "daemon.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, {"cfg": cfg, "publish": loopback(cfg.zmq.publish[0]), "control": loopback(cfg.zmq.control)}


def _collect(sub: Subscriber, obs: Observed, done: threading.Event) -> None:
    while not done.is_set():
        got = sub.recv(200)
        if got is None:
            continue
        msg = got[0]
        if isinstance(msg, Result):
            obs.results.append((msg.frame_id, msg.publish_ts, msg.latency_ms, msg.decision))
        elif isinstance(msg, Heartbeat):
            obs.heartbeat = msg
        elif isinstance(msg, Event):
            obs.events.append((msg.kind, msg.ts))
        elif isinstance(msg, EndOfStream):
            obs.eos = msg
            return


def _probe(endpoint: str, obs: Observed, done: threading.Event) -> None:
    client = ControlClient(endpoint, timeout_ms=2500, retries=3)
    try:
        while not done.wait(PROBE_S):
            t0 = time.monotonic()
            try:
                ok = bool(client.request("status").get("ok"))
            except InspectorError:
                ok = False
            obs.probes.append((time.time(), ok, (time.monotonic() - t0) * 1000))
    finally:
        client.close()


def process_sample(pid: int) -> tuple[int, int, int]:
    """(RSS bytes, open file descriptors, threads) of a Linux process, from /proc."""
    rss = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd")), threads


def _sample(pid: int, obs: Observed, done: threading.Event) -> None:
    while True:
        try:
            obs.samples.append((time.time(), *process_sample(pid)))
        except OSError:
            return
        if done.wait(SAMPLE_S):
            return


def _start(opts: SoakOptions, path: Path, ends: dict[str, Any], obs: Observed) -> tuple[subprocess.Popen, Subscriber]:
    errlog = open(opts.out / "daemon.log", "w")  # noqa: SIM115 - the daemon's stderr for its whole life
    proc = subprocess.Popen([*opts.daemon, str(path)], stderr=errlog, stdout=errlog)
    sub = Subscriber(ends["publish"], line=ends["cfg"].line)
    deadline = time.monotonic() + 600  # loading an engine and warming it up
    while not isinstance((m := sub.recv(500)) and m[0], Heartbeat):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise InspectorError(f"the daemon did not start (exit {proc.poll()}); see {opts.out / 'daemon.log'}")
    return proc, sub


def _schedule(opts: SoakOptions, target: Target, obs: Observed, t0: float, done: threading.Event) -> None:
    end = t0 + opts.minutes * 60
    tail = min(30.0, 2 * opts.every_s)  # the last fault's effects settle before SIGTERM
    k = 0
    while True:
        due = t0 + opts.warmup_s + k * opts.every_s
        if due + tail > end or done.wait(max(0.0, due - time.monotonic())):
            return
        kind = opts.faults[k % len(opts.faults)]
        log.info("soak: injecting %s (%d)", kind, k + 1)
        try:
            obs.injections.append(INJECTORS[kind](target, done.is_set))
        except Exception as e:  # noqa: BLE001 - a fault that could not be injected is reported, the soak goes on
            log.exception("soak: could not inject %s", kind)
            obs.injections.append(Injection(kind, time.time(), time.time(), False, f"could not inject: {e!r}"))
        k += 1


def run_soak(opts: SoakOptions, say=print) -> dict[str, Any]:
    """Run the soak; returns the report (also written to ``out/soak.json``)."""
    path, ends = prepare(opts)
    cfg, obs, done = ends["cfg"], Observed(), threading.Event()
    load_start = os.getloadavg()
    proc, sub = _start(opts, path, ends, obs)
    threads = [threading.Thread(target=_collect, args=(sub, obs, threading.Event()), daemon=True),
               threading.Thread(target=_probe, args=(ends["control"], obs, done), daemon=True),
               threading.Thread(target=_sample, args=(proc.pid, obs, done), daemon=True)]
    for t in threads:
        t.start()
    ControlClient(ends["control"]).request("resume")
    t0, started = time.monotonic(), time.time()
    say(f"soak: daemon {proc.pid} running {cfg.product} from {cfg.source.kind}:{cfg.source.uri} for "
        f"{opts.minutes:g} min; faults {', '.join(opts.faults)} every {opts.every_s:g} s after {opts.warmup_s:g} s")
    target = Target(proc.pid, ends["publish"], ends["control"], cfg.source.kind, cfg.source.uri,
                    Path(cfg.audit.dir), opts.small_fs, {**DURATIONS, **dict(opts.seconds)})
    sched = threading.Thread(target=_schedule, args=(opts, target, obs, t0, done), daemon=True)
    sched.start()
    try:
        while time.monotonic() - t0 < opts.minutes * 60 and proc.poll() is None:
            time.sleep(1.0)
    finally:
        done.set()
        sched.join(60)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        rc = _wait_exit(proc)
        threads[0].join(30)
        sub.close()
    out = report(opts, cfg, obs, rc, started, load_start, os.getloadavg())
    (opts.out / "soak.json").write_text(json.dumps(out, indent=2) + "\n")
    raw = {"results": obs.results, "events": obs.events, "probes": obs.probes, "samples": obs.samples,
           "injections": [dataclasses.asdict(i) for i in obs.injections],
           "eos": dataclasses.asdict(obs.eos) if obs.eos else None}
    (opts.out / "observed.json").write_text(json.dumps(raw))  # every figure above can be recomputed from this
    for line in out["lines"]:
        say(line)
    return out


def _wait_exit(proc: subprocess.Popen) -> int:
    try:
        return proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)
