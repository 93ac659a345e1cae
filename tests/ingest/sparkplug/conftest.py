"""Sparkplug test helpers: payloads built with the schema, a plant's mapping."""

from __future__ import annotations

from typing import Any

from loopline.ingest.sparkplug import schema
from loopline.ingest.sparkplug.mapping import SparkplugMapping, parse_mapping

GOOD = "Production/Good Count"
SCRAP = "Production/Scrap Count"
WO = "Production/Work Order"
STATE = "Status/Machine State"
CODE = "Status/Stop Code"


def mapping_doc(**extra: Any) -> dict[str, Any]:
    """One node G/E1: device PLC1 is line L1 (all roles), the node itself is line L2."""
    return {
        "site": "s1",
        "nodes": [
            {
                "group": "G",
                "edge": "E1",
                "devices": [
                    {
                        "device": "PLC1",
                        "line": "L1",
                        "metrics": {
                            "good": GOOD,
                            "scrap": SCRAP,
                            "work_order": WO,
                            "state": STATE,
                            "reason_code": CODE,
                        },
                        "states": {1: "running", 2: "idle", 3: "down", 4: "changeover"},
                        "reason_codes": {17: "BD-MECH"},
                    },
                    {
                        "line": "L2",
                        "metrics": {"state": STATE},
                        "states": {1: "running", 3: "down"},
                    },
                ],
            }
        ],
        **extra,
    }


def plant(**extra: Any) -> SparkplugMapping:
    return parse_mapping(mapping_doc(**extra))


def payload(
    metrics: list[tuple[str | None, int | None, int, Any]],
    *,
    seq: int | None = None,
    ts: int = 1_764_576_000_000,
) -> bytes:
    """A Sparkplug payload; metrics are (name, alias, datatype, value)."""
    p = schema.Payload(timestamp=ts)
    if seq is not None:
        p.seq = seq
    for name, alias, datatype, value in metrics:
        m = p.metrics.add()
        if name is not None:
            m.name = name
        if alias is not None:
            m.alias = alias
        schema.set_value(m, datatype, value)
    return bytes(p.SerializeToString())


def nbirth(bdseq: int = 0, seq: int = 0, state: int | None = None) -> bytes:
    metrics: list[tuple[str | None, int | None, int, Any]] = [("bdSeq", None, schema.UINT64, bdseq)]
    if state is not None:
        metrics.append((STATE, 1, schema.INT32, state))
    return payload(metrics, seq=seq)


def ndeath(bdseq: int = 0) -> bytes:
    return payload([("bdSeq", None, schema.UINT64, bdseq)])


def dbirth(seq: int, *, good: int = 0, scrap: int = 0, wo: str = "WO-1-1", state: int = 1) -> bytes:
    return payload(
        [
            (GOOD, 10, schema.UINT64, good),
            (SCRAP, 11, schema.UINT64, scrap),
            (WO, 12, schema.STRING, wo),
            (STATE, 13, schema.INT32, state),
            (CODE, 14, schema.INT32, 0),
        ],
        seq=seq,
    )
