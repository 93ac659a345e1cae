"""The Sparkplug handler on real Redis and SQL: a batch retried after an outage is decoded
once, deaths split a batch in order, dead letters keep the payload."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from loopline.ingest.mqtt.consumer import Inbound, StoreUnavailable
from loopline.ingest.sparkplug import schema
from loopline.ingest.sparkplug.handler import SparkplugHandler
from loopline.models.clock import Clock
from loopline.models.db import transaction
from loopline.models.events import parse_crm_event
from loopline.models.orders import apply_crm_event
from loopline.models.records import Alert, DeadLetter
from loopline.models.replan import sync_live
from tests.factories import order_event
from tests.ingest.sparkplug.conftest import dbirth, nbirth, ndeath, payload, plant

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
N = "spBv1.0/G/{}/E1"
D = "spBv1.0/G/{}/E1/PLC1"
_mid = iter(range(1, 10**6))


def _in(topic: str, body: bytes) -> Inbound:
    return Inbound(topic=topic, payload=body, received_at=NOW, mid=next(_mid))


@pytest.fixture
def handler(sessions, live):
    with transaction(sessions) as s:
        apply_crm_event(
            s,
            event=parse_crm_event(order_event("SO-1", lines=[("P1", 100)])),
            source="canonical",
            webhook_id="w1",
            raw="{}",
            actor="crm",
        )
    with sessions() as s:
        sync_live(s, live, now=NOW)
    asked: list[tuple[str, str]] = []
    h = SparkplugHandler(
        sessions, live, Clock(), plant(), rebirth=lambda g, e: asked.append((g, e))
    )
    h.asked = asked  # type: ignore[attr-defined]
    return h


def _data(seq: int, good: int) -> bytes:
    return payload([(None, 10, schema.UINT64, good)], seq=seq)


def test_a_batch_handed_back_after_an_outage_is_decoded_once(handler, sessions, live):
    handler([_in(N.format("NBIRTH"), nbirth()), _in(D.format("DBIRTH"), dbirth(1, good=3))])
    assert live.get("work_order", "WO-1-1")["good"] == 3
    batch = [_in(D.format("DDATA"), _data(4, 8))]  # seq 2 and 3 never came
    live.redis.config_set("maxmemory", "1")  # every write now fails (a real Redis refusal)
    try:
        with pytest.raises(StoreUnavailable):
            handler(batch)
    finally:
        live.redis.config_set("maxmemory", "0")
    handler(batch)  # the consumer hands the same batch back
    assert live.get("work_order", "WO-1-1")["good"] == 8
    assert handler.asked == [("G", "E1")]  # one rebirth request, not one per try
    assert handler.adapter.counts["gaps"] == 1
    with sessions() as s:
        alerts = list(s.scalars(select(Alert).where(Alert.kind == "sparkplug_gap")))
    assert [(a.details["expected"], a.details["got"]) for a in alerts] == [(2, 4)]


def test_a_death_inside_a_batch_lands_between_what_came_before_and_after(handler, live):
    handler(
        [
            _in(N.format("NBIRTH"), nbirth(bdseq=1)),
            _in(D.format("DBIRTH"), dbirth(1, good=2)),
            _in(D.format("DDATA"), _data(2, 5)),
            _in(N.format("NDEATH"), ndeath(bdseq=1)),
        ]
    )
    assert live.get("line", "L1")["state"] == "unavailable"
    assert live.get("line", "L1")["reason"] == "Sparkplug NDEATH"
    assert live.get("work_order", "WO-1-1")["good"] == 5
    handler(
        [
            _in(N.format("NDEATH"), ndeath(bdseq=1)),
            _in(N.format("NBIRTH"), nbirth(bdseq=2)),
            _in(D.format("DBIRTH"), dbirth(1, good=6, state=3)),
        ]
    )
    line = live.get("line", "L1")
    assert line["state"] == "down"  # born again after the death, in one batch
    assert line["seq@sparkplug"] >= 2
    assert live.get("work_order", "WO-1-1")["good"] == 6


def test_every_problem_is_a_dead_letter_with_the_payload_kept(handler, sessions):
    junk = b"\x12\x05broken"
    handler([_in(D.format("DDATA"), junk), _in(N.format("NBIRTH"), payload([], seq=0))])
    with sessions() as s:
        dead = list(s.scalars(select(DeadLetter).order_by(DeadLetter.id)))
    assert [(d.source, d.reason) for d in dead] == [
        ("sparkplug", "sparkplug_bad_payload"),
        ("sparkplug", "sparkplug_no_bdseq"),
    ]
    assert dead[0].payload.startswith("base64:")
    assert handler.asked == [("G", "E1")]


def test_a_report_the_live_model_refuses_is_a_sparkplug_dead_letter(handler, sessions, live):
    handler(
        [_in(N.format("NBIRTH"), nbirth()), _in(D.format("DBIRTH"), dbirth(1, good=3, wo="WO-404"))]
    )
    with sessions() as s:
        dead = list(s.scalars(select(DeadLetter)))
    assert [(d.source, d.reason) for d in dead] == [("sparkplug", "unknown_work_order")]
    assert "WO-404" in dead[0].detail and dead[0].payload.startswith("base64:")
    assert live.get("line", "L1")["state"] == "running"  # the state in the same birth applied
