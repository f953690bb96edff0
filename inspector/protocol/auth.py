"""Optional CURVE encryption and client authentication with pyzmq's own ``zmq.auth``.

The daemon holds a server key pair; clients hold their own pairs. The server accepts only clients whose
public key file is in the ``authorized_keys`` directory (``ThreadAuthenticator.configure_curve``), and a
client must know the server's public key. A client with an unknown key completes no handshake and
receives nothing. ``inspector keys`` makes the key files (``NAME.key`` public, ``NAME.key_secret`` secret).
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from inspector.errors import ConfigError

log = logging.getLogger(__name__)


def require_curve() -> None:
    if not zmq.has("curve"):
        raise ConfigError("this libzmq has no CURVE support (zmq.has('curve') is false); install a pyzmq wheel "
                          "with libsodium or disable zmq.curve")


KEY_FILE = """\
#   ****  {kind} CURVE key for inspector (zmq.auth format), made {made}  ****
#   {note}
metadata
curve
    public-key = "{public}"
{secret}"""


def _write_key(path: Path, text: str, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (os.open), so a secret key is never readable by others,
    not even for an instant; an existing file is refused rather than overwritten."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def generate_keys(out_dir: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` (public, 0644) and ``NAME.key_secret`` (secret, created 0600) into ``out_dir``.

    The files are in pyzmq's ``zmq.auth`` certificate format (``zmq.auth.load_certificate`` reads them).
    """
    require_curve()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    public, secret = (k.decode() for k in zmq.curve_keypair())
    made = datetime.now(UTC).isoformat(timespec="seconds")
    pub_path, sec_path = out / f"{name}.key", out / f"{name}.key_secret"
    for p in (pub_path, sec_path):
        if p.exists():
            raise ConfigError(f"{p} exists; remove it first to make a new key pair named {name!r}")
    _write_key(sec_path, KEY_FILE.format(kind="SECRET", made=made, public=public,
                                         note="keep private: whoever holds it can act as this peer",
                                         secret=f'    secret-key = "{secret}"\n'), 0o600)
    _write_key(pub_path, KEY_FILE.format(kind="public", made=made, public=public, note="may be shared",
                                         secret=""), 0o644)
    return pub_path, sec_path


def load_keypair(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` file; ConfigError when it has no secret key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"CURVE key file {path} does not exist (make one with `inspector keys`)")
    public, secret = zmq.auth.load_certificate(path)
    if not secret:
        raise ConfigError(f"{path} holds no secret key; give the NAME.key_secret file, not NAME.key")
    return public, secret


def load_public(path: str | Path) -> bytes:
    """The public key from a ``.key`` or ``.key_secret`` file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"CURVE public key file {path} does not exist")
    return zmq.auth.load_certificate(path)[0]


def start_authenticator(ctx: zmq.Context, authorized_keys: str | Path) -> ThreadAuthenticator:
    """Start the ZAP handler that admits only the client keys found in ``authorized_keys``."""
    require_curve()
    d = Path(authorized_keys)
    if not d.is_dir():
        raise ConfigError(f"zmq.curve.authorized_keys {d} is not a directory of client public keys")
    n = len(list(d.glob("*.key")))
    if n == 0:
        log.warning("no client keys (*.key) in %s: every CURVE client will be refused", d)
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(d))
    log.info("CURVE authentication on: %d authorised client key(s) in %s", n, d)
    return auth


def make_server(sock: zmq.Socket, server_secret_file: str | Path) -> None:
    """Turn ``sock`` into a CURVE server (before bind)."""
    public, secret = load_keypair(server_secret_file)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True


def make_client(sock: zmq.Socket, client_secret_file: str | Path, server_public_file: str | Path) -> None:
    """Turn ``sock`` into a CURVE client of the server whose public key is given (before connect)."""
    public, secret = load_keypair(client_secret_file)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = load_public(server_public_file)
