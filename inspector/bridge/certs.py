"""OPC UA application certificates for the bridge and its clients (``inspector keys --opcua``).

Self-signed X.509 certificates as OPC 10000-6 asks for them, made by asyncua's own ``cert_gen``: RSA 2048,
SHA-256, the application URI and host names in the subject alternative name, key usage for signing and
encryption, extended key usage server and/or client authentication. ``NAME.der`` is the certificate, ``NAME.pem``
its private key, created with mode 0600 (never readable by others, not even for a moment). Each client
certificate is also copied into ``trusted/``: the folder the server's ``opcua.trusted_clients`` names. A PLC
is given ``server.der`` to trust, its own certificate and key (or it makes its own, whose ``.der`` then goes
into ``trusted/``).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from inspector.errors import ConfigError

URI_PREFIX = "urn:inspector:"


@dataclass(frozen=True)
class CertFiles:
    cert: Path  # DER
    key: Path  # PEM, 0600
    uri: str  # the application URI: a client must announce exactly this one


def _alt_names(uri: str, hosts: list[str]) -> list:
    from cryptography import x509

    names: list = [x509.UniformResourceIdentifier(uri)]
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return names


def _write_private(path: Path, data: bytes) -> None:
    # O_EXCL: an existing key is never overwritten; 0o600 from the first byte, not chmod afterwards.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def make_certificate(out_dir: str | Path, name: str, role: str, hosts: list[str] | None = None,
                     days: int = 730) -> CertFiles:
    """Write ``NAME.der`` and ``NAME.pem`` into ``out_dir`` for ``role`` 'server' or 'client'.

    ``hosts``: DNS names or IP addresses the server is reached by (default: this host's name, localhost,
    127.0.0.1). Refuses to overwrite an existing file.
    """
    from asyncua.crypto import cert_gen
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID

    if role not in ("server", "client"):
        raise ConfigError(f"certificate role must be 'server' or 'client', got {role!r}")
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"certificate name {name!r} must be a plain file name such as 'bridge' or 'plc1'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / f"{name}.der", out / f"{name}.pem"
    for p in (cert_path, key_path):
        if p.exists():
            raise ConfigError(f"{p} exists; remove it first or choose another --out (keys are never overwritten)")
    hosts = hosts or [socket.gethostname(), "localhost", "127.0.0.1"]
    uri = f"{URI_PREFIX}{name}"
    usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if role == "server" else \
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(key, name, {"organizationName": "inspector"}, _alt_names(uri, hosts),
                                                         usage, days=days)
    _write_private(key_path, cert_gen.dump_private_key_as_pem(key))
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    if role == "client":
        trusted = out / "trusted"
        trusted.mkdir(exist_ok=True)
        (trusted / cert_path.name).write_bytes(cert_path.read_bytes())
    return CertFiles(cert_path, key_path, uri)


def application_uri(cert_file: str | Path) -> str:
    """The URI in a certificate's subject alternative name (the server announces it as its ApplicationUri)."""
    from cryptography import x509

    path = Path(cert_file)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read certificate {path}: {e.strerror} (make one with `inspector keys --opcua`)") \
            from e
    try:
        cert = x509.load_der_x509_certificate(data) if not data.startswith(b"-----") else \
            x509.load_pem_x509_certificate(data)
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier)
    except (ValueError, x509.ExtensionNotFound) as e:
        raise ConfigError(f"{path} is not an OPC UA application certificate with a URI: {e}") from e
    if not uris:
        raise ConfigError(f"{path} has no application URI in its subject alternative name")
    return uris[0]


def check_private_key(path: str | Path) -> None:
    """Refuse a private key file that others can read."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"private key {p} does not exist (make one with `inspector keys --opcua`)")
    if p.stat().st_mode & 0o077:
        raise ConfigError(f"private key {p} is readable by others (mode {p.stat().st_mode & 0o777:o}); "
                          f"chmod 600 {p}")
