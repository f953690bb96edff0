"""``inspector station --kiosk``: the line PC's screen is a browser the station starts itself, at idle priority.

One job: find the browser, build its command line, start it on the station's page and stop it again. The
browser runs in app/kiosk mode (no address bar, no first-run dialogs, no sync or background traffic) with a
private profile in a temporary directory, in its own process group, at nice ``browser_nice`` (19 by default):
on a line PC the daemon gets the CPU first, and the page renders in what is left.

Niceness is inherited by every process and thread the browser starts, but Chromium sets its threads' nice
values itself (absolute values: 0, -8 for its compositor, 5 or 10 for background work). An ordinary user may
only raise a nice value, so those calls fail and the browser stays where it was put; a process holding
CAP_SYS_NICE (root) would quietly undo it. So the child drops CAP_SYS_NICE from its capability bounding set and
caps RLIMIT_NICE before it executes the browser: nothing the browser starts can run above ``browser_nice``.

The browser never takes the station down: a browser that is missing, exits at once or dies later is an error
message (:class:`KioskError` / a log line), and the page keeps being served.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from inspector.errors import ConfigError, InspectorError
from inspector.station.config import DEFAULT_BROWSER_NICE

log = logging.getLogger(__name__)

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# App mode on the page, nothing else: no first-run dialog, no sync, no update or other background traffic
# (line PCs are offline; each of those would also spend CPU the line may need).
KIOSK_FLAGS = ("--kiosk", "--no-first-run", "--disable-sync", "--disable-background-networking",
               "--disable-component-update")
SETTLE_S = 1.0  # a browser still running after this long has started (a missing display fails sooner)
STOP_S = 5.0  # SIGTERM, then SIGKILL after this long
_PR_CAPBSET_DROP = 24  # <linux/prctl.h>
_CAP_SETPCAP, _CAP_SYS_NICE = 8, 23  # <linux/capability.h>


class KioskError(InspectorError):
    """The kiosk browser could not be started (names what was looked for, or what the browser said)."""


def find_browser(configured: str = "", path: str | None = None) -> str:
    """The browser executable: ``configured`` (a path or a name on PATH) or the first of :data:`BROWSERS` on
    ``path`` (default $PATH). ConfigError naming what was looked for where none is found."""
    names = (configured,) if configured else BROWSERS
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    where = f"PATH={path if path is not None else os.environ.get('PATH', '')}"
    if configured:
        raise ConfigError(f"--kiosk: the configured browser {configured!r} is not an executable ({where})")
    raise ConfigError(f"--kiosk: no browser found: looked for {', '.join(BROWSERS)} on {where}; install one "
                      "(`apt-get install chromium`) or set 'browser: /path/to/chromium' in the station config")


def kiosk_argv(browser: str, url: str, profile: str | Path, extra: Sequence[str] = ()) -> list[str]:
    """The browser's command line: app/kiosk mode on ``url``, a private ``profile`` directory, then ``extra``."""
    return [browser, *KIOSK_FLAGS, f"--app={url}", f"--user-data-dir={profile}", *extra]


def _has_cap(cap: int) -> bool:
    """Whether this process holds capability ``cap`` (Linux /proc/self/status CapEff)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> cap & 1)
    except OSError:
        pass
    return False


def idle_child(nice: int) -> Callable[[], None]:
    """A ``preexec_fn`` putting the child (and all it will start) at nice ``nice`` or lower priority, unable to
    raise it again: it drops CAP_SYS_NICE from the bounding set when this process holds it and caps RLIMIT_NICE.
    KioskError here (before any fork) when the capability is held but cannot be dropped."""
    if not 0 <= nice <= 19:
        raise ConfigError(f"browser nice {nice} is out of range: 0..19")
    drop = _has_cap(_CAP_SYS_NICE)
    if drop and not _has_cap(_CAP_SETPCAP):  # needed to change the bounding set
        raise KioskError("the station holds CAP_SYS_NICE but not CAP_SETPCAP: the browser could raise its own "
                         "priority again; run the station as an ordinary user")
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    floor = 20 - nice  # RLIMIT_NICE r lets a process go down to nice 20 - r

    def child() -> None:  # runs between fork and exec: system calls only, no locks, no logging
        os.setpriority(os.PRIO_PROCESS, 0, max(nice, os.getpriority(os.PRIO_PROCESS, 0)))
        soft, hard = resource.getrlimit(resource.RLIMIT_NICE)
        capped = [floor if v == resource.RLIM_INFINITY or v > floor else v for v in (soft, hard)]
        resource.setrlimit(resource.RLIMIT_NICE, (capped[0], capped[1]))
        if drop and prctl(_PR_CAPBSET_DROP, _CAP_SYS_NICE, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_SYS_NICE)")

    return child


def group_members(pgid: int) -> list[int]:
    """The living (not zombie) processes of process group ``pgid``, from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(f[2]) == pgid and f[0] != "Z":
                out.append(int(d.name))
    return out


class Kiosk:
    """``start()`` the browser on ``url``; ``stop()`` it and remove its profile. ``pid`` is the browser's (and its
    process group's) id while it runs."""

    def __init__(self, url: str, nice: int = DEFAULT_BROWSER_NICE, browser: str = "",
                 extra: Sequence[str] = ()) -> None:
        self.url, self.nice, self.extra = url, nice, tuple(extra)
        self.browser = browser
        self.proc: subprocess.Popen | None = None
        self.dir: Path | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, settle_s: float = SETTLE_S) -> int:
        """Start the browser; its pid. ConfigError (no browser) or KioskError (it exited at once, with the end
        of what it printed)."""
        exe = find_browser(self.browser)
        preexec = idle_child(self.nice)
        self.dir = Path(tempfile.mkdtemp(prefix="inspector-kiosk-"))  # mode 0700: the profile is private
        argv = kiosk_argv(exe, self.url, self.dir / "profile", self.extra)
        logfile = self.dir / "browser.log"
        with open(logfile, "wb") as out:  # the browser talks a lot; a pipe nobody reads would block it
            try:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                             process_group=0, preexec_fn=preexec, close_fds=True)
            except (OSError, subprocess.SubprocessError) as e:
                self._remove_dir()
                raise KioskError(f"--kiosk: could not start {exe} at nice {self.nice}: {e}") from e
        try:
            rc = self.proc.wait(settle_s)
        except subprocess.TimeoutExpired:
            rc = None
        if rc is not None:
            said = _tail(logfile)
            self.proc = None
            self._remove_dir()
            raise KioskError(f"--kiosk: the browser {exe} exited at once with code {rc}"
                             + (f": {said}" if said else "") + f" (command: {' '.join(argv)})")
        self._watcher = threading.Thread(target=self._watch, args=(self.proc, logfile), name="station-kiosk",
                                         daemon=True)
        self._watcher.start()
        log.info("kiosk: %s on %s, pid %d, nice %d", exe, self.url, self.proc.pid, self.nice)
        return self.proc.pid

    def _watch(self, proc: subprocess.Popen, logfile: Path) -> None:
        rc = proc.wait()
        if not self._stopping.is_set():
            log.error("kiosk: the browser (pid %d) exited with code %s: %s; the station keeps serving %s",
                      proc.pid, rc, _tail(logfile) or "it said nothing", self.url)

    def stop(self, timeout_s: float = STOP_S) -> None:
        """SIGTERM the browser's process group, SIGKILL what is left after ``timeout_s``; remove the profile."""
        self._stopping.set()
        proc, self.proc = self.proc, None
        if proc is not None:
            _signal_group(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            # The browser's helpers (zygotes, renderers) are in its group and may outlive it for a moment.
            while (proc.poll() is None or group_members(proc.pid)) and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.poll() is None or group_members(proc.pid):
                log.warning("kiosk: the browser did not end within %.0f s of SIGTERM; killing it", timeout_s)
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout_s)
        if self._watcher is not None:
            self._watcher.join(timeout_s)
        self._remove_dir()

    def _remove_dir(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has ended already
        os.killpg(pgid, sig)


def _tail(logfile: Path, lines: int = 3) -> str:
    """The last non-empty lines the browser printed, joined (for an error message)."""
    try:
        text = logfile.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join([s.strip() for s in text.splitlines() if s.strip()][-lines:])
