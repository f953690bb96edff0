"""``inspector bridge``: run the bridges of one file until SIGTERM/SIGINT.

OPC UA bridges run on one asyncio loop (the main thread's); MQTT bridges on paho's network thread and their
links' threads. A bridge that cannot start (a port in use, a missing certificate) stops the whole process with
the reason, so systemd shows it instead of a half-working bridge. :class:`BridgeThread` runs the same in a
thread, for tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
from typing import Any

from inspector.bridge.config import BridgeFile

log = logging.getLogger(__name__)


def _make(cfg: Any) -> Any:
    if cfg.kind == "opcua":
        from inspector.bridge.opcua import OpcuaBridge

        return OpcuaBridge(cfg)
    from inspector.bridge.mqtt import MqttBridge

    return MqttBridge(cfg)


def settle_heap() -> None:
    """Collect once, then freeze what is alive out of the garbage collector's sight. An OPC UA bridge holds
    about 485,000 tracked objects (asyncua's address space); a full collection walked them all in 180-200 ms
    with the loop stopped, as long as a part's default deadline, and one comes whenever enough new objects have
    survived. Frozen, a full collection takes under 0.1 ms (measured on this repo's 2-core machine)."""
    gc.collect()
    gc.freeze()


class Bridges:
    """All bridges of a file. ``await run(stop)`` starts them, waits for ``stop``, stops them."""

    def __init__(self, cfg: BridgeFile, settle: bool = False) -> None:
        """``settle``: :func:`settle_heap` once every bridge has started (the verb's own process; not in a
        test's, whose heap it would freeze)."""
        self.cfg, self.settle = cfg, settle
        self.bridges: dict[str, Any] = {}
        self.ready = threading.Event()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            for b in self.cfg.bridges:
                bridge = _make(b)
                self.bridges[b.name] = bridge
                await bridge.start()
            if self.settle:
                settle_heap()
            self.ready.set()
            await stop.wait()
        finally:
            for name, bridge in reversed(list(self.bridges.items())):
                try:
                    await bridge.stop()
                except Exception:  # noqa: BLE001 - stop the others anyway
                    log.exception("stopping bridge %s failed", name)


def run_bridges(cfg: BridgeFile) -> int:
    """The verb's body: run until SIGTERM or SIGINT, then stop every bridge; 0 on a clean stop."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Bridges(cfg, settle=True).run(stop)

    asyncio.run(main())
    return 0


class BridgeThread:
    """The bridges of ``cfg`` on their own loop in a thread; ``stop()`` ends them. Raises what start raised."""

    def __init__(self, cfg: BridgeFile, timeout_s: float = 30.0) -> None:
        self.bridges = Bridges(cfg)
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bridges", daemon=True)
        self.thread.start()
        self._started.wait(timeout_s)
        while not self.bridges.ready.wait(0.05):
            if not self.thread.is_alive():
                raise RuntimeError(f"bridges did not start: {self.error!r}") from self.error

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._started.set()
            await self.bridges.run(self._stop)

        try:
            asyncio.run(main())
        except BaseException as e:  # noqa: BLE001 - reported to the caller
            self.error = e
            self._started.set()

    def get(self, name: str) -> Any:
        return self.bridges.bridges[name]

    def call(self, coro: Any, timeout_s: float = 10.0) -> Any:
        """Run a coroutine on the bridges' loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def stop(self, timeout_s: float = 20.0) -> None:
        if self._loop is not None and self.thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout_s)

    def __enter__(self) -> BridgeThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
