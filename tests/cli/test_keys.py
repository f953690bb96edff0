"""`inspector keys` (cli/keys.py): key pairs with the secret 0600."""

from __future__ import annotations

from inspector.cli import main


def test_cli_keys(tmp_path, capsys):
    assert main(["keys", "--out", str(tmp_path), "--name", "server", "--name", "plc1"]) == 0
    for n in ("server", "plc1"):
        assert (tmp_path / f"{n}.key").is_file() and (tmp_path / f"{n}.key_secret").is_file()
        assert oct((tmp_path / f"{n}.key_secret").stat().st_mode & 0o777) == "0o600"
