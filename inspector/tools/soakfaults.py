"""The faults `inspector soak` injects into a running daemon, one class each, from outside the daemon.

Each injector is given the daemon's process id, its endpoints and config, and runs for its fault's length:

- ``camera``: the source goes away and comes back (a file or image folder is moved away for a while);
  a memory source or a real camera cannot be pulled from here, and says so;
- ``subscriber``: a subscriber that connects, never reads (receive high-water mark 1), and leaves;
- ``garbage``: a burst of malformed, deeply nested and oversized requests on the control socket (up to
  ``GARBAGE_RATE`` a second, an 8 MB one every half second); every one that reaches the daemon must be
  answered (an oversized one is dropped by the socket unread);
- ``sighup``: SIGHUP, which reloads the calibration;
- ``disk``: the audit disk fails: a small filesystem is filled to the brim, or (no such filesystem) the audit
  directory is swapped for a file, a simulated write failure; then it is given back.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from inspector.protocol import sockets

FAULTS = ("camera", "subscriber", "garbage", "sighup", "disk")
# How long each fault lasts (s). The camera stays away longer than two loops of a short video (120 frames at
# 10 frames/s), so the source is reopened while it is gone.
DURATIONS = {"camera": 25.0, "subscriber": 20.0, "garbage": 10.0, "sighup": 0.0, "disk": 20.0}
# What a hostile or broken client sends: each got the old control thread killed or slowed (issue 13).
GARBAGE = (
    b'{"id":1,"cmd":["status"]}', b'{"cmd":{}}', b"[" * 60000, b'{"id":' + b"[" * 5000 + b"]" * 5000 + b"}",
    b"\xff\xfe\x00garbage", b"null", b'{"id":2,"cmd":"launch"}', b'{"id":3,"cmd":"trigger","part_id":7}',
    b"9" * 6000, b"",
)
OVERSIZED = b'{"id":4,"cmd":"status","pad":"' + b"x" * (8 << 20) + b'"}'
# Garbage requests per second in a burst: a client stuck in a tight retry loop, from another machine. The
# soak's own client shares this machine's cores with the daemon, so it is paced rather than flat out.
GARBAGE_RATE = 500.0


@dataclass
class Injection:
    """One fault as injected: its class, wall-clock window (Unix s), and what happened."""

    kind: str
    start: float
    end: float = 0.0
    injected: bool = True
    note: str = ""
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """The daemon under test: process id, endpoints (loopback), the source and audit paths it uses, and how
    long each fault lasts (seconds)."""

    pid: int
    publish: str
    control: str
    source_kind: str
    source_uri: str
    audit_dir: Path
    small_fs: bool  # the audit directory is on a small filesystem given for filling
    seconds: dict[str, float] = field(default_factory=lambda: dict(DURATIONS))


def camera(t: Target, stop: Callable[[], bool]) -> Injection:
    inj = Injection("camera", time.time())
    if t.source_kind not in ("file", "images"):
        inj.injected, inj.note = False, f"a {t.source_kind} source cannot be pulled from outside"
        return _done(inj)
    src = Path(t.source_uri)
    away = src.with_name(src.name + ".soak-away")
    os.replace(src, away)
    try:
        _wait(t.seconds["camera"], stop)
    finally:
        os.replace(away, src)
    inj.note = f"{src} away for {t.seconds['camera']:g} s"
    return _done(inj)


def subscriber(t: Target, stop: Callable[[], bool]) -> Injection:
    inj = Injection("subscriber", time.time())
    ctx = zmq.Context.instance()
    sub = sockets.sub_socket(ctx, [b"inspector/"], rcvhwm=1)
    sub.connect(t.publish)
    try:
        _wait(t.seconds["subscriber"], stop)
    finally:
        sub.close(0)
    inj.note = f"connected {t.seconds['subscriber']:g} s without reading"
    return _done(inj)


def garbage(t: Target, stop: Callable[[], bool]) -> Injection:
    """Requests as fast as the daemon answers them for the fault's length, an oversized one every half second."""
    inj = Injection("garbage", time.time())
    ctx = zmq.Context.instance()
    dealer, big = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    for s in (dealer, big):
        s.setsockopt(zmq.LINGER, 0)
        s.connect(t.control)
    sent = answered = oversized = 0
    deadline, next_big = time.monotonic() + t.seconds["garbage"], 0.0
    try:
        while time.monotonic() < deadline and not stop():
            if time.monotonic() >= next_big:
                big.send(OVERSIZED, zmq.NOBLOCK)
                oversized += 1
                next_big = time.monotonic() + 0.5
            dealer.send(GARBAGE[sent % len(GARBAGE)])
            sent += 1
            time.sleep(1 / GARBAGE_RATE)
            if dealer.poll(2000):
                r = json.loads(dealer.recv())
                answered += int(r.get("ok") is False)
            else:
                break  # unanswered: the control channel is stuck (counted below)
    finally:
        dealer.close(0)
        big.close(0)
    inj.counts = {"sent": sent, "answered": answered, "unanswered": sent - answered, "oversized": oversized}
    return _done(inj)


def sighup(t: Target, stop: Callable[[], bool]) -> Injection:
    inj = Injection("sighup", time.time())
    os.kill(t.pid, signal.SIGHUP)
    return _done(inj)


def disk(t: Target, stop: Callable[[], bool]) -> Injection:
    inj = Injection("disk", time.time())
    if t.small_fs:
        filler = t.audit_dir.parent / "soak-filler.bin"
        try:
            _fill(filler)
            _wait(t.seconds["disk"], stop)
        finally:
            filler.unlink(missing_ok=True)
        inj.note = f"{t.audit_dir.parent} filled for {t.seconds['disk']:g} s"
        return _done(inj)
    away = t.audit_dir.with_name(t.audit_dir.name + ".soak-away")
    os.replace(t.audit_dir, away)
    t.audit_dir.write_text("soak: the audit disk is gone")
    try:
        _wait(t.seconds["disk"], stop)
    finally:
        t.audit_dir.unlink()
        os.replace(away, t.audit_dir)
    inj.note = f"simulated: {t.audit_dir} replaced by a file for {t.seconds['disk']:g} s"
    return _done(inj)


INJECTORS: dict[str, Callable[[Target, Callable[[], bool]], Injection]] = {
    "camera": camera, "subscriber": subscriber, "garbage": garbage, "sighup": sighup, "disk": disk}


def _fill(path: Path) -> None:
    """Write zeros into ``path`` until its filesystem is full (unbuffered: the last, short write fails at once
    instead of at close)."""
    st = os.statvfs(path.parent)
    left = st.f_bavail * st.f_frsize
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while left > 0:
            n = os.write(fd, b"\0" * min(left, 1 << 20))
            left -= n
    except OSError:
        pass  # full: what was asked
    finally:
        os.close(fd)


def _wait(seconds: float, stop: Callable[[], bool]) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not stop():
        time.sleep(0.1)


def _done(inj: Injection) -> Injection:
    inj.end = time.time()
    return inj
