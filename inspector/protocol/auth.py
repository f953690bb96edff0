"""Optional CURVE encryption and client authentication with pyzmq's own ``zmq.auth``.

The daemon holds a server key pair; clients hold their own pairs. The server accepts only clients whose
public key file is in the ``authorized_keys`` directory (``ThreadAuthenticator.configure_curve``), and a
client must know the server's public key. A client with an unknown key completes no handshake and
receives nothing. ``inspector keys`` makes the key files (``NAME.key`` public, ``NAME.key_secret`` secret).
"""

from __future__ import annotations

import logging
import os
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


def generate_keys(out_dir: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` (public) and ``NAME.key_secret`` (secret, mode 0600) into ``out_dir``."""
    require_curve()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    public, secret = (Path(p) for p in zmq.auth.create_certificates(out, name))
    os.chmod(secret, 0o600)
    return public, secret


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
