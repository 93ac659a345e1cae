"""The Sparkplug B payload schema (Eclipse Tahu's ``sparkplug_b.proto``) for ``protobuf``.

Why not a Sparkplug library: pysparkplug 0.6.1 (the maintained one) and mqtt-spb-wrapper
both require paho-mqtt < 2, and Loopline runs on paho-mqtt 2; their MQTT clients are what
needs the old paho, their payload part is this schema. So the schema is built here from the
Sparkplug B 3.0 specification's field numbers (chapter 6.4, "Payload Definition") and
decoded by Google's ``protobuf`` runtime; no generated code, no ``protoc`` step.

Only what Loopline reads is declared: the payload's timestamp, metrics, seq, uuid and body,
and a metric's name, alias, timestamp, datatype, flags and scalar values. A metric's
metadata, properties, data sets and templates are undeclared fields: protobuf skips them
(wire-compatible), and Loopline maps no such metric.
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE: Final = "org.eclipse.tahu.protobuf"
_F = descriptor_pb2.FieldDescriptorProto

# Sparkplug B 3.0, 6.4.16 "Datatypes": the numbers a metric's ``datatype`` carries.
DATATYPES: Final = {
    0: "Unknown",
    1: "Int8",
    2: "Int16",
    3: "Int32",
    4: "Int64",
    5: "UInt8",
    6: "UInt16",
    7: "UInt32",
    8: "UInt64",
    9: "Float",
    10: "Double",
    11: "Boolean",
    12: "String",
    13: "DateTime",
    14: "Text",
    15: "UUID",
    16: "DataSet",
    17: "Bytes",
    18: "File",
    19: "Template",
}
INT8, INT16, INT32, INT64 = 1, 2, 3, 4
UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT, UUID = 9, 10, 11, 12, 13, 14, 15

# (name, number, type, label, oneof index or None)
_METRIC_FIELDS: Final = (
    ("name", 1, _F.TYPE_STRING, None),
    ("alias", 2, _F.TYPE_UINT64, None),
    ("timestamp", 3, _F.TYPE_UINT64, None),
    ("datatype", 4, _F.TYPE_UINT32, None),
    ("is_historical", 5, _F.TYPE_BOOL, None),
    ("is_transient", 6, _F.TYPE_BOOL, None),
    ("is_null", 7, _F.TYPE_BOOL, None),
    ("int_value", 10, _F.TYPE_UINT32, 0),
    ("long_value", 11, _F.TYPE_UINT64, 0),
    ("float_value", 12, _F.TYPE_FLOAT, 0),
    ("double_value", 13, _F.TYPE_DOUBLE, 0),
    ("boolean_value", 14, _F.TYPE_BOOL, 0),
    ("string_value", 15, _F.TYPE_STRING, 0),
    ("bytes_value", 16, _F.TYPE_BYTES, 0),
)
_PAYLOAD_FIELDS: Final = (
    ("timestamp", 1, _F.TYPE_UINT64, _F.LABEL_OPTIONAL),
    ("seq", 3, _F.TYPE_UINT64, _F.LABEL_OPTIONAL),
    ("uuid", 4, _F.TYPE_STRING, _F.LABEL_OPTIONAL),
    ("body", 5, _F.TYPE_BYTES, _F.LABEL_OPTIONAL),
)


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(
        name="loopline_sparkplug_b.proto", package=_PACKAGE, syntax="proto2"
    )
    payload = f.message_type.add(name="Payload")
    metric = payload.nested_type.add(name="Metric")
    metric.oneof_decl.add(name="value")
    for name, number, ftype, oneof in _METRIC_FIELDS:
        field = metric.field.add(name=name, number=number, type=ftype, label=_F.LABEL_OPTIONAL)
        if oneof is not None:
            field.oneof_index = oneof
    for name, number, ftype, label in _PAYLOAD_FIELDS:
        payload.field.add(name=name, number=number, type=ftype, label=label)
    payload.field.add(
        name="metrics",
        number=2,
        type=_F.TYPE_MESSAGE,
        label=_F.LABEL_REPEATED,
        type_name=f".{_PACKAGE}.Payload.Metric",
    )
    # Why: the spec reserves 6 and up for extensions; declaring the range keeps them legal.
    payload.extension_range.add(start=6, end=536870912)
    return f


# A pool of our own, so nothing clashes with another copy of the Tahu schema in the process.
_POOL: Final = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
Payload: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.Payload"))
Metric: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName(f"{_PACKAGE}.Payload.Metric")
)

_SIGNED_BITS: Final = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}


def metric_value(metric: Any) -> int | float | bool | str | bytes | None:
    """A decoded metric's value as Python, ``None`` when it is null or has none.

    Signed integers travel in the unsigned ``int_value``/``long_value`` fields as two's
    complement (Sparkplug 3.0, 6.4.16): they are turned back into negatives here.
    """
    if metric.is_null:
        return None
    which = metric.WhichOneof("value")
    if which is None:
        return None
    value = getattr(metric, which)
    bits = _SIGNED_BITS.get(metric.datatype)
    if bits is not None and isinstance(value, int) and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value  # type: ignore[no-any-return]


def set_value(metric: Any, datatype: int, value: int | float | bool | str | bytes) -> None:
    """Put ``value`` in the field its Sparkplug ``datatype`` travels in (encoding side)."""
    metric.datatype = datatype
    if datatype in (INT8, INT16, INT32, UINT8, UINT16, UINT32):
        metric.int_value = int(value) % (1 << _SIGNED_BITS.get(datatype, 32))
    elif datatype in (INT64, UINT64, DATETIME):
        metric.long_value = int(value) % (1 << 64)
    elif datatype == FLOAT:
        metric.float_value = float(value)
    elif datatype == DOUBLE:
        metric.double_value = float(value)
    elif datatype == BOOLEAN:
        metric.boolean_value = bool(value)
    elif datatype in (STRING, TEXT, UUID):
        metric.string_value = str(value)
    else:
        raise ValueError(f"datatype {datatype} ({DATATYPES.get(datatype, '?')}) is not a scalar")
