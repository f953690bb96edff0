"""A real Mosquitto broker for the tests: its own config file, a free loopback port, kill and restart.

Debian's ``mosquitto`` package (``make test`` installs it as root with apt-get when /usr/sbin/mosquitto is
missing); without it the MQTT tests skip with that reason. Persistence is on with a 1 s autosave, so a
subscriber's persistent session (clean_session=False) survives the broker being killed and restarted, as it
would for a real MES client.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def require_mosquitto() -> str:
    if not Path(MOSQUITTO).is_file():
        pytest.skip("the MQTT tests need a Mosquitto broker: apt-get install mosquitto (make test does it as root)")
    return MOSQUITTO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """``start()`` / ``kill()`` (SIGKILL, a crash) / ``stop()`` (SIGTERM); the port stays the same."""

    def __init__(self, folder: Path, port: int | None = None, extra: str = "") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            # Run as root, mosquitto drops to user 'mosquitto', who cannot read pytest's 0700 folders: stay us.
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            f"listener {self.port} 127.0.0.1\n"
            f"persistence true\npersistence_location {folder}/\nautosave_interval 1\n"
            f"log_dest file {folder}/mosquitto.log\nlog_type error\nlog_type warning\nlog_type notice\n"
            + (extra or "allow_anonymous true\n"))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        self.proc = subprocess.Popen([require_mosquitto(), "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=(self.folder / "stderr.log").open("ab"))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}; see {self.folder}/mosquitto.log")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise TimeoutError(f"mosquitto did not listen on {self.port} within {timeout_s} s")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
