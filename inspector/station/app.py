"""The station's web application (Starlette): the page, its live updates, reviews and line commands.

Reading needs nothing: the page, ``/api/state`` (with ``clients``: the WebSockets connected now), the pictures
and ``/ws`` (one WebSocket: the state as JSON at most twice a second while it changes, and each line's live
picture as a binary message). Writing needs an operator token as ``Authorization: Bearer <token>``: 401 without
one, 403 with a wrong one (or when the station has none configured). Writes are reviews (``POST
/api/rejects/{rid}/review``) and line commands (``POST /api/lines/{line}/pause|resume|product``). The page holds
no secret: the operator types the token, the browser keeps it for the tab only.

Each WebSocket sends only the newest state and picture, when the previous send is done: a slow browser gets
fewer updates and never makes the station queue (nor, through the hub, the daemon wait).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from inspector.errors import InspectorError
from inspector.reviews import VERDICTS, Rejected, ReviewStore
from inspector.station import images
from inspector.station.config import StationConfig
from inspector.station.hub import Hub
from inspector.station.state import StationState

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
STATE_PERIOD_S = 0.5
POLL_S = 0.05
MAX_BODY = 16 * 1024
COMMANDS = {"pause": "pause", "resume": "resume", "product": "switch_product"}
# No inline scripts or styles, nothing from elsewhere: the page runs offline and cannot be made to load code.
HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "x-frame-options": "DENY",
    "cache-control": "no-store",
}


class SecurityHeaders:
    """ASGI middleware adding :data:`HEADERS` to every HTTP response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k.encode(), v.encode()) for k, v in HEADERS.items() if k.encode() not in present]
            await send(message)

        await self.app(scope, receive, with_headers)


class StationApp:
    """The handlers over a state, a hub and the operator tokens (token -> name)."""

    def __init__(self, cfg: StationConfig, state: StationState, hub: Hub | None, tokens: dict[str, str]) -> None:
        self.cfg, self.state, self.hub, self.tokens = cfg, state, hub, tokens
        self._pictures: dict[tuple, bytes] = {}
        self._bad_live: set[tuple[str, str]] = set()  # (line, what) of malformed live previews, logged once
        self.ws_clients = 0
        self.ws_sent = 0  # WebSocket messages sent (completed), all clients
        self.ws_sent_bytes = 0

    # -- auth -------------------------------------------------------------------------------------------------
    def operator(self, request: Request) -> str:
        """The name bound to the request's bearer token; HTTPException 401 (none) or 403 (wrong)."""
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            raise HTTPException(401, "an operator token is needed for this (Authorization: Bearer TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})
        given = auth[7:].strip().encode()
        for token, name in self.tokens.items():
            if hmac.compare_digest(given, token.encode()):
                return name
        raise HTTPException(403, "this operator token is not valid here" if self.tokens else
                            "this station is read-only: no operator token is configured")

    # -- reading ----------------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        expected = self.hub.expected_frr() if self.hub else {}
        snap = self.state.snapshot(time.monotonic(), time.time(), expected)
        control = self.hub.controllable() if self.hub else {}
        for line in snap["lines"]:
            line["controllable"] = line["line"] in control
        snap["title"] = self.cfg.title
        snap["writable"] = bool(self.tokens)
        snap["clients"] = self.ws_clients  # pages connected now, a kiosk's among them: a dark screen shows as 0
        return snap

    async def index(self, request: Request) -> Response:
        return FileResponse(f"{STATIC}/index.html", media_type="text/html")

    async def api_state(self, request: Request) -> Response:
        return JSONResponse(self.snapshot())

    def _cached(self, key: tuple, make) -> bytes:
        pic = self._pictures.get(key)
        if pic is None:
            pic = make()
            if len(self._pictures) > 256:
                self._pictures.clear()
            self._pictures[key] = pic
        return pic

    def live_message(self, line: str) -> tuple[int, bytes] | None:
        """The page's live picture of ``line``: (seq, [2-byte header length][JSON header][JPEG]). The daemon's
        JPEG goes as it came, and the page outlines the regions itself (``boxes``, in the JPEG's pixels): the
        station neither decodes nor encodes it."""
        live = self.state.live(line)
        if live is None:
            return None
        if not live.jpeg.startswith(b"\xff\xd8"):  # not a JPEG: the page keeps its last picture
            if (line, "jpeg") not in self._bad_live:
                self._bad_live.add((line, "jpeg"))
                log.error("station: line %s sent a live preview that is not a JPEG (frame %s); not shown", line,
                          live.header.frame_id)
            return None
        h = live.header
        try:
            f = images.preview_scale(h)
            boxes = [[round(float(v) * f, 1) for v in r.bbox] for r in h.regions]
        except (TypeError, ValueError, IndexError):
            if (line, "regions") not in self._bad_live:
                self._bad_live.add((line, "regions"))
                log.error("station: line %s sent a live preview with unreadable regions (frame %s); shown without "
                          "outlines", line, h.frame_id)
            boxes = []
        head = json.dumps({"line": line, "seq": live.seq, "frame_id": h.frame_id, "decision": h.decision,
                           "normalized_score": h.normalized_score, "boxes": boxes}).encode()
        return live.seq, len(head).to_bytes(2, "big") + head + live.jpeg

    async def live_jpg(self, request: Request) -> Response:
        """The live picture with the regions drawn in (for a plain ``<img>`` or a script; the page uses /ws)."""
        line = request.path_params["line"]
        live = self.state.live(line)
        if live is None:
            raise HTTPException(404, "no live picture of this line yet")
        pic = await run_in_threadpool(self._cached, ("live", line, live.seq),
                                      lambda: images.live_jpeg(live.header, live.jpeg))
        return Response(pic, media_type="image/jpeg")

    async def reject_jpg(self, request: Request) -> Response:
        entry = self.state.reject(request.path_params["rid"])
        if entry is None:
            raise HTTPException(404, "this reject is no longer in the gallery")
        key = ("reject", entry.rid, entry.image_version)
        pic = await run_in_threadpool(self._cached, key, lambda: images.reject_jpeg(entry.result, entry.picture,
                                                                                    entry.mask_png))
        return Response(pic, media_type="image/jpeg")

    async def whoami(self, request: Request) -> Response:
        return JSONResponse({"operator": self.operator(request)})

    async def reviews(self, request: Request) -> Response:
        product = request.query_params.get("product", "")
        try:
            rows = await run_in_threadpool(lambda: ReviewStore(self.cfg.home or None, product).latest())
        except InspectorError as e:
            raise HTTPException(400, str(e)) from e
        return JSONResponse([{"id": r.id, "frame_id": r.frame_id, "verdict": r.verdict, "who": r.who,
                              "reviewed_at": r.reviewed_at, "note": r.note, "line": r.line} for r in rows])

    # -- writing ----------------------------------------------------------------------------------------------
    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise HTTPException(413, f"request body over {MAX_BODY} bytes")
        try:
            body = json.loads(raw or b"{}")
        except ValueError as e:
            raise HTTPException(400, f"request body is not JSON: {e}") from e
        if not isinstance(body, dict):
            raise HTTPException(400, "request body must be a JSON object")
        return body

    async def review(self, request: Request) -> Response:
        who = self.operator(request)
        body = await self._body(request)
        verdict, note = body.get("verdict"), body.get("note", "")
        if verdict not in VERDICTS or not isinstance(note, str):
            raise HTTPException(400, f"'verdict' must be one of {list(VERDICTS)} and 'note' a string")
        entry = self.state.reject(request.path_params["rid"])
        if entry is None:
            raise HTTPException(404, "this reject is no longer in the gallery")
        if entry.frame_png is None:
            why = ("only a JPEG picture of it came: the daemon's lossless frames were at their CPU budget "
                   "(preview.reject_cpu)") if entry.picture else \
                "its frame never reached the station (preview.rejects off, or skipped under load)"
            raise HTTPException(409, f"this reject cannot be reviewed: {why}; a review stores the frame exactly as "
                                     "inspected")
        r = entry.result
        mask = images.frame_mask(r, entry.mask_png)
        rejected = Rejected(r.line, r.product, r.frame_id, r.part_id, r.capture_ts, r.decision, r.score,
                            r.normalized_score, r.threshold, r.calibration_id, r.model_sha)
        store = ReviewStore(self.cfg.home or None, r.product)
        try:
            saved = await run_in_threadpool(store.add, rejected, verdict, who, entry.frame_png,
                                            None if mask is None else images.png(mask), note.strip())
        except InspectorError as e:
            raise HTTPException(400, str(e)) from e
        info = {"id": saved.id, "verdict": saved.verdict, "who": saved.who, "reviewed_at": saved.reviewed_at}
        self.state.mark_reviewed(entry.rid, info)
        self.state.note(r.line, "review", f"{who}: frame {r.frame_id} {verdict.replace('_', ' ')}"
                        + (f" ({note.strip()})" if note.strip() else ""), time.time())
        log.info("review %d by %s: %s of %s frame %s", saved.id, who, verdict, r.line, r.frame_id)
        return JSONResponse(info, status_code=201)

    async def command(self, request: Request) -> Response:
        who = self.operator(request)
        line, what = request.path_params["line"], request.path_params["cmd"]
        if what not in COMMANDS or self.hub is None:
            raise HTTPException(404, f"unknown command {what!r}; commands: {sorted(COMMANDS)}")
        args = {}
        if what == "product":
            product = (await self._body(request)).get("product")
            if not isinstance(product, str) or not product:
                raise HTTPException(400, "'product' (a product name) is needed")
            args["product"] = product
        try:
            reply = await run_in_threadpool(self.hub.control, line, COMMANDS[what], **args)
        except InspectorError as e:
            raise HTTPException(502, str(e)) from e
        outcome = "done" if reply.get("ok") else f"refused: {reply.get('error')}"
        log.info("%s by %s on line %s: %s", COMMANDS[what], who, line, outcome)
        self.state.note(line, "command", f"{who}: {COMMANDS[what]} {args.get('product', '')} {outcome}", time.time())
        return JSONResponse(reply, status_code=200 if reply.get("ok") else 409)

    # -- live -------------------------------------------------------------------------------------------------
    async def ws(self, ws: WebSocket) -> None:
        await ws.accept()
        sent_version, sent_at, sent_live = -1, 0.0, {}
        self.ws_clients += 1
        try:
            while True:
                now = time.monotonic()
                if self.state.version != sent_version and now - sent_at >= STATE_PERIOD_S:
                    sent_version, sent_at = self.state.version, now
                    text = json.dumps(self.snapshot(), separators=(",", ":"))
                    await ws.send_text(text)
                    self.ws_sent, self.ws_sent_bytes = self.ws_sent + 1, self.ws_sent_bytes + len(text)
                for line, seq in self.state.live_seqs().items():
                    if sent_live.get(line) != seq:
                        got = self.live_message(line)
                        if got is not None:
                            sent_live[line], data = got
                            await ws.send_bytes(data)
                            self.ws_sent, self.ws_sent_bytes = self.ws_sent + 1, self.ws_sent_bytes + len(data)
                try:  # wait a little, and notice a browser that left
                    msg = await asyncio.wait_for(ws.receive(), POLL_S)
                    if msg["type"] == "websocket.disconnect":
                        return
                except TimeoutError:
                    pass
        except (WebSocketDisconnect, RuntimeError, OSError) as e:
            log.debug("websocket closed: %r", e)
        finally:
            self.ws_clients -= 1


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_app(station: StationApp) -> Starlette:
    """The ASGI application."""
    s = station
    routes = [
        Route("/", s.index),
        Route("/api/state", s.api_state),
        Route("/api/whoami", s.whoami),
        Route("/api/reviews", s.reviews),
        Route("/api/lines/{line}/live.jpg", s.live_jpg),
        Route("/api/lines/{line}/{cmd}", s.command, methods=["POST"]),
        Route("/api/rejects/{rid:int}.jpg", s.reject_jpg),
        Route("/api/rejects/{rid:int}/review", s.review, methods=["POST"]),
        WebSocketRoute("/ws", s.ws),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    return SecurityHeaders(app)
