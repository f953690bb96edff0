"""The OPC UA bridge: an asyncua server with one object per line, the part handshake, and its security.

Threads: the asyncua server and every handshake step run on one asyncio loop. Each line's
:class:`~inspector.bridge.link.DaemonLink` is attached to that loop: the loop reads the daemon's messages
and sends the triggers itself, no thread hand-off between a PLC's Trigger and the daemon nor between a result
and ResultValid; Pause, Resume and status go the same way, in order with the triggers. A product switch runs
on the link's own thread and is awaited here. PLC writes are
seen in asyncua's PostWrite callback, which runs before the write is answered: when a PLC's write of Trigger
returns, the bridge has already taken the trigger (Busy) and reset Trigger.

Security (``opcua.security``): ``sign_and_encrypt`` offers only the Basic256Sha256 SignAndEncrypt endpoint;
asyncua's CertificateValidator refuses a client whose certificate is not in ``trusted_clients`` (time range,
URI, key usage and trust are checked) with BadCertificateUntrusted, and the user token must be that folder's
X509 certificate unless ``anonymous`` is set. ``none`` (no security, anonymous) needs ``anonymous: true``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.callback import CallbackType
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

from inspector.bridge import certs
from inspector.bridge.config import BridgeConfig, LineConfig, OpcuaConfig
from inspector.bridge.handshake import Handshake, PartResult
from inspector.bridge.link import DaemonLink
from inspector.bridge.opcua_space import LineSpace, outputs, utc, written
from inspector.errors import ConfigError, ProtocolError
from inspector.protocol.messages import Event, Heartbeat, Message, Result, Status

log = logging.getLogger(__name__)

NAN = float("nan")
TICK_S = 1.0


@dataclass(frozen=True)
class PartTiming:
    """Monotonic times (s) of one part on the bridge: trigger seen, request sent, daemon result received,
    ResultValid written. ``received`` is None for a part answered without a daemon result."""

    part_id: str
    seen: float
    sent: float | None
    received: float | None
    valid: float


class TrustedUsers:
    """asyncua user manager: an X509 user token must be one of the trusted certificates; the anonymous token
    only when configured."""

    def __init__(self, trusted: set[bytes], anonymous: bool) -> None:
        self.trusted, self.anonymous = trusted, anonymous

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if certificate is not None:
            return User(role=UserRole.User) if bytes(certificate) in self.trusted else None
        if username is None and self.anonymous:
            return User(role=UserRole.User)
        return None


def _trusted_ders(folder: Path) -> set[bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    if not folder.is_dir():
        raise ConfigError(f"opcua.trusted_clients {folder} is not a folder of client certificates")
    out = set()
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in (".der", ".pem"):
            continue
        data = p.read_bytes()
        cert = x509.load_pem_x509_certificate(data) if data.startswith(b"-----") else x509.load_der_x509_certificate(data)
        out.add(cert.public_bytes(Encoding.DER))
    if not out:
        log.warning("no client certificates in %s: every client will be refused", folder)
    return out


async def secure(server: Server, cfg: OpcuaConfig) -> None:
    """Apply ``cfg``'s security to a server before it starts."""
    if cfg.security == "none":
        log.warning("OPC UA security is OFF (opcua.security: none): anyone reaching %s can trigger parts and switch "
                    "products", cfg.endpoint)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.AnonymousIdentityToken])
        return
    certs.check_private_key(cfg.private_key)
    await server.load_certificate(cfg.certificate)
    await server.load_private_key(cfg.private_key)
    await server.set_application_uri(certs.application_uri(cfg.certificate))
    server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    folder = Path(cfg.trusted_clients)
    trusted = _trusted_ders(folder)
    store = TrustStore([folder], [])
    await store.load()
    options = CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT
    server.set_certificate_validator(CertificateValidator(options, store))
    server.iserver.set_user_manager(TrustedUsers(trusted, cfg.anonymous))
    server.set_identity_tokens([ua.X509IdentityToken] + ([ua.AnonymousIdentityToken] if cfg.anonymous else []))


class LineObject:
    """One line on the server: its nodes, its handshake and its daemon link."""

    def __init__(self, server: Server, idx: int, cfg: LineConfig, opcua: OpcuaConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg, self.clock = cfg, clock
        self.space = LineSpace(server, idx, cfg.line)
        self.hs = Handshake(opcua.deadline_ms / 1000, opcua.late_window_s)
        self.daemon: dict[str, Any] = {}
        self.timings: deque[PartTiming] = deque(maxlen=100000)
        self._part: dict[str, float | None] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.link: DaemonLink | None = None
        self._tasks: set[asyncio.Task] = set()
        self._stamped: tuple[PartResult, Any] | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.space.build(self._method)
        await self.refresh()
        self.link = DaemonLink(self.cfg, self._on_loop(self._on_message), self._on_loop(self._on_state), self.clock)
        self.link.attach(self.loop)

    def detach(self) -> None:
        """On the loop: stop reading the daemon's messages."""
        if self.link is not None:
            self.link.detach()

    def stop(self) -> None:
        """Any thread, after ``detach``: end the link's control threads."""
        if self.link is not None:
            self.link.stop()

    def _on_loop(self, fn: Callable[..., Any]) -> Callable[..., None]:
        def call(*args: Any) -> None:
            self._spawn(fn(*args))
        return call

    def _spawn(self, coro: Any) -> None:
        t = self.loop.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # -- the daemon's side ------------------------------------------------------------------------------
    async def _on_state(self, up: bool, why: str) -> None:
        self.hs.link(up, why)
        await self.refresh()
        if up:
            try:
                reply = await self.link.request_now("status")
            except ProtocolError as e:
                log.warning("line %s: status request failed: %s", self.cfg.line, e)
                return
            if reply.get("ok"):
                s = reply["result"]
                self.daemon.update(product=s.get("product"), calibration_id=s.get("calibration_id"),
                                   model_sha=s.get("model_sha"), mode=s.get("mode"))
                self.hs.paused = bool(s.get("paused"))
                await self.refresh()

    async def _on_message(self, msg: Message, mask: bytes | None, received: float) -> None:
        if isinstance(msg, Result):
            self.daemon.update(product=msg.product, model_sha=msg.model_sha, calibration_id=msg.calibration_id)
            before = self.hs.result
            self.hs.on_result(msg, received)
            await self.refresh()
            if self.hs.result is not before:  # this part's result (a late one only sets hs.late)
                self._timing(msg.part_id, received)
            return
        if isinstance(msg, Heartbeat):
            self.daemon.update(product=msg.product, calibration_id=msg.calibration_id, mode=msg.mode,
                               frames=msg.frames, dropped=msg.dropped)
            self.hs.paused = msg.paused
        elif isinstance(msg, Status):
            self.hs.paused = msg.state == "paused"
        elif isinstance(msg, Event) and msg.kind == "product_switched":
            self.daemon.update(product=msg.detail.get("to"), model_sha=msg.detail.get("model_sha"),
                               calibration_id=msg.detail.get("calibration_id"))
        await self.refresh()

    def _timing(self, part_id: str, received: float | None) -> None:
        sent = self._part.pop(part_id, None)
        seen = self.hs.triggered_at if self.hs.triggered_at is not None else self.clock()
        self.timings.append(PartTiming(part_id, seen, sent, received, self.clock()))

    # -- the PLC's side ---------------------------------------------------------------------------------
    async def on_write(self, path: str, value: Any) -> None:
        """A PLC wrote one of the client-writable nodes (PostWrite: before its write is answered)."""
        if path == "Handshake.Trigger" and value is True:
            await self.space.write("Handshake.Trigger", False)  # taken: the PLC may raise it again next part
            await self.trigger(str(self.space.read("Handshake.PartId") or ""))
        elif path == "Handshake.ResultAck" and value is True:
            await self.space.write("Handshake.ResultAck", False)
            self.hs.ack(self.clock())
            await self.refresh()

    async def trigger(self, part_id: str) -> str | None:
        """Start the handshake for ``part_id``; the reason when it was not started (None when Busy now)."""
        now = self.clock()
        errors = self.hs.counters.handshake_errors
        pid = self.hs.trigger(part_id, now)
        if pid is None:
            await self.refresh()
            if self.hs.counters.handshake_errors != errors:
                return self.hs.last_error
            self._timing(part_id, None)
            return self.hs.result.message if self.hs.result else "not taken"
        # The daemon hears of the part first (the request leaves from this loop, before Busy is written and
        # the PLC's write answered), then the nodes.
        self._part[pid] = None
        request = self.link.request_now("trigger", part_id=pid, on_send=lambda: self._sent(pid))
        self.loop.call_at(self.loop.time() + self.hs.deadline_s, self._spawn_tick)
        self._spawn(self._await_trigger(pid, request))
        await self.refresh()
        return None

    def _sent(self, part_id: str) -> None:
        """As the trigger leaves (a part already answered is not timed again)."""
        if part_id in self._part:
            self._part[part_id] = self.clock()

    def _spawn_tick(self) -> None:
        self._spawn(self.tick())

    async def tick(self) -> None:
        pid = self.hs.part_id
        if self.hs.tick(self.clock()):
            await self.refresh()
            if pid is not None and self.hs.result_valid and self.hs.result and self.hs.result.code == "TIMEOUT":
                self._timing(pid, None)

    async def _await_trigger(self, part_id: str, request: asyncio.Future) -> None:
        try:
            reply = await request
        except ProtocolError as e:
            changed = self.hs.refused(part_id, str(e), self.clock(), maybe_delivered=True)
        else:
            if reply.get("ok"):
                return
            changed = self.hs.refused(part_id, str(reply.get("error")), self.clock(), maybe_delivered=False)
        if changed:
            await self.refresh()
            self._timing(part_id, None)

    def _method(self, name: str) -> Callable:
        async def call(parent: ua.NodeId, *args: ua.Variant) -> list[ua.Variant]:
            values = [a.Value for a in args]
            if name == "Trigger":
                await self.space.write("Handshake.PartId", str(values[0] or ""))
                why = await self.trigger(str(values[0] or ""))
                return outputs(why is None, why or "triggered")
            cmd = {"SwitchProduct": "switch_product", "Pause": "pause", "Resume": "resume"}[name]
            kwargs = {"product": str(values[0] or "")} if name == "SwitchProduct" else {}
            try:
                # Pause and Resume go the triggers' way, in order with them; a product switch (seconds) on the
                # link's own thread, so it never holds up a trigger.
                reply = await (asyncio.wrap_future(self.link.request(cmd, slow=True, **kwargs)) if name == "SwitchProduct"
                               else self.link.request_now(cmd, **kwargs))
            except ProtocolError as e:
                return outputs(False, str(e))
            body = reply.get("result") if reply.get("ok") else reply.get("error")
            return outputs(bool(reply.get("ok")), body if isinstance(body, str) else json.dumps(body, default=str))
        return call

    # -- nodes ------------------------------------------------------------------------------------------
    def _timestamp(self, r: PartResult) -> Any:
        # The frame's capture time; a result without a frame (TIMEOUT, NOT_READY) gets the time it was made.
        if self._stamped is None or self._stamped[0] is not r:
            self._stamped = (r, utc(r.capture_ts if r.capture_ts is not None else time.time()))
        return self._stamped[1]

    async def refresh(self) -> None:
        hs, d, c = self.hs, self.daemon, self.hs.counters
        values: dict[str, Any] = {
            "Mode": d.get("mode") or "", "Product": d.get("product") or "",
            "CalibrationId": d.get("calibration_id") or "", "ModelHash": d.get("model_sha") or "",
            "StateMessage": "" if hs.link_up else hs.link_reason, "Handshake.LastError": hs.last_error,
            "Counters.Parts": c.parts, "Counters.Passed": c.passed, "Counters.Failed": c.failed,
            "Counters.Errors": c.errors, "Counters.Timeouts": c.timeouts, "Counters.LateResults": c.late_results,
            "Counters.HandshakeErrors": c.handshake_errors, "Counters.Frames": int(d.get("frames") or 0),
            "Counters.Dropped": int(d.get("dropped") or 0),
            "Handshake.Busy": hs.busy, "Handshake.ResultValid": hs.result_valid, "State": hs.state,
        }
        if hs.state == "Paused":
            values["StateMessage"] = "inspection paused"
        r = hs.result
        if r is not None:
            values.update({
                "Result.PartId": r.part_id, "Result.FrameId": -1 if r.frame_id is None else r.frame_id,
                "Result.Decision": r.decision, "Result.Pass": r.passed, "Result.ResultCode": r.code,
                "Result.Message": r.message, "Result.Score": NAN if r.score is None else r.score,
                "Result.NormalizedScore": NAN if r.normalized_score is None else r.normalized_score,
                "Result.LatencyMs": NAN if r.latency_ms is None else r.latency_ms, "Result.ResponseMs": r.response_ms,
                "Result.Timestamp": self._timestamp(r),
                "Result.Regions": r.regions,
            })
        if hs.late is not None:
            values.update({"LateResult.PartId": hs.late.part_id,
                           "LateResult.FrameId": -1 if hs.late.frame_id is None else hs.late.frame_id,
                           "LateResult.Decision": hs.late.decision, "LateResult.LatenessMs": hs.late.lateness_ms})
        await self.space.set(values)


class OpcuaBridge:
    """An OPC UA server for the lines of one bridge config. ``await start()``, ``await stop()``."""

    def __init__(self, cfg: BridgeConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg, self.settings, self.clock = cfg, cfg.settings, clock
        self.server: Server | None = None
        self.lines: dict[str, LineObject] = {}
        self._tick: asyncio.Task | None = None

    async def start(self) -> None:
        s = self.settings
        server = Server()
        await server.init()
        server.set_endpoint(s.endpoint)
        server.set_server_name(f"inspector bridge {self.cfg.name}")
        await secure(server, s)
        idx = await server.register_namespace(s.namespace)
        for line_cfg in self.cfg.lines:
            self.lines[line_cfg.line] = LineObject(server, idx, line_cfg, s, self.clock)
        server.subscribe_server_callback(CallbackType.PostWrite, self._post_write)
        try:
            await server.start()
        except OSError as e:
            raise ConfigError(f"cannot listen on opcua.endpoint {s.endpoint!r}: {e}") from e
        self.server = server
        for line in self.lines.values():
            await line.start()
        self._tick = asyncio.get_running_loop().create_task(self._ticker())
        log.info("OPC UA bridge %s on %s (security %s) for lines %s", self.cfg.name, s.endpoint, s.security,
                 list(self.lines))

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            for line in self.lines.values():
                await line.tick()

    async def _post_write(self, event: Any, _dispatcher: Any) -> None:
        for nodeid, value in written(event.request_params, event.response_params):
            for line in self.lines.values():
                path = line.space.owns(nodeid)
                if path is not None:
                    await line.on_write(path, value)

    async def stop(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
        for line in self.lines.values():
            line.detach()
            await asyncio.to_thread(line.stop)
        if self.server is not None:
            await self.server.stop()
