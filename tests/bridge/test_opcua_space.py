"""The OPC UA node table: one definition per node, the flags written last, writes read back in order."""

from __future__ import annotations

from asyncua import ua

from inspector.bridge.opcua_space import FLAGS_LAST, NODES, TYPES, utc, written


def test_the_table():
    paths = [p for p, *_ in NODES]
    assert len(paths) == len(set(paths)) == len(TYPES)
    writable = {p for p, _t, _i, w in NODES if w}
    assert writable == {"Handshake.PartId", "Handshake.Trigger", "Handshake.ResultAck"}  # the PLC writes only these
    assert set(FLAGS_LAST) <= set(paths)
    assert TYPES["Result.FrameId"] == ua.VariantType.Int64 and TYPES["Handshake.Trigger"] == ua.VariantType.Boolean
    assert utc(0.0).year == 1970 and utc(1.8e9).tzinfo is not None


def test_written_keeps_only_good_value_writes_in_order():
    a, b, c = ua.NodeId("l.a", 2), ua.NodeId("l.b", 2), ua.NodeId("l.c", 2)
    params = ua.WriteParameters(NodesToWrite=[
        ua.WriteValue(NodeId=a, AttributeId=ua.AttributeIds.Value, Value=ua.DataValue(ua.Variant("P1"))),
        ua.WriteValue(NodeId=b, AttributeId=ua.AttributeIds.Value, Value=ua.DataValue(ua.Variant(True))),
        ua.WriteValue(NodeId=c, AttributeId=ua.AttributeIds.DisplayName, Value=ua.DataValue(ua.Variant("x"))),
    ])
    good, bad = ua.StatusCode(), ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
    assert list(written(params, [good, good, good])) == [(a, "P1"), (b, True)]
    assert list(written(params, [good, bad, good])) == [(a, "P1")]
