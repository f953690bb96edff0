"""Helpers for the station tests: a real daemon (tests/stream harness) with a station subscribed, and a headless
Chromium driven by Selenium (the system chromium and chromedriver; Selenium Manager never downloads anything)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inspector.station.config import load_station_config
from inspector.station.server import Station
from tests.stream.harness import Line

TOKEN = "test-token-0123456789abcdef"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@contextlib.contextmanager
def station_on(line: Line, home: Path, tokens: dict[str, str] | None = None, **cfg) -> Iterator[Station]:
    """A station subscribed to ``line``'s daemon (and its control socket), page on a free loopback port."""
    scfg = load_station_config(None, connect=[line.pub], control=[line.ctl_endpoint], bind="127.0.0.1:0",
                               home=str(home), **cfg)
    st = Station(scfg, tokens={TOKEN: "ann"} if tokens is None else tokens)
    st.start()
    try:
        yield st
    finally:
        st.stop()


def wait_for(cond: Callable[[], object], timeout_s: float = 20.0, what: str = "condition") -> object:
    """Poll ``cond`` until it is truthy (returned) or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


def chromium_driver():
    """A headless Chromium WebDriver, or skip (with how to install it) where there is none."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"no {CHROMIUM} / {CHROMEDRIVER}: `apt-get install chromium chromium-driver` "
                    "(`make test` does it as root on Debian)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (the dev extra)")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="inspector-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1600,1100"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_script_timeout(20)
    driver.profile_dir = profile
    return driver


def quit_driver(driver) -> None:
    driver.quit()
    shutil.rmtree(driver.profile_dir, ignore_errors=True)


# -- processes, from /proc (the kiosk's tests and the station benchmark) -------------------------------------
def proc_stat(pid: int, task: int | None = None) -> list[str] | None:
    """/proc/PID[/task/TID]/stat fields from field 3 (state) on, or None when it is gone."""
    path = f"/proc/{pid}/stat" if task is None else f"/proc/{pid}/task/{task}/stat"
    try:
        return Path(path).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def children() -> dict[int, list[int]]:
    """parent pid -> its children's pids."""
    out: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (f := proc_stat(int(d.name))) is not None:
            out.setdefault(int(f[1]), []).append(int(d.name))
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and its living descendants, by parent id."""
    kids, out = children(), [pid]
    for p in out:
        out += kids.get(p, [])
    return out


def thread_nices(pid: int) -> list[int]:
    """The nice value (stat field 19) of every thread of ``pid`` (Linux keeps one per thread)."""
    try:
        tasks = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return []
    return [int(f[16]) for t in tasks if (f := proc_stat(pid, t)) is not None]

