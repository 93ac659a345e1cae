"""The MQTT consumer's handler: good reports reach live state, bad ones become dead letters
with a reason, gaps become alerts; nothing stops it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import select

from ingest.mqtt.consumer import Inbound
from ingest.shopfloor import ShopfloorHandler
from models.clock import Clock
from models.live import Update
from models.records import Alert, DeadLetter

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


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
