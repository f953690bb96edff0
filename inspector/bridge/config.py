"""The bridge file: one YAML file, one or more bridges, loaded strictly into frozen dataclasses.

``deploy/configs/bridge-opcua.yaml`` and ``bridge-mqtt.yaml`` document every key. An unknown key, a wrong type or
a value out of range stops ``inspector bridge`` at start with the key, the file and what is allowed (through
:func:`inspector.config.load_dataclass`). Relative paths (certificates, keys, the buffer file) are resolved
against the file's directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from inspector.config import load_dataclass, read_yaml
from inspector.errors import ConfigError

KINDS = ("opcua", "mqtt")


@dataclass(frozen=True)
class CurveClientConfig:
    """CURVE keys to talk to a daemon with ``zmq.curve.enabled`` (files written by ``inspector keys``)."""

    client_secret_key: str = ""  # this bridge's NAME.key_secret ("" with the other one "": no CURVE)
    server_public_key: str = ""  # the daemon's server.key

    @property
    def enabled(self) -> bool:
        return bool(self.client_secret_key)

    def validate(self, source: str) -> None:
        if bool(self.client_secret_key) != bool(self.server_public_key):
            raise ConfigError(f"{source}: 'curve' needs both 'client_secret_key' and 'server_public_key'")


@dataclass(frozen=True)
class LineConfig:
    """One daemon (one line): where its sockets are and how often it sends heartbeats."""

    line: str = ""
    publish: str = "tcp://127.0.0.1:5555"
    control: str = "tcp://127.0.0.1:5556"
    # The daemon's zmq.heartbeat_ms. Silence for 1.5 of these means the daemon is gone (state Fault).
    heartbeat_ms: int = field(default=1000, metadata={"min": 10, "max": 3600000})
    # Lazy Pirate on the control socket for triggers, pause and resume: timeout per attempt, re-sends.
    request_timeout_ms: int = field(default=500, metadata={"min": 10, "max": 600000})
    request_retries: int = field(default=2, metadata={"min": 0, "max": 100})
    # switch_product loads an engine: one attempt with this timeout.
    switch_timeout_ms: int = field(default=30000, metadata={"min": 100, "max": 600000})
    curve: CurveClientConfig = field(default_factory=CurveClientConfig)

    def validate(self, source: str) -> None:
        if not self.line:
            raise ConfigError(f"{source}: every entry of 'lines' needs 'line' (the daemon's line name)")
        for key, ep in (("publish", self.publish), ("control", self.control)):
            if "://" not in ep:
                raise ConfigError(f"{source}: '{key}' = {ep!r} must be a ZeroMQ endpoint like 'tcp://10.0.0.5:5555'")


@dataclass(frozen=True)
class OpcuaConfig:
    """The OPC UA server: one object per line, the part handshake, security."""

    endpoint: str = "opc.tcp://127.0.0.1:4840/inspector/"
    namespace: str = "urn:inspector:bridge"
    # sign_and_encrypt: only Basic256Sha256 SignAndEncrypt, client certificates must be trusted.
    # none: no security at all; allowed only with anonymous: true.
    security: str = field(default="sign_and_encrypt", metadata={"choices": ("sign_and_encrypt", "none")})
    # Accept the anonymous user token. Without it, a session must present an X509 user certificate that is
    # also in trusted_clients (usually the client's own application certificate).
    anonymous: bool = False
    certificate: str = ""  # the server's certificate (DER), from `inspector keys --opcua`
    private_key: str = ""  # its private key (PEM)
    trusted_clients: str = ""  # a folder of trusted client certificates (.der or .pem)
    # Reject by default: a part whose result is not there this long after its trigger gets TIMEOUT / ERROR.
    deadline_ms: float = field(default=200.0, metadata={"min": 1.0, "max": 600000.0})
    # How long the result of a timed-out part may still come (it is then counted as late and dropped).
    late_window_s: float = field(default=10.0, metadata={"min": 0.1, "max": 3600.0})

    def validate(self, source: str) -> None:
        if not self.endpoint.startswith("opc.tcp://"):
            raise ConfigError(f"{source}: 'opcua.endpoint' = {self.endpoint!r} must start with opc.tcp://")
        if self.security == "none" and not self.anonymous:
            raise ConfigError(f"{source}: 'opcua.security: none' lets anyone who reaches the port trigger parts and "
                              "switch products; it needs 'opcua.anonymous: true' to say so")

    def check_files(self, source: str) -> None:
        """The files security needs are named (called for bridges of kind opcua)."""
        if self.security == "sign_and_encrypt" and not (self.certificate and self.private_key and
                                                          self.trusted_clients):
            raise ConfigError(f"{source}: 'opcua.security: sign_and_encrypt' needs 'opcua.certificate', "
                              "'opcua.private_key' and 'opcua.trusted_clients' (make them with "
                              "`inspector keys --opcua --out DIR`)")


@dataclass(frozen=True)
class TlsConfig:
    enabled: bool = False
    ca_certs: str = ""  # CA bundle that signed the broker's certificate ("" = the system's)
    certfile: str = ""  # client certificate, for brokers that require one
    keyfile: str = ""
    insecure: bool = False  # skip the broker host name check (test brokers only)


@dataclass(frozen=True)
class BufferConfig:
    """Store-and-forward: what waits while the broker is unreachable."""

    max_messages: int = field(default=10000, metadata={"min": 2, "max": 10000000})
    path: str = ""  # an SQLite file that keeps the waiting messages across restarts ("" = memory only)
    max_inflight: int = field(default=20, metadata={"min": 1, "max": 65535})
    # Overflow raises an alarm (log + MQTT) at most this often, with the count since the last one.
    alarm_interval_s: float = field(default=10.0, metadata={"min": 0.0, "max": 86400.0})

    def validate(self, source: str) -> None:
        if self.max_inflight >= self.max_messages:
            raise ConfigError(f"{source}: 'mqtt.buffer.max_inflight' ({self.max_inflight}) must be below "
                              f"'mqtt.buffer.max_messages' ({self.max_messages})")


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = field(default=1883, metadata={"min": 1, "max": 65535})
    client_id: str = ""  # "" = inspector-<bridge name>
    topic_prefix: str = "inspector"
    keepalive_s: int = field(default=30, metadata={"min": 5, "max": 65535})
    reconnect_min_s: float = field(default=0.5, metadata={"min": 0.1, "max": 3600.0})
    reconnect_max_s: float = field(default=2.0, metadata={"min": 0.1, "max": 3600.0})
    username: str = ""
    password_file: str = ""  # the password, in a file that is not world-readable
    tls: TlsConfig = field(default_factory=TlsConfig)
    masks: bool = False  # also publish defect masks (PNG) on <prefix>/<line>/mask/<frame_id>
    heartbeats: bool = True
    buffer: BufferConfig = field(default_factory=BufferConfig)

    def validate(self, source: str) -> None:
        if not self.topic_prefix or any(c in self.topic_prefix for c in "#+") or self.topic_prefix.endswith("/"):
            raise ConfigError(f"{source}: 'mqtt.topic_prefix' = {self.topic_prefix!r} must be a topic without "
                              "wildcards (#, +) or a trailing '/'")
        if self.password_file and not self.username:
            raise ConfigError(f"{source}: 'mqtt.password_file' needs 'mqtt.username'")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ConfigError(f"{source}: 'mqtt.reconnect_max_s' must be >= 'mqtt.reconnect_min_s'")


@dataclass(frozen=True)
class BridgeConfig:
    name: str = ""
    kind: str = field(default="opcua", metadata={"choices": KINDS})
    lines: tuple[LineConfig, ...] = ()
    opcua: OpcuaConfig = field(default_factory=OpcuaConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)

    def validate(self, source: str) -> None:
        if not self.name:
            raise ConfigError(f"{source}: every bridge needs a 'name'")
        if not self.lines:
            raise ConfigError(f"{source}: bridge {self.name!r} needs at least one entry in 'lines'")
        names = [x.line for x in self.lines]
        if len(set(names)) != len(names):
            raise ConfigError(f"{source}: bridge {self.name!r} lists a line twice: {names}")
        if self.kind == "opcua":
            self.opcua.check_files(source)
        other, default = ("mqtt", MqttConfig()) if self.kind == "opcua" else ("opcua", OpcuaConfig())
        if getattr(self, other) != default:
            raise ConfigError(f"{source}: bridge {self.name!r} is kind {self.kind!r} but has '{other}' settings")

    @property
    def settings(self) -> OpcuaConfig | MqttConfig:
        """The section of this bridge's kind."""
        return self.opcua if self.kind == "opcua" else self.mqtt


@dataclass(frozen=True)
class BridgeFile:
    bridges: tuple[BridgeConfig, ...] = ()
    log_level: str = field(default="info", metadata={"choices": ("debug", "info", "warning", "error")})

    def validate(self, source: str) -> None:
        if not self.bridges:
            raise ConfigError(f"{source}: 'bridges' needs at least one bridge")
        names = [b.name for b in self.bridges]
        if len(set(names)) != len(names):
            raise ConfigError(f"{source}: bridge names must be unique, got {names}")


def _resolve(base: Path, p: str) -> str:
    return str((base / p).resolve()) if p and not Path(p).is_absolute() else p


def _resolve_bridge(b: BridgeConfig, base: Path) -> BridgeConfig:
    r = dataclasses.replace
    lines = tuple(r(x, curve=r(x.curve, client_secret_key=_resolve(base, x.curve.client_secret_key),
                               server_public_key=_resolve(base, x.curve.server_public_key))) for x in b.lines)
    o, m = b.opcua, b.mqtt
    opcua = r(o, certificate=_resolve(base, o.certificate), private_key=_resolve(base, o.private_key),
              trusted_clients=_resolve(base, o.trusted_clients))
    tls = r(m.tls, ca_certs=_resolve(base, m.tls.ca_certs), certfile=_resolve(base, m.tls.certfile),
            keyfile=_resolve(base, m.tls.keyfile))
    mqtt = r(m, password_file=_resolve(base, m.password_file), tls=tls,
             buffer=r(m.buffer, path=_resolve(base, m.buffer.path)))
    return r(b, lines=lines, opcua=opcua, mqtt=mqtt)


def load_bridge_config(path: str | Path) -> BridgeFile:
    """Read and validate a bridge file; relative paths become absolute against its directory."""
    path = Path(path)
    cfg = load_dataclass(BridgeFile, read_yaml(path), str(path))
    base = path.resolve().parent
    return dataclasses.replace(cfg, bridges=tuple(_resolve_bridge(b, base) for b in cfg.bridges))
