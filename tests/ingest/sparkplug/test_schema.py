"""The Sparkplug B schema reads what the Eclipse Tahu schema's generated code writes."""

from __future__ import annotations

from loopline.ingest.sparkplug import schema
from loopline.ingest.sparkplug.adapter import rebirth_payload

# Written by the Tahu schema's protoc-generated code (the copy in pysparkplug 0.6.1): a
# payload (timestamp 1700000000000, seq 7) of metrics bdSeq (UInt64 3), "Production/Good
# Count" (alias 5, UInt64 1250, timestamp +1 ms), "Status/State" (alias 6, String), T
# (alias 9, Int8 -1 as 255), F (Float 1.5), B (Boolean true), DS (a DataSet), P (Int32 4
# with a property set): the last two carry fields Loopline does not declare.
TAHU = bytes.fromhex(
    "0880d095ffbc31120b0a0562645365712008580312250a1550726f64756374696f6e2f476f6f6420"
    "436f756e7410051881d095ffbc31200858e209121b0a0c5374617475732f53746174651006200c7a"
    "0772756e6e696e67120a0a01541009200150ff01120a0a01462009650000c03f12070a0142200b70"
    "01120e0a02445320108a01050801120161120c0a015020034a030a016b50041807"
)


def test_a_payload_written_by_the_tahu_generated_code_decodes():
    p = schema.Payload.FromString(TAHU)
    assert (p.timestamp, p.seq) == (1700000000000, 7)
    got = [(m.name, m.alias, m.datatype, schema.metric_value(m)) for m in p.metrics]
    assert got == [
        ("bdSeq", 0, schema.UINT64, 3),
        ("Production/Good Count", 5, schema.UINT64, 1250),
        ("Status/State", 6, schema.STRING, "running"),
        ("T", 9, schema.INT8, -1),
        ("F", 0, schema.FLOAT, 1.5),
        ("B", 0, schema.BOOLEAN, True),
        ("DS", 0, 16, None),  # a data set: not declared, skipped, no value
        ("P", 0, schema.INT32, 4),
    ]
    assert p.metrics[1].timestamp == 1700000000001


def test_what_we_write_is_the_wire_format_of_the_spec():
    # Hand-assembled from the spec's field numbers: Payload.timestamp=1 (varint), metrics=2,
    # seq=3; Metric.name=1, alias=2, datatype=4, boolean_value=14.
    p = schema.Payload(timestamp=1, seq=2)
    m = p.metrics.add(name="R", alias=3)
    schema.set_value(m, schema.BOOLEAN, True)
    assert p.SerializeToString() == bytes.fromhex(
        "0801" + "1209" + "0a0152" + "1003" + "200b" + "7001" + "1802"
    )


def test_signed_values_travel_as_twos_complement():
    p = schema.Payload()
    for dt, v in [
        (schema.INT8, -128),
        (schema.INT16, -2),
        (schema.INT32, -(2**31)),
        (schema.INT64, -5),
    ]:
        schema.set_value(p.metrics.add(), dt, v)
    back = schema.Payload.FromString(p.SerializeToString())
    assert [schema.metric_value(m) for m in back.metrics] == [-128, -2, -(2**31), -5]
    assert back.metrics[0].int_value == 128


def test_the_rebirth_command_names_node_control_rebirth():
    p = schema.Payload.FromString(rebirth_payload(1234))
    assert [(m.name, m.datatype, schema.metric_value(m)) for m in p.metrics] == [
        ("Node Control/Rebirth", schema.BOOLEAN, True)
    ]
    assert p.timestamp == 1234
