"""The OPC UA address space of one line: which nodes there are, their types, and how values are written.

One object per line under Objects, browse name = the line's name; string node ids ``<line>.<path>`` (for
example ``line1.Handshake.Trigger``) in the bridge's namespace, so a PLC program can address them without
browsing. docs/plc.md describes every node; this table is the one place that defines them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from asyncua import Node, Server, ua

V = ua.VariantType
NAN = math.nan
# path, type, initial value, writable by clients
NODES: tuple[tuple[str, ua.VariantType, Any, bool], ...] = (
    ("State", V.String, "Fault", False),
    ("StateMessage", V.String, "", False),
    ("Mode", V.String, "", False),
    ("Product", V.String, "", False),
    ("CalibrationId", V.String, "", False),
    ("ModelHash", V.String, "", False),
    ("Handshake.PartId", V.String, "", True),
    ("Handshake.Trigger", V.Boolean, False, True),
    ("Handshake.Busy", V.Boolean, False, False),
    ("Handshake.ResultValid", V.Boolean, False, False),
    ("Handshake.ResultAck", V.Boolean, False, True),
    ("Handshake.LastError", V.String, "", False),
    ("Result.PartId", V.String, "", False),
    ("Result.FrameId", V.Int64, -1, False),
    ("Result.Decision", V.String, "", False),
    ("Result.Pass", V.Boolean, False, False),
    ("Result.ResultCode", V.String, "", False),
    ("Result.Message", V.String, "", False),
    ("Result.Score", V.Double, NAN, False),
    ("Result.NormalizedScore", V.Double, NAN, False),
    ("Result.LatencyMs", V.Double, NAN, False),
    ("Result.ResponseMs", V.Double, NAN, False),
    ("Result.Timestamp", V.DateTime, datetime(1970, 1, 1, tzinfo=UTC), False),
    ("Result.Regions", V.Int32, 0, False),
    ("LateResult.PartId", V.String, "", False),
    ("LateResult.FrameId", V.Int64, -1, False),
    ("LateResult.Decision", V.String, "", False),
    ("LateResult.LatenessMs", V.Double, NAN, False),
    ("Counters.Parts", V.UInt32, 0, False),
    ("Counters.Passed", V.UInt32, 0, False),
    ("Counters.Failed", V.UInt32, 0, False),
    ("Counters.Errors", V.UInt32, 0, False),
    ("Counters.Timeouts", V.UInt32, 0, False),
    ("Counters.LateResults", V.UInt32, 0, False),
    ("Counters.HandshakeErrors", V.UInt32, 0, False),
    ("Counters.Frames", V.UInt32, 0, False),
    ("Counters.Dropped", V.UInt32, 0, False),
)
TYPES = {path: vtype for path, vtype, _init, _w in NODES}
# Flags go last: a PLC that sees ResultValid finds every result field already written.
FLAGS_LAST = ("Handshake.Busy", "Handshake.ResultValid", "State")
# name, input arguments (name, type)
METHODS: tuple[tuple[str, tuple[tuple[str, ua.VariantType], ...]], ...] = (
    ("Trigger", (("PartId", V.String),)),
    ("SwitchProduct", (("Product", V.String),)),
    ("Pause", ()),
    ("Resume", ()),
)
OUTPUTS = (("Ok", V.Boolean), ("Message", V.String))


def _argument(name: str, vtype: ua.VariantType) -> ua.Argument:
    return ua.Argument(Name=name, DataType=ua.NodeId(vtype.value), ValueRank=-1,
                       Description=ua.LocalizedText(name))


def utc(ts: float | None) -> datetime:
    """Unix seconds as an aware UTC datetime (the epoch for None)."""
    return datetime.fromtimestamp(ts if ts is not None else 0.0, UTC)


class LineSpace:
    """The nodes of one line. ``set(values)`` writes the values that changed, flags last."""

    def __init__(self, server: Server, idx: int, line: str) -> None:
        self.server, self.idx, self.line = server, idx, line
        self.ids: dict[str, ua.NodeId] = {}
        self.methods: dict[str, ua.NodeId] = {}
        self._last: dict[str, Any] = {}

    def node_id(self, path: str) -> ua.NodeId:
        return ua.NodeId(f"{self.line}.{path}", self.idx)

    async def build(self, method: Callable[[str], Callable]) -> Node:
        """Create the object, its folders, variables and methods; ``method(name)`` gives each method's callback."""
        root = await self.server.nodes.objects.add_object(ua.NodeId(self.line, self.idx),
                                                          ua.QualifiedName(self.line, self.idx))
        parents: dict[str, Node] = {"": root}
        for path, vtype, init, writable in NODES:
            group, _, name = path.rpartition(".")
            if group not in parents:
                parents[group] = await root.add_object(self.node_id(group), ua.QualifiedName(group, self.idx))
            var = await parents[group].add_variable(self.node_id(path), ua.QualifiedName(name, self.idx),
                                                    ua.Variant(init, vtype), vtype)
            if writable:
                await var.set_writable()
            self.ids[path] = var.nodeid
            self._last[path] = init
        for name, inputs in METHODS:
            m = await root.add_method(self.node_id(name), ua.QualifiedName(name, self.idx), method(name),
                                      [_argument(n, t) for n, t in inputs], [_argument(n, t) for n, t in OUTPUTS])
            self.methods[name] = m.nodeid
        return root

    def read(self, path: str) -> Any:
        return self.server.read_attribute_value(self.ids[path]).Value.Value

    async def set(self, values: dict[str, Any]) -> None:
        """Write ``values`` (path -> Python value) whose value changed; FLAGS_LAST after the others."""
        order = [p for p in values if p not in FLAGS_LAST] + [p for p in FLAGS_LAST if p in values]
        for path in order:
            v = values[path]
            old = self._last.get(path)
            if v == old or (isinstance(v, float) and isinstance(old, float) and math.isnan(v) and math.isnan(old)):
                continue
            await self.write(path, v)

    async def write(self, path: str, value: Any) -> None:
        self._last[path] = value
        await self.server.write_attribute_value(self.ids[path], ua.DataValue(ua.Variant(value, TYPES[path])))

    def owns(self, nodeid: ua.NodeId) -> str | None:
        """The path of one of this line's client-writable nodes, else None."""
        for path in ("Handshake.Trigger", "Handshake.ResultAck", "Handshake.PartId"):
            if self.ids.get(path) == nodeid:
                return path
        return None


def outputs(ok: bool, message: str) -> list[ua.Variant]:
    return [ua.Variant(ok, V.Boolean), ua.Variant(message[:4000], V.String)]


def written(params: Any, results: list[ua.StatusCode] | None) -> Iterable[tuple[ua.NodeId, Any]]:
    """(node id, value) of every value write of a WriteParameters that succeeded, in request order."""
    for i, wv in enumerate(params.NodesToWrite):
        ok = results is None or (i < len(results) and results[i].is_good())
        if ok and wv.AttributeId == ua.AttributeIds.Value and wv.Value is not None and wv.Value.Value is not None:
            yield wv.NodeId, wv.Value.Value.Value
