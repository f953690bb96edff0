"""What the station knows about each line, folded from the daemon's messages. Pure: no sockets, no clocks.

:meth:`StationState.apply` takes one decoded message (and its third frame) with the times it was received;
:meth:`StationState.snapshot` gives the JSON the page renders. Thread-safe: the receiving thread applies,
the web server reads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspector.protocol.messages import EndOfStream, Event, Heartbeat, Message, Preview, Result, Status


@dataclass
class Reject:
    """A FAIL or ERROR the gallery shows. Its picture arrives later, on the preview topic: ``frame_png`` when
    the daemon sent the frame losslessly (a review can store it), else only a JPEG ``picture``."""

    rid: int  # station-local id (URLs)
    result: Result
    mask_png: bytes | None
    received: float  # Unix s
    frame_png: bytes | None = None
    picture: bytes | None = None  # what the gallery shows: the PNG, or the daemon's JPEG
    image_version: int = 0
    review: dict[str, Any] | None = None


@dataclass
class Live:
    """The newest live preview of a line: its header and JPEG; ``seq`` counts previews received."""

    seq: int
    header: Preview
    jpeg: bytes


@dataclass
class LineView:
    """Everything the page shows about one line."""

    line: str
    gallery: int
    chart_points: int
    max_events: int
    counts: dict[str, int] = field(default_factory=lambda: {"PASS": 0, "FAIL": 0, "ERROR": 0})
    since: float | None = None
    latencies: deque = field(default_factory=lambda: deque(maxlen=1000))
    scores: deque = field(default_factory=deque)
    rejects: OrderedDict = field(default_factory=OrderedDict)
    events: deque = field(default_factory=deque)
    heartbeat: Heartbeat | None = None
    heartbeat_at: float | None = None  # monotonic s when received
    state: str = "unknown"
    last: Result | None = None
    live: Live | None = None
    info: dict[str, Any] = field(default_factory=dict)


class StationState:
    """Lines by name. ``version`` changes whenever anything the page shows changed."""

    def __init__(self, gallery: int = 24, chart_points: int = 300, events: int = 100, keep: int = 0) -> None:
        # ``gallery`` rejects are shown; ``keep`` (at least as many) stay reviewable, so the one an operator is
        # looking at is not gone when the line rejects a few more meanwhile.
        self.gallery, self.chart_points, self.max_events = gallery, chart_points, events
        self.keep = max(keep, gallery)
        self.lines: dict[str, LineView] = {}
        self.lock = threading.Lock()
        self.version = 0
        self._rid = 0
        self.reject_index: dict[int, Reject] = {}

    def _view(self, line: str) -> LineView:
        v = self.lines.get(line)
        if v is None:
            v = self.lines[line] = LineView(line, self.keep, self.chart_points, self.max_events)
            v.scores = deque(maxlen=self.chart_points)
            v.events = deque(maxlen=self.max_events)
        return v

    # -- folding messages ----------------------------------------------------------------------------------------
    def apply(self, msg: Message, data: bytes | None, mono: float, wall: float) -> None:
        """Fold one message in (``mono``: monotonic receive time, ``wall``: Unix s)."""
        with self.lock:
            v = self._view(msg.line)
            if isinstance(msg, Result):
                self._result(v, msg, data, wall)
            elif isinstance(msg, Preview):
                self._preview(v, msg, data)
            elif isinstance(msg, Heartbeat):
                v.heartbeat, v.heartbeat_at = msg, mono
                v.info.update(product=msg.product, backend=msg.backend, calibration_id=msg.calibration_id)
                if v.state != "stopping":  # a heartbeat after an end of stream: the daemon is back
                    v.state = "paused" if msg.paused else "running"
            elif isinstance(msg, Event):
                v.events.appendleft({"ts": msg.ts, "kind": msg.kind, "message": msg.message})
            elif isinstance(msg, Status):
                v.state = msg.state
                detail = ", ".join(f"{k} {val}" for k, val in msg.detail.items())
                v.events.appendleft({"ts": msg.ts, "kind": "status", "message": msg.state + (f" ({detail})" if detail
                                                                                              else "")})
            elif isinstance(msg, EndOfStream):
                v.state = "ended"
                v.events.appendleft({"ts": msg.ts, "kind": "end_of_stream",
                                     "message": f"end of stream ({msg.reason}): {msg.results} results"})
            self.version += 1

    def _result(self, v: LineView, r: Result, mask: bytes | None, wall: float) -> None:
        v.counts[r.decision] += 1
        v.since = wall if v.since is None else v.since
        v.latencies.append(r.latency_ms)
        v.scores.append((r.frame_id, r.normalized_score, r.decision))
        v.last = r
        v.info.update(product=r.product, model_sha=r.model_sha, calibration_id=r.calibration_id, backend=r.backend)
        if r.decision == "PASS":
            return
        self._rid += 1
        entry = Reject(self._rid, r, mask, wall)
        v.rejects[entry.rid] = entry
        self.reject_index[entry.rid] = entry
        while len(v.rejects) > v.gallery:
            old, _ = v.rejects.popitem(last=False)
            self.reject_index.pop(old, None)

    def _preview(self, v: LineView, p: Preview, data: bytes | None) -> None:
        if p.reason == "live":
            v.live = Live((v.live.seq + 1) if v.live else 1, p, data or b"")
            return
        # A reject's lossless frame: the newest gallery entry of that frame (results come before their preview).
        for entry in reversed(v.rejects.values()):
            if entry.result.frame_id == p.frame_id and abs(entry.result.capture_ts - p.capture_ts) < 1e-3:
                entry.picture, entry.image_version = data, entry.image_version + 1
                if p.encoding == "png":
                    entry.frame_png = data
                return

    # -- reading ------------------------------------------------------------------------------------------------
    def reject(self, rid: int) -> Reject | None:
        with self.lock:
            return self.reject_index.get(rid)

    def live(self, line: str) -> Live | None:
        with self.lock:
            v = self.lines.get(line)
            return v.live if v else None

    def live_seqs(self) -> dict[str, int]:
        with self.lock:
            return {name: v.live.seq for name, v in self.lines.items() if v.live is not None}

    def note(self, line: str, kind: str, message: str, wall: float) -> None:
        """An event of the station's own (a review, a command sent) in the line's log."""
        with self.lock:
            if line in self.lines:
                self.lines[line].events.appendleft({"ts": wall, "kind": kind, "message": message})
                self.version += 1

    def mark_reviewed(self, rid: int, review: dict[str, Any]) -> None:
        with self.lock:
            entry = self.reject_index.get(rid)
            if entry is not None:
                entry.review = review
                self.version += 1

    def snapshot(self, mono: float, wall: float, expected: dict[str, Any] | None = None) -> dict[str, Any]:
        """The page's JSON: every line, newest events and rejects first. ``expected``: line -> FRR promise."""
        with self.lock:
            lines = [self._line_json(v, mono, (expected or {}).get(v.line)) for v in self.lines.values()]
        return {"version": self.version, "server_time": wall, "lines": sorted(lines, key=lambda d: d["line"])}

    def _line_json(self, v: LineView, mono: float, expected: dict[str, Any] | None) -> dict[str, Any]:
        hb = v.heartbeat
        total = sum(v.counts.values())
        lat = np.asarray(v.latencies, dtype=np.float64)
        age = None if v.heartbeat_at is None else mono - v.heartbeat_at
        return {
            "line": v.line, "state": v.state, "counts": dict(v.counts), "total": total, "since": v.since,
            "yield": v.counts["PASS"] / total if total else None,
            "fps": hb.fps if hb else None, "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
            "latency_p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
            "dropped": hb.dropped if hb else None, "frames": hb.frames if hb else None,
            "camera": hb.camera if hb else None, "paused": hb.paused if hb else None, "mode": hb.mode if hb else None,
            "audit": hb.audit if hb else None, "drift": hb.drift if hb else "off",
            "drift_stats": hb.drift_stats if hb else {}, "heartbeat_age_s": age,
            "product": v.info.get("product"), "backend": v.info.get("backend"),
            "calibration_id": v.info.get("calibration_id"), "model_sha": (v.info.get("model_sha") or "")[:12],
            "expected_frr": expected,
            "last": None if v.last is None else {"decision": v.last.decision, "frame_id": v.last.frame_id,
                                                 "normalized_score": v.last.normalized_score},
            "live": None if v.live is None else {"seq": v.live.seq, "frame_id": v.live.header.frame_id,
                                                 "decision": v.live.header.decision,
                                                 "normalized_score": v.live.header.normalized_score},
            "scores": [[fid, ns, d] for fid, ns, d in v.scores],
            "rejects": [self._reject_json(e) for e in list(reversed(v.rejects.values()))[: self.gallery]],
            "events": list(v.events)[:50],
        }

    @staticmethod
    def _reject_json(e: Reject) -> dict[str, Any]:
        r = e.result
        return {"rid": e.rid, "frame_id": r.frame_id, "part_id": r.part_id, "decision": r.decision,
                "normalized_score": r.normalized_score, "capture_ts": r.capture_ts, "product": r.product,
                "error": r.error, "has_frame": e.picture is not None, "reviewable": e.frame_png is not None,
                "image_version": e.image_version,
                "regions": len(r.regions), "review": e.review}
