"""``inspector station --kiosk`` (inspector/station/kiosk.py): the browser's command line, finding it, and real
launches: Debian's Chromium (headless) on a station subscribed to a real daemon (fake product) runs at the
configured nice in every process and thread, its page connects (the station counts it), and stopping the
station ends it; a missing browser, one that exits at once or dies later never takes the station down."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.errors import ConfigError
from inspector.station import kiosk
from inspector.station.config import DEFAULT_BROWSER_NICE, load_station_config
from inspector.station.kiosk import Kiosk, KioskError, group_members
from inspector.station.server import Station
from tests.stream.fakes import frame_folder
from tests.stream.harness import Line, config

from .support import CHROMIUM, proc_stat, process_tree, station_on, thread_nices, wait_for

HEADLESS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def _ended(pid: int, started: str) -> bool:
    """The process that had start time ``started`` (stat field 22) is gone or a zombie."""
    f = proc_stat(pid)
    return f is None or f[19] != started or f[0] == "Z"


def _state(url: str) -> dict:
    with urllib.request.urlopen(url + "api/state", timeout=10) as r:
        assert r.status == 200
        return json.loads(r.read())


@contextlib.contextmanager
def _bare_station(tmp_path: Path, **cfg) -> Iterator[Station]:
    """A station whose daemon is not there (nothing listens on its endpoint): enough to serve the page."""
    scfg = load_station_config(None, connect=["tcp://127.0.0.1:9"], bind="127.0.0.1:0", home=str(tmp_path), **cfg)
    st = Station(scfg, tokens={})
    st.start()
    try:
        yield st
    finally:
        st.stop()


def _script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_the_command_line_is_app_kiosk_mode_on_the_page_with_a_private_profile():
    argv = kiosk.kiosk_argv("/usr/bin/chromium", "http://127.0.0.1:8080/", "/tmp/k/profile", ["--headless=new"])
    assert argv[0] == "/usr/bin/chromium" and argv[-1] == "--headless=new"
    assert "--app=http://127.0.0.1:8080/" in argv and "--user-data-dir=/tmp/k/profile" in argv
    for flag in ("--kiosk", "--no-first-run", "--disable-sync", "--disable-background-networking",
                 "--disable-component-update"):
        assert flag in argv and flag in kiosk.KIOSK_FLAGS
    assert len(argv) == 1 + len(kiosk.KIOSK_FLAGS) + 2 + 1


def test_the_browser_is_found_on_path_or_named_and_otherwise_the_error_says_what_was_looked_for(tmp_path):
    empty, some = tmp_path / "empty", tmp_path / "bin"
    empty.mkdir()
    some.mkdir()
    exe = _script(some, "chromium-browser", "exit 0")
    assert kiosk.find_browser("", path=str(some)) == str(exe)
    assert kiosk.find_browser(str(exe), path=str(empty)) == str(exe)
    with pytest.raises(ConfigError) as e:
        kiosk.find_browser("", path=str(empty))
    assert all(name in str(e.value) for name in kiosk.BROWSERS) and str(empty) in str(e.value)
    with pytest.raises(ConfigError, match="configured browser '/nowhere/chrome'"):
        kiosk.find_browser("/nowhere/chrome", path=str(some))


def test_the_config_keys_and_their_range():
    cfg = load_station_config(None, connect=["tcp://127.0.0.1:5555"])
    assert (cfg.kiosk, cfg.browser, cfg.browser_nice, cfg.browser_args) == (False, "", DEFAULT_BROWSER_NICE, ())
    assert DEFAULT_BROWSER_NICE == 19
    cfg = load_station_config(None, connect=["tcp://127.0.0.1:5555"], kiosk=True, browser_args=["--headless=new"])
    assert cfg.kiosk and cfg.browser_args == ("--headless=new",)
    with pytest.raises(ConfigError, match="browser_nice"):
        load_station_config(None, connect=["tcp://127.0.0.1:5555"], browser_nice=20)


@pytest.fixture
def line(tmp_path):
    frames = frame_folder(tmp_path / "frames", 8)
    cfg = config(tmp_path, {"kind": "memory", "width": 64, "height": 48, "uri": str(frames), "rate_fps": 10.0},
                 pipeline={"drop_policy": "drop_oldest"})
    with Line(cfg) as ln:
        ln.go()
        yield ln


def test_chromium_in_kiosk_mode_runs_idle_connects_and_ends_with_the_station(line, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: `apt-get install chromium` (`make test` does it as root on Debian)")
    # Never above this process's own nice; the default, 19, is the lowest priority there is.
    want = max(DEFAULT_BROWSER_NICE, os.getpriority(os.PRIO_PROCESS, 0))
    with station_on(line, tmp_path / "home", kiosk=True, browser=str(CHROMIUM), browser_args=HEADLESS) as st:
        assert st.kiosk is not None and st.kiosk_error == ""
        # (b) the page connected: its WebSocket is the station's one client (this test opens none).
        wait_for(lambda: _state(st.url)["clients"] >= 1, what="the kiosk page's WebSocket")
        assert st.kiosk.running
        # (a) every process of the browser and every thread in them at the configured nice. Chromium sets its
        # threads' nice values itself (0, -8 for the compositor, as root it could): none may have gone below.
        tree = process_tree(st.kiosk.pid)
        assert len(tree) >= 3  # the browser, its zygotes, the page's renderer
        nices = {pid: ns for pid in tree if (ns := thread_nices(pid))}
        assert len(nices) >= 3 and {n for ns in nices.values() for n in ns} == {want}, nices
        started = {pid: f[19] for pid in tree if (f := proc_stat(pid)) is not None}
        profile = st.kiosk.dir
        assert profile is not None and (profile / "profile").is_dir()
        assert (profile.stat().st_mode & 0o077) == 0  # the profile is private
        pgid = st.kiosk.pid
    # (c) stopping the station ended the whole browser tree and removed its profile.
    assert st.kiosk is None
    assert all(_ended(pid, t) for pid, t in started.items()), [p for p, t in started.items() if not _ended(p, t)]
    assert group_members(pgid) == [] and not profile.exists()


def test_a_missing_browser_is_a_clear_error_and_the_station_serves(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PATH", str(tmp_path))  # no browser on it
    with caplog.at_level(logging.ERROR, logger="inspector.station.server"), _bare_station(tmp_path, kiosk=True) as st:
        assert st.kiosk is None
        assert "no browser found: looked for chromium, chromium-browser, google-chrome" in st.kiosk_error
        assert st.kiosk_error in caplog.text and "keeps serving" in caplog.text
        assert _state(st.url)["clients"] == 0  # the page is served all the same
    with _bare_station(tmp_path, kiosk=True, browser="/nowhere/chromium") as st:
        assert "'/nowhere/chromium'" in st.kiosk_error and _state(st.url)["lines"] == []


def test_a_browser_that_exits_at_once_says_what_it_printed_and_the_station_serves(tmp_path):
    fake = _script(tmp_path, "chromium", "echo 'Missing X server or $DISPLAY' >&2\nexit 1")
    with _bare_station(tmp_path, kiosk=True, browser=str(fake)) as st:
        assert st.kiosk is None and "exited at once with code 1: Missing X server or $DISPLAY" in st.kiosk_error
        assert _state(st.url)["clients"] == 0


def test_a_browser_that_dies_later_is_logged_and_one_that_ignores_sigterm_is_killed(tmp_path, caplog):
    survivor = _script(tmp_path, "stubborn", "trap '' TERM\nsleep 60 &\nwait")
    k = Kiosk("http://127.0.0.1:9/", nice=15, browser=str(survivor))
    pid = k.start()
    assert thread_nices(pid) == [max(15, os.getpriority(os.PRIO_PROCESS, 0))]
    wait_for(lambda: len(group_members(pid)) == 2, what="the script's sleep")
    k.stop(timeout_s=0.5)  # SIGTERM is ignored by both: SIGKILL after half a second
    assert group_members(pid) == [] and k.dir is None

    with _bare_station(tmp_path, kiosk=True, browser=str(_script(tmp_path, "mortal", "exec sleep 60"))) as st:
        assert st.kiosk is not None
        with caplog.at_level(logging.ERROR, logger="inspector.station.kiosk"):
            os.kill(st.kiosk.pid, signal.SIGKILL)
            wait_for(lambda: "exited with code -9" in caplog.text, what="the browser's death in the log")
        assert "keeps serving" in caplog.text and _state(st.url)["clients"] == 0


def test_a_kiosk_that_cannot_start_raises_kiosk_error(tmp_path):
    k = Kiosk("http://127.0.0.1:9/", browser=str(_script(tmp_path, "three", "echo bye\nexit 3")))
    with pytest.raises(KioskError, match="exited at once with code 3: bye"):
        k.start()
    assert k.dir is None and k.proc is None  # its profile is gone already
