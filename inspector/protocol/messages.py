"""Messages on the PUB socket: frozen dataclasses and pure JSON encode/decode (schema in docs/zeromq.md).

Wire format, one ZeroMQ multipart message per dataclass:

- frame 1: topic ``inspector/<line>/<kind>`` with kind ``result``, ``heartbeat``, ``status``, ``event`` or
  ``preview``;
- frame 2: UTF-8 JSON header, always with ``schema``, ``type`` and ``line``;
- frame 3 (results only, optional): the defect mask as a single-channel PNG, 0 = good, 255 = defect;
  (previews, always): the frame as a JPEG (live view) or a lossless PNG (a reject's frame).

End of stream is explicit: an :class:`EndOfStream` on the ``status`` topic, so a subscriber knows the
difference between "the daemon stopped" and "the network is quiet". Timestamps are Unix seconds (float).
Decoders ignore unknown header keys (newer minor additions) and refuse a different ``schema``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from inspector.errors import ProtocolError

SCHEMA = 1
TOPIC_PREFIX = "inspector"
KINDS = ("result", "heartbeat", "status", "event")
# The preview topic is low-rate images for live views (the operator station). It is not in KINDS, so a
# subscriber that does not ask for it (a PLC gateway, `inspector listen`) never receives the images.
PREVIEW = "preview"
ALL_KINDS = (*KINDS, PREVIEW)
IMAGE_ENCODINGS = ("jpeg", "png")
DECISIONS = ("PASS", "FAIL", "ERROR")
REGION_KINDS = ("defect", "peak")


@dataclass(frozen=True)
class Region:
    """One defect region: ``bbox`` (x, y, w, h) and ``area`` in frame pixels, ``peak`` the highest map value.

    ``kind`` is ``defect`` (a component above the pixel threshold, at least the minimum area) or ``peak``
    (a FAIL with no such component: the area around the map's maximum, so a FAIL always shows where).
    """

    bbox: tuple[int, int, int, int]
    area: int
    peak: float
    kind: str = "defect"

    def __post_init__(self) -> None:
        if self.kind not in REGION_KINDS:
            raise ProtocolError(f"region kind must be one of {REGION_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class MaskInfo:
    """What frame 3 holds: a PNG of ``width`` x ``height``; ``space`` 'frame' (frame pixels) or 'mask'
    (the model's mask grid, covering ``roi`` of the frame, or the whole frame when roi is None)."""

    width: int
    height: int
    space: str
    roi: tuple[int, int, int, int] | None = None
    encoding: str = "png"


@dataclass(frozen=True)
class Result:
    """The decision for one inspected frame (or one trigger that got no frame): exactly one per inspected frame;
    a frame the queue policy dropped has none (see EndOfStream)."""

    line: str
    product: str
    frame_id: int | None
    part_id: str | None
    capture_ts: float
    decision: str
    score: float | None = None
    normalized_score: float | None = None
    threshold: float | None = None
    regions: tuple[Region, ...] = ()
    model_sha: str | None = None
    calibration_id: str | None = None
    backend: str | None = None
    frame_size: tuple[int, int] | None = None  # (width, height) of the frame
    error: str | None = None
    mask: MaskInfo | None = None
    publish_ts: float = 0.0
    latency_ms: float = 0.0
    source_file: str | None = None  # the file the frame was read from (image folders), else None
    type: str = field(default="result", init=False)

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ProtocolError(f"decision must be one of {DECISIONS}, got {self.decision!r}")


@dataclass(frozen=True)
class Heartbeat:
    """Sent every ``zmq.heartbeat_ms``: is the daemon alive, how fast, how far behind, what is it running."""

    line: str
    ts: float
    seq: int
    uptime_s: float
    fps: float  # results per second over the last heartbeat interval
    frames: int  # frames captured for inspection since start
    results: int  # results published since start
    dropped: int  # frames dropped by the queue policy since start
    errors: int  # ERROR results since start
    queue_depth: int
    queue_size: int
    backend: str
    product: str
    calibration_id: str | None
    camera: str  # connecting | up | lost | ended
    paused: bool
    mode: str
    audit: str = "off"  # ok | failing | off: a late subscriber still learns that the audit trail is down
    audit_spooled: int = 0  # audit records waiting in memory for the disk to take writes again
    audit_lost: int = 0  # audit records lost since start (the spool overflowed while the disk failed)
    # off (no calibration statistics or disabled) | warming (too few results yet) | ok | raised
    drift: str = "off"
    drift_stats: dict[str, Any] = field(default_factory=dict)  # the figures behind ``drift`` (docs/zeromq.md)
    type: str = field(default="heartbeat", init=False)


@dataclass(frozen=True)
class Status:
    """A change of the daemon's state: starting, running, paused, stopping."""

    line: str
    ts: float
    state: str
    product: str = ""
    backend: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    type: str = field(default="status", init=False)


@dataclass(frozen=True)
class Event:
    """Something an operator should know: camera_lost, camera_restored, audit_error, product_switched, ..."""

    line: str
    ts: float
    kind: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)
    type: str = field(default="event", init=False)


@dataclass(frozen=True)
class EndOfStream:
    """The last message of a run (status topic): no more results will come. Counts cover the whole run and
    hold ``results == frames - dropped + trigger_errors``."""

    line: str
    ts: float
    reason: str  # signal | source_ended | error
    frames: int  # frames captured for inspection (the dropped ones included)
    results: int  # results published
    dropped: int  # captured frames dropped by the queue policy: they have no result
    trigger_errors: int = 0  # ERROR results for triggers that got no frame: they have no frame
    audit_lost: int = 0  # audit records lost in the run (see Heartbeat.audit_lost)
    type: str = field(default="end_of_stream", init=False)


@dataclass(frozen=True)
class Preview:
    """An image of one inspected frame for live views; frame 3 holds it (``encoding`` jpeg or png).

    ``reason`` 'live': the current frame at ``preview.rate_fps``, scaled to ``width`` x ``height`` (JPEG);
    'reject': a FAIL/ERROR frame at its full size, lossless (PNG), so a review can store the very pixels
    that were inspected. ``regions`` are those of the frame's result, in frame pixels (``frame_size``).
    """

    line: str
    ts: float
    frame_id: int | None
    product: str
    decision: str
    normalized_score: float | None
    regions: tuple[Region, ...]
    frame_size: tuple[int, int]  # (width, height) of the inspected frame
    width: int
    height: int
    encoding: str
    reason: str = "live"  # live | reject
    capture_ts: float = 0.0
    type: str = field(default="preview", init=False)

    def __post_init__(self) -> None:
        if self.encoding not in IMAGE_ENCODINGS:
            raise ProtocolError(f"preview encoding must be one of {IMAGE_ENCODINGS}, got {self.encoding!r}")
        if self.decision not in DECISIONS:
            raise ProtocolError(f"decision must be one of {DECISIONS}, got {self.decision!r}")


Message = Result | Heartbeat | Status | Event | EndOfStream | Preview
_TYPES: dict[str, type] = {"result": Result, "heartbeat": Heartbeat, "status": Status, "event": Event,
                           "end_of_stream": EndOfStream, "preview": Preview}
_TOPIC_KIND = {"result": "result", "heartbeat": "heartbeat", "status": "status", "event": "event",
               "end_of_stream": "status", "preview": PREVIEW}


def kind_of(msg: Message) -> str:
    """The topic kind a message is sent on (an end-of-stream goes on ``status``)."""
    return _TOPIC_KIND[msg.type]


def topic(line: str, kind: str) -> bytes:
    """``inspector/<line>/<kind>`` as bytes (the SUB prefix filter)."""
    if kind not in ALL_KINDS:
        raise ProtocolError(f"topic kind must be one of {ALL_KINDS}, got {kind!r}")
    return f"{TOPIC_PREFIX}/{line}/{kind}".encode()


def _finite(x: Any) -> Any:
    # JSON has no NaN/inf; a non-finite score is published as null rather than invalid JSON.
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def to_header(msg: Message) -> dict[str, Any]:
    """The JSON header of a message as a dict (also the audit record)."""
    return {"schema": SCHEMA, **_finite(dataclasses.asdict(msg))}


def encode(msg: Message, mask_png: bytes | None = None) -> list[bytes]:
    """``[topic, json header]`` or, for a result with a mask, ``[topic, json header, png]``; a preview always
    has its image as ``mask_png`` (the third frame)."""
    if isinstance(msg, Preview):
        if not mask_png:
            raise ProtocolError("a preview is sent with its image as the third frame")
    elif mask_png is not None and not (isinstance(msg, Result) and msg.mask is not None):
        raise ProtocolError("a mask frame is only sent with a result whose 'mask' describes it")
    frames = [topic(msg.line, _TOPIC_KIND[msg.type]),
              json.dumps(to_header(msg), separators=(",", ":"), allow_nan=False).encode()]
    if mask_png is not None:
        frames.append(mask_png)
    return frames


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Build ``cls`` from a header dict, recursing into nested dataclasses; unknown keys are ignored."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{where}: header lacks required key '{f.name}'")
            continue
        v = data[f.name]
        if f.name == "regions":
            v = tuple(_build(Region, dict(r, bbox=tuple(r["bbox"])), f"{where}.regions") for r in v)
        elif f.name == "mask" and v is not None:
            v = _build(MaskInfo, dict(v, roi=tuple(v["roi"]) if v.get("roi") else None), f"{where}.mask")
        elif f.name == "frame_size" and v is not None:
            v = tuple(v)
        elif f.name == "drift_stats" and not isinstance(v, dict):
            raise ProtocolError(f"{where}: 'drift_stats' must be an object, got {v!r}")
        kwargs[f.name] = v
    return cls(**kwargs)


def decode(frames: list[bytes]) -> tuple[Message, bytes | None]:
    """Parse a multipart message into (message, mask PNG or None). ProtocolError says what is wrong."""
    if len(frames) not in (2, 3):
        raise ProtocolError(f"expected 2 or 3 message frames (topic, header[, mask]), got {len(frames)}")
    try:
        header = json.loads(frames[1])
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(f"header is not valid JSON: {e}") from e
    if not isinstance(header, dict):
        raise ProtocolError("header must be a JSON object")
    if header.get("schema") != SCHEMA:
        raise ProtocolError(f"header schema {header.get('schema')!r} is not the supported schema {SCHEMA}")
    kind = header.get("type")
    cls = _TYPES.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown message type {kind!r}; known: {sorted(_TYPES)}")
    expected = topic(str(header.get("line")), _TOPIC_KIND[kind])
    if frames[0] != expected:
        raise ProtocolError(f"topic {frames[0]!r} does not match the header (expected {expected!r})")
    try:
        msg = _build(cls, header, kind)
    except (TypeError, KeyError) as e:
        raise ProtocolError(f"malformed {kind} header: {e}") from e
    mask = frames[2] if len(frames) == 3 else None
    if kind == "preview":
        if not mask:
            raise ProtocolError("a preview needs its image as the third frame")
    elif mask is not None and (kind != "result" or msg.mask is None):
        raise ProtocolError("a third frame is only allowed on a result whose header has 'mask'")
    return msg, mask
