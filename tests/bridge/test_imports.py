"""The bridges stay outside the daemon: stream/ imports no bridge, OPC UA or MQTT code; bridge/ only what a
client may (protocol, client, config, errors)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "inspector"


def _imports(folder: Path) -> dict[str, set[str]]:
    out = {}
    for p in folder.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        out[p.name] = names
    return out


def test_the_daemon_imports_no_bridge_code():
    for name, mods in _imports(PKG / "stream").items():
        bad = {m for m in mods if m.split(".")[0] in ("asyncua", "paho") or m.startswith("inspector.bridge")}
        assert not bad, f"stream/{name} imports {bad}"


def test_bridges_import_only_what_a_client_may():
    allowed = ("inspector.bridge", "inspector.protocol", "inspector.client", "inspector.config", "inspector.errors")
    for name, mods in _imports(PKG / "bridge").items():
        bad = {m for m in mods if m.startswith("inspector") and not m.startswith(allowed)}
        assert not bad, f"bridge/{name} imports {bad}"
