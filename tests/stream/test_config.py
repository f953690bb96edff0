"""The daemon's config (stream/config.py and preflight.py): defaults, strict errors naming key and file, secure
defaults, the drop policy by source kind, and `inspector run --check` refusing what cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.cli import main
from inspector.errors import ConfigError
from inspector.stream import config as sc
from inspector.stream.config import load_daemon_config
from inspector.stream.frames import POLICIES

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path, text: str | bytes, name: str = "d.yaml"):
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def test_config_defaults_and_relative_paths(tmp_path):
    (tmp_path / "v.avi").write_bytes(b"")
    cfg = load_daemon_config(_write(tmp_path, "product: cable\nsource: {kind: file, uri: v.avi}\n"))
    assert cfg.source.uri == str(tmp_path / "v.avi") and cfg.home == str(tmp_path)
    assert cfg.audit.dir == str(tmp_path / "audit") and cfg.zmq.publish == ("tcp://127.0.0.1:5555",)
    assert cfg.spin is False  # the daemon's onnxruntime threads sleep when idle unless configured


def test_the_example_config_loads_with_every_key_it_documents():
    cfg = load_daemon_config(REPO / "deploy" / "inspector.example.yaml")
    assert cfg.spin is False and cfg.precision == "auto" and cfg.product


@pytest.mark.parametrize("text, words", [
    ("product: cable\nsorce: {}\n", ["sorce", "allowed keys"]),
    ("product: cable\npipeline: {drop_policy: sometimes}\n", ["pipeline.drop_policy", "allowed"]),
    ("product: cable\npipeline: {queue_size: 0}\n", ["pipeline.queue_size", "minimum"]),
    ("product: cable\nsource: {kind: device, uri: cam}\n", ["source.uri", "device index"]),
    ("product: cable\nzmq: {curve: {enabled: true}}\n", ["server_secret_key", "inspector keys"]),
    ("line: 'a/b'\nproduct: cable\n", ["line"]),
    ("source: {kind: memory, width: 8, height: 8}\n", ["product", "required"]),
    ("product: cable\nzmq: {publish: ['localhost:5555']}\n", ["endpoint"]),
    # issue 13, 8: NaN and infinity pass every range check, so they are refused as numbers
    ("product: cable\npipeline: {trigger_timeout_s: .nan}\n", ["pipeline.trigger_timeout_s", "finite"]),
    ("product: cable\npipeline: {trigger_timeout_s: .inf}\n", ["pipeline.trigger_timeout_s", "finite"]),
    ("product: cable\nsource: {stall_timeout_s: -.inf}\n", ["source.stall_timeout_s", "finite"]),
    # '$' matches before a trailing newline: names are matched whole
    ('line: "line1\\n"\nproduct: cable\n', ["line", "'line1\\n'"]),
    ('product: "cable\\n"\n', ["product", "'cable\\n'"]),
    ("product: ../../etc\n", ["product"]),
])
def test_config_errors_name_the_key_and_file(tmp_path, text, words):
    with pytest.raises(ConfigError) as e:
        load_daemon_config(_write(tmp_path, text))
    msg = str(e.value)
    assert "d.yaml" in msg
    for w in words:
        assert w in msg


def test_a_binary_config_file_is_a_clear_error(tmp_path):
    p = _write(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary")
    with pytest.raises(ConfigError, match="not a UTF-8 text file") as e:
        load_daemon_config(p)
    assert "d.yaml" in str(e.value)


@pytest.mark.parametrize("text, words", [
    ("product: cable\npipeline: {trigger_timeout_s: .nan}\n", ["pipeline.trigger_timeout_s", "finite"]),
    ('line: "line1\\n"\nproduct: cable\n', ["line"]),
    ('product: "cable\\n"\n', ["product"]),
    (b"\xff\xfe\x00binary", ["UTF-8"]),
    ("product: cable\nsource: {kind: file, uri: missing.avi}\n", ["source.uri", "missing.avi", "does not exist"]),
    ("product: cable\nsource: {kind: images, uri: nowhere}\n", ["source.uri", "nowhere"]),
    ("product: cable\nsource: {kind: memory, width: 8, height: 8}\nzmq: {curve: {enabled: true, "
     "server_secret_key: k.key_secret, authorized_keys: a}}\n", ["zmq.curve.server_secret_key", "k.key_secret"]),
    ("product: cable\n", ["source.uri", "required"]),
])
def test_run_check_refuses_with_key_and_file_and_no_traceback(tmp_path, capsys, text, words):
    p = _write(tmp_path, text)
    assert main(["run", "--config", str(p), "--check"]) == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("inspector run: error: ") and "d.yaml" in lines[0], err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0]


def test_run_check_shows_the_drop_policy_and_exposure(tmp_path, capsys):
    (tmp_path / "v.avi").write_bytes(b"")
    p = _write(tmp_path, "product: cable\nsource: {kind: file, uri: v.avi}\nzmq: {publish: ['tcp://*:5555']}\n")
    assert main(["run", "--config", str(p), "--check"]) == 0
    out = capsys.readouterr().out
    assert "drop policy in effect: block (auto for a file source)" in out
    assert "WARNING: zmq.publish tcp://*:5555 is reachable beyond this machine" in out and "d.yaml: OK" in out


def test_drop_policies_are_defined_once_and_auto_follows_the_source_kind():
    assert ("auto", *POLICIES) == sc.DROP_POLICIES
    for kind in sc.SOURCE_KINDS:
        expected = "drop_oldest" if kind in sc.LIVE_KINDS else "block"
        assert sc.drop_policy_for("auto", kind) == expected
        assert sc.drop_policy_for("drop_newest", kind) == "drop_newest"  # an explicit choice wins
    assert {"file", "images"} & set(sc.LIVE_KINDS) == set() and "device" in sc.LIVE_KINDS


def test_every_socket_and_the_metrics_port_bind_loopback_by_default(tmp_path):
    cfg = load_daemon_config(_write(tmp_path, "product: cable\nmetrics: {port: 9100}\n"))
    assert all(sc.is_loopback(ep) for ep in (*cfg.zmq.publish, cfg.zmq.control, cfg.metrics.host))
    assert sc.exposure(cfg) == []
    wide = load_daemon_config(_write(tmp_path, "product: cable\nzmq: {publish: ['tcp://*:5555'], control: "
                                     "'tcp://0.0.0.0:5556'}\nmetrics: {port: 9100, host: 0.0.0.0}\n"))
    assert sc.exposure(wide) == ["zmq.publish tcp://*:5555", "zmq.control tcp://0.0.0.0:5556", "metrics 0.0.0.0:9100"]
    for ep, local in (("ipc:///run/x", True), ("tcp://[::1]:5", True), ("tcp://lo:5", True),
                      ("tcp://192.168.1.5:5", False), ("tcp://eth0;127.0.0.1:5", True)):
        assert sc.is_loopback(ep) is local, ep
