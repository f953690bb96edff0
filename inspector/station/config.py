"""The station's configuration (an optional YAML file, loaded strictly; command-line flags override it) and its
operator tokens.

Tokens: ``INSPECTOR_STATION_TOKEN`` (its operator named by ``INSPECTOR_STATION_USER``, default "operator")
and/or ``tokens_file``: one ``name:token`` per line (``#`` comments), readable by its owner only. Without any
token the station is read-only. Tokens are compared in constant time and never reach the page.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from inspector.config import load_dataclass, read_yaml
from inspector.errors import ConfigError

TOKEN_ENV = "INSPECTOR_STATION_TOKEN"
USER_ENV = "INSPECTOR_STATION_USER"
MIN_TOKEN = 16
LOOPBACK = ("127.0.0.1", "::1", "localhost")
DEFAULT_BROWSER_NICE = 19  # --kiosk: the browser's nice (the lowest priority there is)


@dataclass(frozen=True)
class StationConfig:
    """What `inspector station` needs. Endpoints are the daemons' PUB (connect) and ROUTER (control) sockets."""

    connect: tuple[str, ...] = ()
    control: tuple[str, ...] = ()
    home: str = ""  # where reviews/ and calibration/ live ('' = $INSPECTOR_HOME, else the current directory)
    bind: str = "127.0.0.1:8080"  # host:port of the web page; loopback unless configured otherwise
    tokens_file: str = ""
    gallery: int = field(default=24, metadata={"min": 1, "max": 500})  # rejects shown per line
    # rejects kept reviewable per line (their frames are in memory: about 3 MB each for a 1080p PNG)
    keep_rejects: int = field(default=64, metadata={"min": 1, "max": 5000})
    chart_points: int = field(default=300, metadata={"min": 10, "max": 10000})  # scores in the strip chart
    events: int = field(default=100, metadata={"min": 1, "max": 10000})  # events kept per line
    control_timeout_ms: int = field(default=2500, metadata={"min": 100, "max": 600000})
    title: str = "inspector"
    curve_secret: str = ""  # CURVE: this client's .key_secret
    curve_server: str = ""  # CURVE: the daemon's public server.key
    # `inspector station` lowers its own priority by this much (Linux nice), so on the line PC it only takes
    # CPU the daemon leaves over.
    nice: int = field(default=10, metadata={"min": 0, "max": 19})
    # --kiosk: once the page is served, the station starts the line PC's browser on it (app/kiosk mode, a private
    # profile) at nice `browser_nice` (19: it renders only in CPU time inspection leaves; never above the
    # station's own priority, and it cannot raise its priority again), and stops it when the station stops.
    # `browser` names the executable ('' = the first of chromium, chromium-browser, google-chrome on PATH);
    # `browser_args` are added to its command line (e.g. ["--headless=new", "--no-sandbox", "--disable-gpu"]
    # where there is no screen).
    kiosk: bool = False
    browser: str = ""
    browser_nice: int = field(default=DEFAULT_BROWSER_NICE, metadata={"min": 0, "max": 19})
    browser_args: tuple[str, ...] = ()

    def validate(self, source: str) -> None:
        if not self.connect:
            raise ConfigError(f"{source}: the station needs at least one daemon PUB endpoint "
                              "(--connect tcp://127.0.0.1:5555 or 'connect: [...]')")
        for ep in (*self.connect, *self.control):
            if "://" not in ep:
                raise ConfigError(f"{source}: endpoint {ep!r} must look like 'tcp://127.0.0.1:5555'")
        host_port(self.bind, source)
        if bool(self.curve_secret) != bool(self.curve_server):
            raise ConfigError(f"{source}: CURVE needs both 'curve_secret' and 'curve_server'")

    @property
    def curve(self) -> tuple[str, str] | None:
        return (self.curve_secret, self.curve_server) if self.curve_secret else None


def host_port(bind: str, source: str = "--bind") -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6) as (host, port); ConfigError otherwise."""
    host, sep, port = bind.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{source}: bind address {bind!r} must be host:port such as 127.0.0.1:8080")
    return host, int(port)


def load_station_config(path: str | Path | None, **overrides: object) -> StationConfig:
    """The YAML file (or defaults) with non-empty ``overrides`` (command-line flags) applied, validated."""
    data = dict(read_yaml(Path(path))) if path else {}
    for key, value in overrides.items():
        if value not in (None, (), [], ""):
            data[key] = list(value) if isinstance(value, tuple | list) else value
    return load_dataclass(StationConfig, data, str(path) if path else "command line")


def load_tokens(cfg: StationConfig, env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """token -> operator name, from the environment and ``tokens_file``; ConfigError for a weak or exposed one."""
    tokens: dict[str, str] = {}
    if env.get(TOKEN_ENV):
        tokens[_checked(env[TOKEN_ENV], TOKEN_ENV)] = env.get(USER_ENV) or "operator"
    if cfg.tokens_file:
        path = Path(cfg.tokens_file)
        try:
            mode = path.stat().st_mode
        except OSError as e:
            raise ConfigError(f"tokens_file {path}: {e.strerror}") from e
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"tokens_file {path} is readable by others (mode {stat.S_IMODE(mode):o}); "
                              f"`chmod 600 {path}`")
        for i, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            name, sep, token = (s.strip() for s in line.partition(":"))
            if not sep or not name:
                raise ConfigError(f"{path}:{i}: expected 'name:token'")
            tokens[_checked(token, f"{path}:{i}")] = name
    return tokens


def _checked(token: str, where: str) -> str:
    if len(token) < MIN_TOKEN:
        raise ConfigError(f"{where}: an operator token needs at least {MIN_TOKEN} characters "
                          "(e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(24))'`)")
    return token
