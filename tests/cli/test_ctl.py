"""`inspector ctl` (cli/ctl.py): a daemon that does not answer, and argument checks."""

from __future__ import annotations

import socket

from inspector.cli import main


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_ctl_without_daemon_gives_up_clearly(capsys):
    rc = main(["ctl", "--connect", f"tcp://127.0.0.1:{_port()}", "status", "--timeout", "100", "--retries", "1"])
    assert rc == 1 and "no reply" in capsys.readouterr().err


def test_cli_ctl_argument_checks(capsys):
    assert main(["ctl", "--connect", "tcp://127.0.0.1:1", "trigger"]) == 1
    assert "part id" in capsys.readouterr().err
    assert main(["ctl", "--connect", "tcp://127.0.0.1:1", "pause", "x"]) == 1
