"""One station process: the hub (ZeroMQ), the web application and its uvicorn server, started and stopped together.

The server runs on its own thread with a socket bound before it starts, so the caller knows the URL (port 0
picks a free one) and the CLI, the demo and the tests share one way of running it. With ``kiosk`` configured the
station then starts the line PC's browser on its page (:mod:`inspector.station.kiosk`) and stops it first when it
stops; a browser that cannot start is logged and kept in ``kiosk_error``, and the page is served all the same.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

from inspector.errors import ConfigError, InspectorError
from inspector.station.app import StationApp, create_app
from inspector.station.config import LOOPBACK, StationConfig, host_port, load_tokens
from inspector.station.hub import Hub
from inspector.station.kiosk import Kiosk
from inspector.station.state import StationState

log = logging.getLogger(__name__)


def bind_socket(bind: str) -> socket.socket:
    """A listening TCP socket on ``host:port``; ConfigError naming the address when it cannot be had."""
    host, port = host_port(bind)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"the station cannot listen on {bind}: {e.strerror}") from e
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def _http_url(host: str, port: int) -> str:
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def _local(host: str) -> str:
    """The address a browser on this machine reaches a socket bound to ``host`` by (wildcard -> loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


class Station:
    """``start()`` then ``url``; ``stop()`` closes the web server and the sockets to the daemons."""

    def __init__(self, cfg: StationConfig, tokens: dict[str, str] | None = None) -> None:
        self.cfg = cfg
        self.tokens = load_tokens(cfg) if tokens is None else tokens
        self.state = StationState(cfg.gallery, cfg.chart_points, cfg.events, cfg.keep_rejects)
        self.hub: Hub | None = None
        self.app: StationApp | None = None
        self.server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.kiosk: Kiosk | None = None
        self.kiosk_error = ""

    def start(self, timeout_s: float = 10.0) -> str:
        host, _ = host_port(self.cfg.bind)
        if host not in LOOPBACK:
            log.warning("the station listens on %s: reachable from the network over plain HTTP; viewing needs no "
                        "token, writing does", self.cfg.bind)
        if not self.tokens:
            log.warning("no operator token (set %s or tokens_file): the station is read-only", "INSPECTOR_STATION_TOKEN")
        sock = bind_socket(self.cfg.bind)
        self.hub = Hub(self.cfg, self.state)
        self.hub.start()
        self.app = StationApp(self.cfg, self.state, self.hub, self.tokens)
        config = uvicorn.Config(create_app(self.app), log_level="warning", access_log=False, lifespan="off",
                                ws_max_size=64 * 1024, timeout_graceful_shutdown=2,
                                # No permessage-deflate: most bytes sent are JPEGs, which do not compress, and
                                # deflating them (and inflating in the browser) was a fifth of the station's CPU.
                                ws_per_message_deflate=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name="station-web",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise InspectorError(f"the station's web server did not start on {self.cfg.bind}")
            time.sleep(0.02)
        h, port = sock.getsockname()[:2]
        self.url = _http_url(h, port)
        if self.cfg.kiosk:
            self._start_kiosk(_local(h), port)
        return self.url

    def _start_kiosk(self, host: str, port: int) -> None:
        """The browser on this station's page; if it cannot start, an error logged and kept, the page served on."""
        kiosk = Kiosk(_http_url(host, port), self.cfg.browser_nice, self.cfg.browser, self.cfg.browser_args)
        try:
            kiosk.start()
        except InspectorError as e:
            self.kiosk_error = str(e)
            log.error("%s; the station keeps serving %s", e, self.url)
            return
        self.kiosk = kiosk

    def stop(self) -> None:
        if self.kiosk is not None:  # first: a browser left running would only retry its WebSocket
            self.kiosk.stop()
            self.kiosk = None
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10.0)
        if self.hub is not None:
            self.hub.stop()

    def __enter__(self) -> Station:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
