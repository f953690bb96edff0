"""CURVE (protocol/auth.py): keys made 0600 from the start, and a daemon that serves only authorised clients."""

from __future__ import annotations

import os
import shutil
import stat

import pytest
import zmq.auth

from inspector.client.subscriber import ControlClient, Subscriber
from inspector.errors import ConfigError, ProtocolError
from inspector.protocol import auth
from inspector.protocol.auth import generate_keys
from tests.stream.harness import Line, config


def test_secret_keys_are_created_0600_never_chmod_after(tmp_path, monkeypatch):
    """issue 13, 9: the secret file never exists world-readable, even for an instant."""
    monkeypatch.setattr(os, "chmod", lambda *a, **k: pytest.fail("a key file was chmod-ed after it was written"))
    old = os.umask(0)  # the mode must come from the creation itself, not from a kind umask
    try:
        public, secret = generate_keys(tmp_path, "server")
    finally:
        os.umask(old)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and stat.S_IMODE(public.stat().st_mode) == 0o644
    pub, sec = zmq.auth.load_certificate(secret)  # pyzmq's own reader takes them
    assert sec and pub == zmq.auth.load_certificate(public)[0] and auth.load_keypair(secret) == (pub, sec)
    with pytest.raises(ConfigError, match="exists"):
        generate_keys(tmp_path, "server")  # a key pair is never silently replaced


def test_curve_unknown_client_receives_nothing(tmp_path):
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    _, server_secret = generate_keys(keys, "server")
    client_public, client_secret = generate_keys(keys, "client")
    _, intruder_secret = generate_keys(keys, "intruder")
    allowed.mkdir()
    shutil.copy(client_public, allowed)
    server_public = keys / "server.key"
    cfg = config(tmp_path, {"kind": "memory", "width": 64, "height": 48, "frames": 0, "rate_fps": 50},
                 zmq={"curve": {"enabled": True, "server_secret_key": str(server_secret),
                                "authorized_keys": str(allowed)}})
    with Line(cfg, curve=(str(client_secret), str(server_public))) as line:
        intruder = Subscriber(line.pub, line="t1", curve=(str(intruder_secret), str(server_public)))
        plain = Subscriber(line.pub, line="t1")
        got = line.go()
        line.collect(got, 5, until=lambda g: len(g.results) >= 5)
        assert len(got.results) >= 5  # the authorised client is served
        assert intruder.recv(1500) is None and plain.recv(100) is None
        st = line.ctl.request("status")
        assert st["ok"] and st["result"]["security"] == {"curve": True, "exposed": []}
        bad = ControlClient(line.ctl_endpoint, timeout_ms=500, retries=0,
                            curve=(str(intruder_secret), str(server_public)))
        with pytest.raises(ProtocolError, match="no reply"):
            bad.request("status")
        bad.close()
        intruder.close()
        plain.close()


def test_binding_beyond_loopback_without_curve_is_warned_and_shown_in_status(tmp_path, caplog):
    cfg = config(tmp_path, {"kind": "memory", "width": 64, "height": 48, "rate_fps": 20},
                 zmq={"publish": ["tcp://*:0"]})
    with caplog.at_level("WARNING"), Line(cfg) as line:
        line.go()
        st = line.ctl.request("status")["result"]
    assert st["security"] == {"curve": False, "exposed": ["zmq.publish tcp://*:0"]}
    assert any("reachable beyond this machine without authentication" in r.getMessage() for r in caplog.records)
