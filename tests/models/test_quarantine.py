"""A bad value never halts the worker: the poisoned order, work order or line is quarantined
(one alert) and every other order goes on being replanned, alerted on and reported, on
SQLite and PostgreSQL with a real Redis (ISSUE8 item 1)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from loopline.models.clock import Clock
from loopline.models.db import transaction
from loopline.models.events import parse_crm_event
from loopline.models.live import Update, key
from loopline.models.loop import Loop
from loopline.models.orders import apply_crm_event
from loopline.models.quarantine import QUARANTINE_KIND, Findings, count_problem, record
from loopline.models.records import Alert, LineRate, OrderLine, OutboxEvent, WorkOrder
from tests.factories import loop_config, order_event, plan_window


@pytest.fixture
def sessions(any_sessions):
    """These tests run on SQLite and on PostgreSQL."""
    return any_sessions


def _order(sessions, order_id, lines, days=5):
    now = datetime.now(UTC)
    body = order_event(order_id, 1, lines, (now + timedelta(days=days)).date())
    with transaction(sessions) as s:
        apply_crm_event(
            s,
            event=parse_crm_event(body),
            source="canonical",
            webhook_id=f"{order_id}-1",
            raw="{}",
            actor="crm",
        )


def _quarantined(sessions) -> dict[str, Alert]:
    with sessions() as s:
        rows = s.scalars(select(Alert).where(Alert.kind == QUARANTINE_KIND)).all()
    return {a.entity_id: a for a in rows}


def _feedback(sessions) -> dict[str, list[dict]]:
    with sessions() as s:
        rows = s.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r.order_id, []).append(r.payload)
    return out


def test_a_poisoned_value_is_quarantined_and_the_plant_goes_on(sessions, live):
    for order_id, lines in [
        ("SO-1", [("P1", 100)]),
        ("SO-2", [("P1", 100)]),
        ("SO-3", [("P2", 50)]),
        ("SO-4", [("P1", 10)]),
    ]:
        _order(sessions, order_id, lines)
    loop = Loop(sessions, live, Clock(), loop_config(window=plan_window(promise_policy="earliest")))
    loop.replan_now("start")

    # Poison 1, a work order: a 32-bit overflow straight into Redis (PostgreSQL refuses it).
    live.redis.hset(key("work_order", "WO-1-1"), mapping={"good": "2147483648"})
    live.redis.hset(key("work_order", "WO-1-1"), mapping={"status": json.dumps("running")})
    # Poison 2, an order stored before any bound existed: two billion units.
    with transaction(sessions) as s:
        s.execute(update(WorkOrder).where(WorkOrder.id == "WO-4-1").values(qty=2_000_000_000))
        s.execute(update(OrderLine).where(OrderLine.order_id == "SO-4").values(qty=2_000_000_000))
    # Poison 3, a line: its running work at a rate whose ETA leaves the calendar.
    live.apply(
        [Update("work_order", "WO-2-1", {"status": "running", "line": "L2", "rate_uph": 1e-9})]
    )
    # The healthy rest: progress to checkpoint, a line down to alert on, a new order.
    now = datetime.now(UTC)
    live.apply(
        [
            Update("work_order", "WO-3-1", {"status": "running", "line": "L1", "good": 7}),
            Update(
                "line",
                "L1",
                {
                    "state": "down",
                    "reported_state": "down",
                    "reason": "jam",
                    "since": (now - timedelta(hours=1)).isoformat(),
                    "last_seen": now.isoformat(),
                },
            ),
        ]
    )
    # Lines only the live state knows: one whose "since" is not a time, one whose reason
    # has a NUL (PostgreSQL refuses it in the alert; SQLite keeps it).
    live.apply(
        [
            Update(
                "line", "L9", {"state": "down", "since": "garbage", "last_seen": now.isoformat()}
            ),
            Update(
                "line",
                "L8",
                {
                    "state": "down",
                    "reason": "jam\x00",
                    "since": (now - timedelta(hours=1)).isoformat(),
                    "last_seen": now.isoformat(),
                },
            ),
        ]
    )
    _order(sessions, "SO-5", [("P1", 30)])

    outcome = loop.replan_now("after poison")
    assert "SO-5" in outcome.promised  # the other orders are still planned and promised
    assert loop.tick() is True
    assert loop.tick() is True

    with sessions() as s:
        alerts = s.scalars(select(Alert).where(Alert.status == "open")).all()
        assert s.get(WorkOrder, "WO-3-1").good == 7  # checkpointed
        assert s.get(WorkOrder, "WO-1-1").good == 0  # the poison never reached SQL
    assert "line_down:L1" in {a.key for a in alerts}  # alerts evaluated
    assert _feedback(sessions)["SO-5"][0]["promised_date"]  # feedback queued

    q = _quarantined(sessions)
    nul_refused = {"L8"} if sessions.kw["bind"].dialect.name == "postgresql" else set()
    expected = {"WO-1-1", "WO-4-1", "L2", "L9"} | nul_refused
    assert set(q) == expected, {k: a.message for k, a in q.items()}
    assert "alerts" in q["L9"].details["steps"]
    assert all((a.role, a.status, a.severity) == ("it", "open", "critical") for a in q.values())
    assert "2147483648" in q["WO-1-1"].message and "SO-1" in q["WO-1-1"].message
    assert q["WO-1-1"].entity == "work_order"
    assert "qty" in q["WO-4-1"].message and "replan" in q["WO-4-1"].message
    assert (q["L2"].entity, q["L2"].details["steps"].keys() >= {"estimate"}) == ("line", True)
    assert {a["kind"] for a in live.all("alert")} >= {QUARANTINE_KIND, "line_down"}

    # Good data again: the quarantine clears, the value is checkpointed.
    live.redis.hset(key("work_order", "WO-1-1"), mapping={"good": "40"})
    loop.replan_now("fixed")
    assert loop.tick() is True
    q = _quarantined(sessions)
    assert q["WO-1-1"].status == "resolved" and q["WO-4-1"].status == "open"
    with sessions() as s:
        assert s.get(WorkOrder, "WO-1-1").good == 40
        assert len(s.scalars(select(Alert).where(Alert.key == q["L2"].key)).all()) == 1


def test_implausible_counts():
    assert count_problem({"good": 10, "scrap": 2}, 10) is None
    assert count_problem({"good": 100}, 10) is None  # an overrun, still believable
    assert "implausible" in (count_problem({"good": 10**15}, 10) or "")
    assert "implausible" in (count_problem({"good": 2**31}, 10**9) or "")
    assert "negative" in (count_problem({"scrap": -1}, 10) or "")
    assert "whole" in (count_problem({"good": "7"}, 10) or "")
    assert "qty" in (count_problem({"good": 1}, 0) or "")
    assert count_problem({"good": 5000}, None) is None  # no quantity known yet
    assert "implausible" in (count_problem({"good": 2**31}, None) or "")


def test_quarantine_alert_text_is_safe_for_sql(sessions):
    findings = Findings()
    findings.flag("estimate", "line", "L\x00" + "9" * 200, ValueError("bad \x00 value"))
    findings.finished("estimate")
    with transaction(sessions) as s:
        record(s, findings, now=datetime.now(UTC))
    [alert] = _quarantined(sessions).values()
    assert "\x00" not in alert.message and len(alert.entity_id) <= 80
    with transaction(sessions) as s:  # the same finding again: still one alert
        record(s, findings, now=datetime.now(UTC))
    assert len(_quarantined(sessions)) == 1


def test_an_overdue_order_is_late_work_not_bad_data(sessions, live):
    _order(sessions, "SO-1", [("P1", 100)], days=-3)
    _order(sessions, "SO-2", [("P1", 100)])
    outcome = Loop(
        sessions, live, Clock(), loop_config(window=plan_window(promise_policy="earliest"))
    ).replan_now("overdue")
    assert outcome.jobs == 2 and set(outcome.promised) == {"SO-1", "SO-2"}
    assert _quarantined(sessions) == {}


def test_a_line_the_planner_refuses_is_left_out_of_the_replan(sessions, live):
    _order(sessions, "SO-1", [("P1", 100)])
    _order(sessions, "SO-2", [("P2", 50)])
    with transaction(sessions) as s:
        s.execute(update(LineRate).where(LineRate.line_id == "L2").values(units_per_hour=-5.0))
    outcome = Loop(
        sessions, live, Clock(), loop_config(window=plan_window(promise_policy="earliest"))
    ).replan_now("bad rate")
    assert set(outcome.promised) == {"SO-1", "SO-2"}
    with sessions() as s:
        assert {w.line_id for w in s.scalars(select(WorkOrder))} == {"L1"}
    q = _quarantined(sessions)
    assert set(q) == {"L2"} and "rates" in q["L2"].message
