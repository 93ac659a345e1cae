"""Delivery and follow-up: tasks for the sales rep, owed to the CRM through the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from loopline.models.db import transaction
from loopline.models.events import parse_crm_event
from loopline.models.followup import (
    BadTaskInput,
    NotDeliverable,
    OrderDelivery,
    TaskDone,
    complete_task,
    list_tasks,
    mark_delivered,
    open_due_followups,
)
from loopline.models.orders import apply_crm_event
from loopline.models.records import Order, OutboxEvent
from tests.factories import loop_config, order_event, plan_window

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _apply(session, body, webhook_id):
    return apply_crm_event(
        session,
        event=parse_crm_event(body),
        source="canonical",
        webhook_id=webhook_id,
        raw="{}",
        actor="crm",
    )


def _outbox(session, event_type):
    return [
        r.payload
        for r in session.scalars(select(OutboxEvent).order_by(OutboxEvent.id))
        if r.event_type == event_type
    ]


def test_delivery_opens_a_confirmation_then_a_satisfaction_follow_up(sessions):
    with transaction(sessions) as s:
        _apply(s, order_event("SO-1"), "w1")
        done = mark_delivered(
            s, order=s.get(Order, "SO-1"), delivered_at=T0, source="api", actor="li.na"
        )
        assert done.new
    with transaction(sessions) as s:
        again = mark_delivered(
            s,
            order=s.get(Order, "SO-1"),
            delivered_at=T0 + timedelta(days=1),
            source="crm",
            actor="crm",
        )
        assert not again.new and again.delivery.delivered_at == T0  # the first one stands
        tasks = list_tasks(s, assignee="zhang.wei")
        assert [(t["kind"], t["order_id"], t["status"]) for t in tasks] == [
            ("delivery_confirmation", "SO-1", "open")
        ]
        assert s.get(Order, "SO-1").status == "delivered"
        # Not due before N days have passed; due once they have, and only once.
        assert open_due_followups(s, now=T0 + timedelta(days=6), after=timedelta(days=7)) == 0
        assert open_due_followups(s, now=T0 + timedelta(days=8), after=timedelta(days=7)) == 1
        assert open_due_followups(s, now=T0 + timedelta(days=9), after=timedelta(days=7)) == 0
        kinds = [t["kind"] for t in list_tasks(s, assignee="zhang.wei")]
        assert kinds == ["delivery_confirmation", "satisfaction"]
        opened = _outbox(s, "followup.opened")
        assert [(p["kind"], p["assignee"]) for p in opened] == [
            ("delivery_confirmation", "zhang.wei"),
            ("satisfaction", "zhang.wei"),
        ]


def test_satisfaction_needs_a_score_in_range_and_is_sent_to_the_crm(sessions):
    with transaction(sessions) as s:
        _apply(s, order_event("SO-2"), "w1")
        mark_delivered(s, order=s.get(Order, "SO-2"), delivered_at=T0, source="api", actor="x")
        open_due_followups(s, now=T0 + timedelta(days=7), after=timedelta(days=7))
        sat = next(t for t in list_tasks(s) if t["kind"] == "satisfaction")
        with pytest.raises(BadTaskInput) as missing:
            complete_task(s, task_id=sat["id"], actor="zhang.wei", now=T0)
        assert missing.value.field == "score"
        with pytest.raises(BadTaskInput):
            complete_task(s, task_id=sat["id"], actor="zhang.wei", now=T0, score=101)
        done = complete_task(
            s, task_id=sat["id"], actor="zhang.wei", now=T0, score=85, note="happy"
        )
        assert done is not None and done.status == "done"
        with pytest.raises(TaskDone):
            complete_task(s, task_id=sat["id"], actor="zhang.wei", now=T0, score=10)
        assert complete_task(s, task_id=99999, actor="x", now=T0) is None
        sent = _outbox(s, "followup.completed")
        assert sent == [
            {
                "task_id": sat["id"],
                "order_id": "SO-2",
                "kind": "satisfaction",
                "assignee": "zhang.wei",
                "status": "done",
                "due_at": "2026-11-09T09:00:00Z",
                "done_at": "2026-11-02T09:00:00Z",
                "done_by": "zhang.wei",
                "score": 85,
                "note": "happy",
            }
        ]


def test_the_crm_status_delivered_records_the_delivery(sessions):
    with transaction(sessions) as s:
        _apply(s, order_event("SO-3", 1), "w1")
        body = order_event("SO-3", 2)
        body["order"]["status"] = "delivered"
        body["order"]["delivered_at"] = "2026-11-20T15:00:00Z"
        result = _apply(s, body, "w2")
        assert result.changes["status"] == ["open", "delivered"]
    with sessions() as s:
        delivery = s.get(OrderDelivery, "SO-3")
        assert delivery.delivered_at == datetime(2026, 11, 20, 15, tzinfo=UTC)
        assert delivery.source == "canonical"
        assert [t["kind"] for t in list_tasks(s, order_id="SO-3")] == ["delivery_confirmation"]


def test_a_cancelled_order_cannot_be_delivered(sessions):
    with transaction(sessions) as s:
        _apply(s, order_event("SO-4", 1), "w1")
        _apply(s, order_event("SO-4", 2, event_type="order.cancelled"), "w2")
        with pytest.raises(NotDeliverable):
            mark_delivered(s, order=s.get(Order, "SO-4"), delivered_at=T0, source="api", actor="x")


def test_the_workers_tick_opens_due_satisfaction_follow_ups(sessions, live):
    from loopline.models.clock import Clock, utcnow
    from loopline.models.loop import Loop

    with transaction(sessions) as s:
        _apply(s, order_event("SO-5"), "w1")
        _apply(s, order_event("SO-6"), "w2")
        for oid, days_ago in (("SO-5", 3.0), ("SO-6", 1.0)):
            mark_delivered(
                s,
                order=s.get(Order, oid),
                delivered_at=utcnow() - timedelta(days=days_ago),
                source="api",
                actor="x",
            )
    loop = Loop(
        sessions,
        live,
        Clock(),
        loop_config(window=plan_window(promise_policy="earliest"), followup_after_days=2.0),
    )
    loop.replan_now("test")
    assert loop.tick()
    with sessions() as s:
        opened = [(t["order_id"], t["kind"]) for t in list_tasks(s) if t["kind"] == "satisfaction"]
    assert opened == [("SO-5", "satisfaction")]  # SO-6 was delivered a day ago: not yet
