"""Sparkplug B end to end: a real edge node (the simulator, paho, protobuf payloads) on a
real Mosquitto, Loopline's Sparkplug consumer and host, real Redis and SQL."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from loopline.ingest.sparkplug import schema
from loopline.ingest.sparkplug.mapping import SparkplugMapping
from loopline.ingest.sparkplug.service import SparkplugIngest
from loopline.models.clock import Clock
from loopline.models.db import transaction
from loopline.models.events import parse_crm_event
from loopline.models.live import LiveState
from loopline.models.oee import read_counts
from loopline.models.oee_records import LineStop
from loopline.models.orders import apply_crm_event
from loopline.models.records import Alert, DeadLetter
from loopline.models.replan import sync_live
from loopline.simulators.sparkplug_edge import SparkplugEdge
from tests.factories import order_event
from tests.ingest.mqtt.conftest import wait_for
from tests.ingest.sparkplug.conftest import CODE, GOOD, SCRAP, STATE, WO, plant

WAIT_S = 10.0
_ids = itertools.count()


def _metrics(good: int = 0, scrap: int = 0, state: int = 1) -> dict[str, tuple[int, object]]:
    return {
        GOOD: (schema.UINT64, good),
        SCRAP: (schema.UINT64, scrap),
        WO: (schema.STRING, "WO-1-1"),
        STATE: (schema.INT32, state),
        CODE: (schema.INT32, 0),
    }


@pytest.fixture
def mapping(request) -> SparkplugMapping:
    # A group of its own per test: the session broker outlives a test's retained messages.
    doc = plant().model_dump()
    doc["nodes"][0]["group"] = f"G{next(_ids)}"
    return SparkplugMapping.model_validate(doc)


@pytest.fixture
def ingest(mqtt_broker, sessions, live, mapping) -> Iterator[SparkplugIngest]:
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
        sync_live(s, live, now=datetime.now(UTC))
    spb = SparkplugIngest(
        mqtt_broker.url,
        f"spb-test-{next(_ids)}",
        mapping,
        sessions,
        live,
        Clock(),
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
    )
    spb.start()
    assert wait_for(lambda: spb.consumer.subscribed, WAIT_S)
    yield spb
    spb.stop()


def _edge(mqtt_broker, mapping: SparkplugMapping, bdseq: int = 0, **kw: int) -> SparkplugEdge:
    edge = SparkplugEdge(
        mqtt_broker.url, mapping.nodes[0].group, "E1", {"PLC1": _metrics(**kw)}, bdseq=bdseq
    )
    edge.start()
    assert edge.born.wait(WAIT_S)
    return edge


def _line(live: LiveState) -> dict:
    return live.get("line", "L1") or {}


def _good(live: LiveState) -> int | None:
    return (live.get("work_order", "WO-1-1") or {}).get("good")


def test_births_data_downtime_and_counters_reach_the_live_model(
    ingest, mqtt_broker, live, sessions, mapping
):
    edge = _edge(mqtt_broker, mapping, good=5)
    try:
        assert wait_for(lambda: _line(live).get("state") == "running" and _good(live) == 5, WAIT_S)
        edge.set_many("PLC1", {GOOD: 40, SCRAP: 2})
        assert wait_for(lambda: _good(live) == 40, WAIT_S)
        assert live.get("work_order", "WO-1-1")["scrap"] == 2
        edge.set_many("PLC1", {STATE: 3, CODE: 17})
        assert wait_for(lambda: _line(live).get("state") == "down", WAIT_S)
        assert _line(live)["reason_code"] == "BD-MECH"
        with sessions() as s:
            stop = s.scalar(select(LineStop).where(LineStop.line_id == "L1"))
        assert stop is not None and (stop.state, stop.reason_code) == ("down", "BD-MECH")
        now = datetime.now(UTC)
        counts = read_counts(live.redis, "L1", now - timedelta(hours=1), now + timedelta(hours=1))
        assert (counts.good, counts.scrap) == (40, 2)  # OEE counts, as from the Loopline topics
        assert ingest.host.sent_total == 0  # no gap, no rebirth
    finally:
        edge.stop()


def test_a_seq_gap_sends_a_real_rebirth_command_and_the_births_come_back(
    ingest, mqtt_broker, live, sessions, mapping
):
    edge = _edge(mqtt_broker, mapping)
    try:
        assert wait_for(lambda: _line(live).get("state") == "running", WAIT_S)
        edge.lose(3)
        edge.set_many("PLC1", {GOOD: 12})
        assert wait_for(lambda: edge.rebirths == 1, WAIT_S), ingest.host.sent
        assert list(ingest.host.sent) == [(mapping.nodes[0].group, "E1")]
        assert wait_for(lambda: _good(live) == 12, WAIT_S)
        with sessions() as s:
            gap = s.scalar(select(Alert).where(Alert.kind == "sparkplug_gap"))
        assert gap is not None and gap.details["expected"] == 2 and gap.details["got"] == 5
        # After the rebirth the node's seq starts over from 0: no new gap.
        edge.set_many("PLC1", {GOOD: 13})
        assert wait_for(lambda: _good(live) == 13, WAIT_S)
        assert ingest.adapter_counts()["gaps"] == 1
    finally:
        edge.stop()


def test_a_dead_node_makes_its_lines_unavailable_until_it_is_born_again(
    ingest, mqtt_broker, live, mapping
):
    edge = _edge(mqtt_broker, mapping, state=1)
    assert wait_for(lambda: _line(live).get("state") == "running", WAIT_S)
    edge.die()  # no DISCONNECT: the broker publishes the NDEATH Will
    assert wait_for(lambda: _line(live).get("state") == "unavailable", WAIT_S)
    assert _line(live)["reason"] == "Sparkplug NDEATH"
    assert live.get("line", "L2")["state"] == "unavailable"
    back = _edge(mqtt_broker, mapping, bdseq=1, state=3, good=7)
    try:
        assert wait_for(lambda: _line(live).get("state") == "down", WAIT_S)
        assert wait_for(lambda: _good(live) == 7, WAIT_S)
    finally:
        back.stop()
    assert wait_for(lambda: _line(live).get("state") == "unavailable", WAIT_S)  # a clean NDEATH


def test_ingest_started_after_the_births_asks_for_them(
    mqtt_broker, sessions, live, mapping, ingest
):
    ingest.stop()
    edge = _edge(mqtt_broker, mapping, good=3)
    try:
        late = SparkplugIngest(
            mqtt_broker.url, f"spb-late-{next(_ids)}", mapping, sessions, live, Clock()
        )
        late.start()
        try:
            assert wait_for(lambda: late.consumer.subscribed, WAIT_S)
            edge.set_many("PLC1", {GOOD: 4})  # data of a session this host never saw born
            assert wait_for(lambda: edge.rebirths == 1, WAIT_S)
            assert wait_for(lambda: _good(live) == 4, WAIT_S)
        finally:
            late.stop()
    finally:
        edge.stop()
    ingest.start()  # the fixture stops it again


def test_a_bad_payload_is_dead_lettered_whole_and_the_feed_goes_on(
    ingest, mqtt_broker, live, sessions, mapping
):
    edge = _edge(mqtt_broker, mapping)
    try:
        assert wait_for(lambda: _line(live).get("state") == "running", WAIT_S)
        junk = b"\x0a\xff\xff\xff\xff\xff not protobuf"
        edge.publish_raw(edge.topic("DDATA", "PLC1"), junk)
        edge.set_many("PLC1", {GOOD: 9})
        assert wait_for(lambda: _good(live) == 9, WAIT_S)

        def dead() -> list[DeadLetter]:
            with sessions() as s:
                return list(s.scalars(select(DeadLetter)))

        assert wait_for(lambda: len(dead()) == 1, WAIT_S)
        (d,) = dead()
        assert (d.source, d.reason) == ("sparkplug", "sparkplug_bad_payload")
        assert d.topic.endswith("/DDATA/E1/PLC1")
        assert base64.b64decode(d.payload.removeprefix("base64:")) == junk
    finally:
        edge.stop()


def test_the_host_announces_itself_retained(ingest, mqtt_broker):
    got: list[bytes] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{next(_ids)}")
    c.on_message = lambda cl, u, msg: got.append(bytes(msg.payload))
    c.connect(mqtt_broker.host, mqtt_broker.port)
    c.subscribe(ingest.host.topic, qos=1)
    c.loop_start()
    try:
        assert wait_for(lambda: any(b'"online": true' in g for g in got), WAIT_S), got
    finally:
        c.loop_stop()
        c.disconnect()
