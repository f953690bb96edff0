"""OPC UA certificates: private keys 0600 from creation, never overwritten, URIs and usages as OPC UA wants."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from inspector.bridge.certs import application_uri, check_private_key, make_certificate
from inspector.cli import main
from inspector.errors import ConfigError


def test_server_and_client_certificates(tmp_path):
    s = make_certificate(tmp_path, "bridge", "server", ["line-pc", "10.0.0.5"])
    c = make_certificate(tmp_path, "plc1", "client")
    assert s.key.stat().st_mode & 0o777 == 0o600 and c.key.stat().st_mode & 0o777 == 0o600
    assert application_uri(s.cert) == s.uri == "urn:inspector:bridge"
    cert = x509.load_der_x509_certificate(s.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "line-pc" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and ku.data_encipherment
    assert cert.public_key().key_size == 2048
    assert (tmp_path / "trusted" / "plc1.der").read_bytes() == c.cert.read_bytes()
    assert not (tmp_path / "trusted" / "bridge.der").exists()  # the server does not trust itself as a client
    check_private_key(s.key)


def test_keys_are_never_overwritten_and_loose_keys_are_refused(tmp_path):
    s = make_certificate(tmp_path, "bridge", "server")
    before = s.key.read_bytes()
    with pytest.raises(ConfigError, match="exists"):
        make_certificate(tmp_path, "bridge", "server")
    assert s.key.read_bytes() == before
    s.key.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        check_private_key(s.key)
    with pytest.raises(ConfigError, match="plain file name"):
        make_certificate(tmp_path, "../x", "client")
    with pytest.raises(ConfigError, match="cannot read certificate"):
        application_uri(tmp_path / "missing.der")


def test_keys_opcua(tmp_path, capsys):
    assert main(["keys", "--opcua", "--out", str(tmp_path), "--name", "bridge", "--name", "plc1", "--name", "plc2"]) == 0
    out = capsys.readouterr().out
    assert "urn:inspector:plc2" in out and "urn:inspector:bridge" in out
    assert sorted(p.name for p in (tmp_path / "trusted").iterdir()) == ["plc1.der", "plc2.der"]
    assert main(["keys", "--opcua", "--out", str(tmp_path)]) == 1  # bridge.der exists: refused, exit 1
