"""The MQTT consumer's handler: good reports reach live state, bad ones become dead letters
with a reason, gaps become alerts; nothing stops it. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import redis
from sqlalchemy import select

from loopline.ingest.mqtt.consumer import Inbound, StoreUnavailable
from loopline.ingest.shopfloor import ShopfloorHandler
from loopline.models.clock import Clock
from loopline.models.db import make_engine, make_sessions, transaction
from loopline.models.events import parse_crm_event
from loopline.models.live import LiveState, Update
from loopline.models.orders import apply_crm_event
from loopline.models.records import Alert, DeadLetter
from loopline.models.replan import sync_live
from tests.factories import order_event
from tests.servers import free_port

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
TS = NOW.isoformat()
PROGRESS = "loopline/v1/s1/L1/progress"
STATE = "loopline/v1/s1/L1/state"


@pytest.fixture
def sessions(any_sessions):
    """Every handler test on SQLite and on PostgreSQL (NUL, column widths, outages)."""
    return any_sessions


def _with_order(sessions, live: LiveState, qty: int = 10) -> None:
    """SO-1 with one work order WO-1-1 of ``qty`` units, in SQL and in the live model."""
    with transaction(sessions) as s:
        apply_crm_event(
            s,
            event=parse_crm_event(order_event("SO-1", lines=[("P1", qty)])),
            source="canonical",
            webhook_id="w1",
            raw="{}",
            actor="crm",
        )
    with sessions() as s:
        sync_live(s, live, now=NOW)


def _progress(seq: int, good: int, scrap: int = 0, wo: str = "WO-1-1") -> Inbound:
    return _msg(PROGRESS, {"seq": seq, "ts": TS, "work_order": wo, "good": good, "scrap": scrap})


def _dead_letters(sessions) -> list[DeadLetter]:
    with sessions() as s:
        return list(s.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def _msg(topic: str, body: object, mid: int = 1) -> Inbound:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Inbound(topic=topic, payload=payload, received_at=NOW, mid=mid)


def test_bad_input_is_dead_lettered_and_good_input_applied(sessions, live):
    live.apply([Update("line", "L1", {"state": "unavailable", "queue": []})])
    handler = ShopfloorHandler(sessions, live, Clock())
    ts = NOW.isoformat()
    handler(
        [
            _msg("loopline/v1/s1/L1/state", {"seq": 1, "ts": ts, "state": "down", "reason": "jam"}),
            _msg("loopline/v1/s1/L1/state", b"not json"),
            _msg("loopline/v1/s1/L1/progress", {"seq": 2, "ts": ts, "work_order": "WO-1"}),
            _msg("loopline/v1/s1/L9/state", {"seq": 1, "ts": ts, "state": "idle"}),
            _msg(
                "loopline/v1/s1/L1/progress",
                {"seq": 3, "ts": ts, "work_order": "WO-404", "good": 1, "scrap": 0},
            ),
            _msg("factory/L1/state", {"seq": 1}),
            _msg("loopline/v1/s1/L1/state", {"seq": 9, "ts": ts, "state": "running"}),
        ]
    )
    line = live.get("line", "L1")
    assert (line["state"], line["seq"]) == ("running", 9)
    with sessions() as s:
        reasons = sorted(d.reason for d in s.scalars(select(DeadLetter)))
        gap = s.scalar(select(Alert).where(Alert.kind == "mqtt_gap"))
    assert reasons == [
        "bad_topic",
        "invalid_json",
        "missing_field",
        "unknown_line",
        "unknown_work_order",
    ]
    assert gap is not None and "4–8" in gap.message
    assert (handler.applied, handler.rejected) == (2, 5)


def test_connection_state_is_an_alert(sessions, live):
    handler = ShopfloorHandler(sessions, live, Clock())
    handler.connection_changed(False, "broker unreachable")
    assert [a["kind"] for a in live.all("alert")] == ["mqtt_disconnected"]
    handler.connection_changed(True, "connected")
    assert live.all("alert") == []


def test_each_member_of_a_shared_group_has_its_own_disconnected_alert(sessions, live):
    """Issue 13 scale-out: member B reconnecting must not close member A's alert."""
    a = ShopfloorHandler(sessions, live, Clock(), serialize=True, member="ingest-a")
    b = ShopfloorHandler(sessions, live, Clock(), serialize=True, member="ingest-b")
    a.connection_changed(False, "connection reset")
    b.connection_changed(False, "connection reset")
    b.connection_changed(True, "connected")
    [alert] = live.all("alert")
    assert (alert["kind"], alert["entity_id"]) == ("mqtt_disconnected", "ingest-a")
    assert "ingest-a" in alert["message"]
    a.connection_changed(True, "connected")
    assert live.all("alert") == []


def test_implausible_counters_are_dead_lettered_and_never_stored(sessions, live):
    _with_order(sessions, live, qty=10)
    handler = ShopfloorHandler(sessions, live, Clock())
    handler([_progress(1, 3)])
    handler([_progress(2, 10**15), _progress(3, 2**31), _progress(4, 2**53 + 1)])
    wo = live.get("work_order", "WO-1-1")
    assert (wo["good"], wo["status"]) == (3, "running")
    dead = _dead_letters(sessions)
    assert [d.reason for d in dead] == ["implausible_counter"] * 3
    details = " | ".join(d.detail for d in dead)
    assert "good 1000000000000000 + scrap 0 exceeds 100 (10 x qty 10 of WO-1-1)" in details
    assert "good 2147483648 + scrap 0 exceeds 100" in details
    assert f"good {2**53 + 1} exceeds {2**53}" in details


def test_a_huge_seq_jump_is_reported_as_a_reset_not_a_gap(sessions, live):
    _with_order(sessions, live)
    handler = ShopfloorHandler(sessions, live, Clock())
    state = {"ts": TS, "state": "running"}
    handler([_msg(STATE, {"seq": 5, **state})])
    handler([_msg(STATE, {"seq": 2**62, **state}), _msg(STATE, {"seq": 2**50, **state})])
    with sessions() as s:
        alerts = list(s.scalars(select(Alert)))
    assert [a.kind for a in alerts] == ["mqtt_seq_reset"]
    assert "4611686018427387904" not in alerts[0].message
    assert "from 5 to 1125899906842624" in alerts[0].message
    assert [d.reason for d in _dead_letters(sessions)] == ["implausible_seq"]
    assert [a["kind"] for a in live.all("alert")] == ["mqtt_seq_reset"]
    assert live.get("line", "L1")["seq"] == 2**50


def test_nul_bytes_are_refused_and_every_dead_letter_of_the_batch_is_kept(sessions, live):
    _with_order(sessions, live)
    handler = ShopfloorHandler(sessions, live, Clock())
    good = {"seq": 1, "ts": TS, "work_order": "WO-1-1", "good": 2, "scrap": 0}
    handler(
        [
            _msg(PROGRESS, json.dumps(good).encode()[:-1] + b"\x00}"),
            _msg(PROGRESS, {**good, "seq": 2, "work_order": "WO-1-1\u0000"}),
            _msg(STATE, {"seq": 3, "ts": TS, "state": "down", "reason": "jam\u0000"}),
            _msg(STATE, b"not json \x00 either"),
            _msg(PROGRESS, {**good, "seq": 4}),
            _msg("loopline/v1/s1/L\x001/state", b"{}"),
        ]
    )
    dead = _dead_letters(sessions)
    assert [d.reason for d in dead] == ["nul_byte"] * 4 + ["bad_topic"]
    assert [d.detail for d in dead[1:3]] == [
        "nul_byte: work_order contains U+0000",
        "nul_byte: reason contains U+0000",
    ]
    assert "\x00" not in "".join(d.topic + d.payload + (d.detail or "") for d in dead)
    assert dead[0].payload.endswith("\\u0000}")  # kept, escaped
    assert live.get("work_order", "WO-1-1")["good"] == 2
    assert live.get("line", "L1")["state"] != "down"


def test_a_poison_message_becomes_a_handler_error_dead_letter(sessions, live):
    handler = ShopfloorHandler(sessions, live, Clock())
    msg = _msg(STATE, b'{"seq": 1, "boom": "\x00"}')
    handler.poison(msg, ZeroDivisionError("division by zero"))
    [dead] = _dead_letters(sessions)
    assert (dead.reason, dead.detail) == ("handler_error", "ZeroDivisionError: division by zero")
    assert dead.payload == '{"seq": 1, "boom": "\\u0000"}'


def test_a_store_that_is_down_raises_store_unavailable(sessions, live):
    down_redis = LiveState(redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=None))
    with pytest.raises(StoreUnavailable):
        ShopfloorHandler(sessions, down_redis, Clock())(
            [_msg(STATE, {"seq": 1, "ts": TS, "state": "idle"})]
        )
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone")
    down_sql = ShopfloorHandler(make_sessions(engine), live, Clock())
    with pytest.raises(StoreUnavailable):
        down_sql([_msg(STATE, b"not json")])  # a dead letter to store
    with pytest.raises(StoreUnavailable):
        down_sql.poison(_msg(STATE, b"x"), RuntimeError("x"))
    engine.dispose()


def test_redis_out_of_memory_is_an_outage_not_a_poison_message(sessions, live):
    _with_order(sessions, live)
    handler = ShopfloorHandler(sessions, live, Clock())
    live.redis.config_set("maxmemory", "1")  # every write now fails with OOM
    try:
        with pytest.raises(StoreUnavailable, match="OutOfMemoryError"):
            handler([_progress(1, 4)])
    finally:
        live.redis.config_set("maxmemory", "0")
    handler([_progress(1, 4)])  # the same batch again, once Redis has room
    assert live.get("work_order", "WO-1-1")["good"] == 4
    assert _dead_letters(sessions) == []


def test_a_second_publisher_on_a_line_raises_no_false_gap(sessions, live):
    """A manual message (or a second device) names its ``source``: its seq is its own
    stream, so neither it nor the sensor's next message looks like lost messages."""
    live.apply([Update("line", "L2", {"state": "running", "queue": []})])
    handler = ShopfloorHandler(sessions, live, Clock())
    ts = NOW.isoformat()
    topic = "loopline/v1/s1/L2/state"
    handler([_msg(topic, {"seq": s, "ts": ts, "state": "running"}) for s in (40, 41, 42)])
    handler([_msg(topic, {"seq": 1, "ts": ts, "state": "down", "reason": "jam", "source": "me"})])
    line = live.get("line", "L2")
    assert (line["state"], line["reason"]) == ("down", "jam")
    # The sensor goes on counting from where it was; a repeat of the manual one is ignored.
    handler([_msg(topic, {"seq": 43, "ts": ts, "state": "down", "reason": "jam"})])
    handler([_msg(topic, {"seq": 1, "ts": ts, "state": "running", "source": "me"})])
    assert live.get("line", "L2")["state"] == "down"
    handler([_msg(topic, {"seq": 2, "ts": ts, "state": "running", "source": "me"})])
    assert live.get("line", "L2")["state"] == "running"
    with sessions() as s:
        assert s.scalar(select(Alert).where(Alert.kind == "mqtt_gap")) is None
        assert list(s.scalars(select(DeadLetter))) == []
    # Each stream still reports its own real gaps.
    handler([_msg(topic, {"seq": 5, "ts": ts, "state": "idle", "source": "me"})])
    with sessions() as s:
        gap = s.scalar(select(Alert).where(Alert.kind == "mqtt_gap"))
    assert gap is not None and "3–4" in gap.message


def test_a_bad_source_is_dead_lettered(sessions, live):
    live.apply([Update("line", "L2", {"state": "running", "queue": []})])
    handler = ShopfloorHandler(sessions, live, Clock())
    ts = NOW.isoformat()
    handler(
        [_msg("loopline/v1/s1/L2/state", {"seq": 1, "ts": ts, "state": "idle", "source": "a b"})]
    )
    with sessions() as s:
        assert [d.reason for d in s.scalars(select(DeadLetter))] != []


def test_state_reports_are_split_ahead_of_the_bulk_keeping_each_lines_order():
    from loopline.ingest.mqtt.messages import parse
    from loopline.ingest.shopfloor import state_first

    def p(line: str, seq: int):
        body = {"seq": seq, "ts": TS, "work_order": "W", "good": seq, "scrap": 0}
        return parse(f"loopline/v1/s1/{line}/progress", json.dumps(body).encode())

    def s(line: str, seq: int):
        body = {"seq": seq, "ts": TS, "state": "down", "reason": "jam"}
        return parse(f"loopline/v1/s1/{line}/state", json.dumps(body).encode())

    batch = [p("L1", 1), p("L2", 1), s("L1", 2), p("L1", 3), p("L2", 2), p("L3", 1)]
    first, rest = state_first(batch)
    assert [(r.line, r.seq) for r in first] == [("L1", 1), ("L1", 2)]
    assert [(r.line, r.seq) for r in rest] == [("L2", 1), ("L1", 3), ("L2", 2), ("L3", 1)]
    assert state_first(batch[:2]) == ([], batch[:2])  # no state: nothing to put first


def test_a_split_batch_ends_as_the_whole_batch_would(sessions, live):
    """State first, then the rest: the same counters, state and seq, and no gap alert."""
    _with_order(sessions, live, qty=100)
    handler = ShopfloorHandler(sessions, live, Clock())
    state = {"seq": 3, "ts": TS, "state": "down", "reason": "jam"}
    handler([_progress(1, 5), _progress(2, 7), _msg(STATE, state), _progress(4, 9)])
    line, wo = live.get("line", "L1"), live.get("work_order", "WO-1-1")
    assert (line["state"], line["reason"], line["seq"]) == ("down", "jam", 4)
    assert wo["good"] == 9
    with sessions() as s:
        assert s.scalar(select(Alert).where(Alert.kind == "mqtt_gap")) is None
