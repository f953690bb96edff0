"""The bridge file: the shipped examples validate, bad keys and contradictions are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.bridge.config import load_bridge_config
from inspector.cli import main
from inspector.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["bridge-opcua.yaml", "bridge-mqtt.yaml"])
def test_shipped_examples_check(name, capsys):
    path = REPO / "deploy" / "configs" / name
    assert main(["bridge", "--config", str(path), "--check"]) == 0
    assert f"{path}: OK" in capsys.readouterr().out
    cfg = load_bridge_config(path)
    assert cfg.bridges[0].kind in name and cfg.bridges[0].lines[0].line == "line1"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "b.yaml"
    p.write_text(text)
    return p


OPCUA = """bridges:
  - name: plc
    kind: opcua
    lines: [{line: l1}]
    opcua: {certificate: c/s.der, private_key: c/s.pem, trusted_clients: c/trusted%s}
"""


def test_relative_paths_resolve_against_the_file(tmp_path):
    cfg = load_bridge_config(_write(tmp_path, OPCUA % ""))
    o = cfg.bridges[0].opcua
    assert o.certificate == str(tmp_path / "c" / "s.der") and o.trusted_clients == str(tmp_path / "c" / "trusted")
    assert o.endpoint.startswith("opc.tcp://127.0.0.1:")  # loopback by default


@pytest.mark.parametrize("text, message", [
    (OPCUA % ", deadline: 3", "unknown key(s) ['bridges[0].opcua.deadline']"),
    (OPCUA % ", deadline_ms: 0", "'bridges[0].opcua.deadline_ms' = 0.0 is below the minimum 1.0"),
    (OPCUA % ", security: plain", "allowed: ['sign_and_encrypt', 'none']"),
    (OPCUA % ", security: none", "needs 'opcua.anonymous: true'"),
    ("bridges: [{name: p, kind: opcua, lines: [{line: l1}], opcua: {}}]", "inspector keys --opcua"),
    ("bridges: [{name: p, kind: opcua, lines: [{line: l1}]}]", "inspector keys --opcua"),
    ("bridges: [{name: p, kind: mqtt, lines: [{line: l1}], opcua: {deadline_ms: 50}}]", "has 'opcua' settings"),
    ("bridges: [{name: p, kind: mqtt, lines: [{line: l1, curve: {client_secret_key: k}}]}]", "needs both"),
    ("bridges: [{name: p, kind: mqtt, lines: [{line: l1}, {line: l1}]}]", "lists a line twice"),
    ("bridges: [{name: p, kind: mqtt, lines: []}]", "at least one entry in 'lines'"),
    ("bridges: [{name: p, kind: mqtt, lines: [{publish: 'tcp://x:1'}]}]", "needs 'line'"),
    ("bridges: [{name: p, kind: mqtt, lines: [{line: l, control: 'x:1'}]}]", "must be a ZeroMQ endpoint"),
    ("bridges: [{name: p, kind: mqtt, lines: [{line: l}], mqtt: {topic_prefix: 'a/#'}}]", "without wildcards"),
    ("bridges: [{name: p, kind: mqtt, lines: [{line: l}], mqtt: {buffer: {max_messages: 5, max_inflight: 5}}}]",
     "must be below"),
    ("bridges: [{name: p, kind: mqtt, lines: [{line: l}], mqtt: {password_file: pw}}]", "needs 'mqtt.username'"),
    ("bridges: [{name: p, kind: fieldbus, lines: [{line: l}]}]", "allowed: ['opcua', 'mqtt']"),
    ("bridges: []", "at least one bridge"),
    ("bridges: [{name: p, kind: mqtt, lines: [{line: l}]}, {name: p, kind: mqtt, lines: [{line: m}]}]", "unique"),
])
def test_bad_files_are_refused_by_name(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_bridge_config(path)
    assert message in str(e.value) and str(path) in str(e.value)
