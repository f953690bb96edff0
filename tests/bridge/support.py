"""Helpers for the bridge tests: certificates, a bridge file, and a real asyncua client playing the PLC."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.bridge.certs import make_certificate
from inspector.bridge.config import BridgeFile
from inspector.config import load_dataclass
from tests.stream import fakes

RESULT_FIELDS = ("PartId", "FrameId", "Decision", "Pass", "ResultCode", "Message", "Score", "NormalizedScore",
                 "LatencyMs", "ResponseMs", "Timestamp", "Regions")


def until(pred, timeout_s: float, what: str) -> None:
    """Wait on state: poll ``pred()`` until it is true; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s} s for {what}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frame_folder(path: Path, n: int = 6) -> Path:
    """``n`` frames of the fake product as PNG files (every third one FAILs with the fake backend)."""
    return fakes.frame_folder(path, n)


def memory_source(folder: Path, rate: float = 200.0) -> dict:
    return {"kind": "memory", "uri": str(folder), "width": 64, "height": 48, "rate_fps": rate}


@dataclass(frozen=True)
class Certs:
    dir: Path
    server: Any
    plc: Any
    stranger: Any  # a well-formed client certificate that the server was never told to trust


def make_certs(tmp: Path) -> Certs:
    d = tmp / "certs"
    server = make_certificate(d, "bridge", "server", ["localhost", "127.0.0.1"])
    plc = make_certificate(d, "plc1", "client")
    stranger = make_certificate(tmp / "other", "intruder", "client")
    return Certs(d, server, plc, stranger)


def opcua_file(certs: Certs | None, lines: list[dict], port: int, deadline_ms: float = 200.0,
               **opcua: Any) -> BridgeFile:
    settings: dict[str, Any] = {"endpoint": f"opc.tcp://127.0.0.1:{port}/inspector/", "deadline_ms": deadline_ms}
    if certs is not None:
        settings.update(certificate=str(certs.server.cert), private_key=str(certs.server.key),
                        trusted_clients=str(certs.dir / "trusted"))
    settings.update(opcua)
    data = {"bridges": [{"name": "plc", "kind": "opcua", "lines": lines, "opcua": settings}]}
    return load_dataclass(BridgeFile, data, "test")


class Plc:
    """An asyncua client acting as the PLC of one line: ``await part(pid)`` runs one handshake."""

    def __init__(self, port: int, line: str, certs: Certs | None, who: str = "plc", user_cert: bool = True,
                 poll_s: float = 0.0005, watch: bool = False) -> None:
        """``watch``: learn ResultValid from a subscription (publishing interval 0: the server sends each
        change as it is written) instead of reading it every ``poll_s``."""
        from asyncua import Client

        self.url = f"opc.tcp://127.0.0.1:{port}/inspector/"
        self.line, self.certs, self.who, self.user_cert, self.poll_s = line, certs, who, user_cert, poll_s
        self.client = Client(self.url, timeout=10)
        self.idx = 0
        self.watch = watch
        self.sleeps: list[tuple[float, float]] = []
        self._changes: asyncio.Queue[tuple[Any, float]] = asyncio.Queue()

    async def connect(self) -> Plc:
        from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

        if self.certs is not None:
            c = self.certs.plc if self.who == "plc" else self.certs.stranger
            self.client.application_uri = c.uri
            await self.client.set_security(SecurityPolicyBasic256Sha256, str(c.cert), str(c.key),
                                           server_certificate=str(self.certs.server.cert))
            if self.user_cert:
                await self.client.load_client_certificate(str(c.cert))
                await self.client.load_private_key(str(c.key))
        await self.client.connect()
        self.idx = await self.client.get_namespace_index("urn:inspector:bridge")
        if self.watch:
            await self.subscribe("Handshake.ResultValid")
        return self

    async def subscribe(self, path: str) -> None:
        """Learn of ``path``'s changes from a subscription (publishing interval 0): :meth:`changed_to`."""
        sub = await self.client.create_subscription(0, self)
        await sub.subscribe_data_change(self.node(path), sampling_interval=0)

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        """asyncua's subscription handler: a change of the watched ResultValid, stamped when it arrived."""
        self._changes.put_nowait((value, time.monotonic()))

    async def close(self) -> None:
        await self.client.disconnect()

    def node(self, path: str) -> Any:
        from asyncua import ua

        return self.client.get_node(ua.NodeId(f"{self.line}.{path}", self.idx))

    async def read(self, path: str) -> Any:
        return await self.node(path).read_value()

    async def wait(self, path: str, value: Any, timeout_s: float = 10.0) -> float:
        """Poll ``path`` until it equals ``value``; the monotonic time it was seen. TimeoutError otherwise.
        A watched ResultValid is waited for on its subscription instead. ``self.sleeps``: the (start, end) of
        each sleep between two reads of this wait, the PLC's own idle time (the benchmark tells it apart)."""
        self.sleeps = []
        if self.watch and path == "Handshake.ResultValid":
            return await self.changed_to(value, timeout_s)
        node, deadline = self.node(path), time.monotonic() + timeout_s
        while True:
            v = await node.read_value()
            now = time.monotonic()
            if v == value:
                return now
            if now > deadline:
                raise TimeoutError(f"{self.line}.{path} is {v!r}, waited {timeout_s} s for {value!r}")
            await asyncio.sleep(self.poll_s)
            self.sleeps.append((now, time.monotonic()))

    async def changed_to(self, value: Any, timeout_s: float) -> float:
        """The monotonic time a subscribed change to ``value`` arrived (changes to other values are skipped)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                v, t = await asyncio.wait_for(self._changes.get(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise TimeoutError(f"{self.line}: no subscribed change to {value!r} in {timeout_s} s") from None
            if v == value:
                return t

    async def part(self, part_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """PartId + Trigger in one write, wait ResultValid, read the result, ResultAck, wait until dropped.
        The dict has the result fields plus ``t_trigger``/``t_valid`` (monotonic s, this process)."""
        from asyncua import ua

        nodes = [self.node("Handshake.PartId"), self.node("Handshake.Trigger")]
        t0 = time.monotonic()
        await self.client.write_values(nodes, [ua.DataValue(ua.Variant(part_id, ua.VariantType.String)),
                                               ua.DataValue(ua.Variant(True, ua.VariantType.Boolean))])
        t1 = await self.wait("Handshake.ResultValid", True, timeout_s)
        sleeps = self.sleeps
        values = await self.client.read_values([self.node(f"Result.{f}") for f in RESULT_FIELDS])
        out = dict(zip(RESULT_FIELDS, values, strict=True))
        await self.node("Handshake.ResultAck").write_value(ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
        await self.wait("Handshake.ResultValid", False, timeout_s)
        out.update(t_trigger=t0, t_valid=t1, sleeps=sleeps)
        return out
