"""The approval gate: a CRM change that would break another order's promise waits."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from loopline.models.approvals import (
    AlreadyDecided,
    ApprovalPolicy,
    Gate,
    apply_gated,
    approve,
    reject,
)
from loopline.models.audit import history
from loopline.models.db import transaction
from loopline.models.events import parse_crm_event
from loopline.models.live import Update
from loopline.models.orders import apply_crm_event
from loopline.models.records import InboxEvent, Order, OutboxEvent, PendingChange
from loopline.models.replan import replan
from tests.factories import order_event, plan_window

# A Tuesday morning: L1 is the only line for P2 (50/h), so P2 orders queue on it.
NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
DAY1 = date(2026, 12, 1)
# 1500 x P2 (30 h) going first pushes SO-V 14 h past its promise; 900 (18 h) pushes it 2 h.
BIG, SMALL = 1500, 900
POLICY = ApprovalPolicy(max_slip_h=5.0, priorities=frozenset({"rush"}))


@pytest.fixture
def sessions(any_sessions):
    """These tests run on SQLite and on PostgreSQL."""
    return any_sessions


def _send(sessions, live, body, webhook_id, policy=POLICY, window=None):
    with transaction(sessions) as s:
        return apply_gated(
            s,
            gate=Gate(live, lambda: NOW, policy, window or plan_window(promise_policy="earliest")),
            event=parse_crm_event(body),
            source="crm:canonical",
            webhook_id=webhook_id,
            raw="{}",
            actor="crm",
        )


def seed_victim(apply) -> None:
    """SO-A: 800 x P2 due today goes first on L1 (06:00-22:00); SO-V: 500 x P2 follows
    (22:00-08:00), promised for Dec 2."""
    apply(order_event("SO-A", 1, [("P2", 800)], DAY1), "a1")
    apply(order_event("SO-V", 1, [("P2", 500)], date(2026, 12, 3)), "v1")


def start_running(live) -> None:
    """SO-A runs on L1 now, so every later plan keeps it there first."""
    live.apply([Update("work_order", "WO-A-1", {"status": "running", "line": "L1", "good": 0})])


@pytest.fixture
def victim(sessions, live):
    def apply(body, webhook_id):
        with transaction(sessions) as s:
            apply_crm_event(
                s,
                event=parse_crm_event(body),
                source="crm:canonical",
                webhook_id=webhook_id,
                raw="{}",
                actor="crm",
            )

    seed_victim(apply)
    replan(sessions, live, now=NOW, trigger="test", window=plan_window(promise_policy="earliest"))
    start_running(live)
    with sessions() as s:
        assert s.get(Order, "SO-A").promised_date == DAY1
        assert s.get(Order, "SO-V").promised_date == date(2026, 12, 2)
    return "SO-V"


def _outbox(sessions, prefix="change."):
    with sessions() as s:
        rows = s.scalars(select(OutboxEvent).order_by(OutboxEvent.id))
        return [(r.event_type, r.payload) for r in rows if r.event_type.startswith(prefix)]


def test_a_change_that_slips_nobody_is_applied(sessions, live, victim):
    result = _send(sessions, live, order_event("SO-N", 1, [("P1", 50)], DAY1), "n1")
    assert result.outcome == "applied" and result.change_id is None
    with sessions() as s:
        assert s.get(Order, "SO-N") is not None
        assert s.scalar(select(PendingChange.id)) is None


def test_the_preview_keeps_the_configured_frozen_window(sessions, live, victim):
    # SO-V starts at 22:00, 16 h from now: inside a 24 h frozen window nothing can go
    # before it, so the change breaks no promise and is applied.
    body = order_event("SO-H", 1, [("P2", BIG)], DAY1, priority="high")
    result = _send(
        sessions, live, body, "h1", window=plan_window(promise_policy="earliest", frozen_h=24.0)
    )
    assert result.outcome == "applied" and result.change_id is None


def test_a_change_that_breaks_a_promise_waits_with_its_impact(sessions, live, victim):
    # BIG x P2 at high priority goes first after SO-A: SO-V would end 14 h past its promise.
    body = order_event("SO-H", 1, [("P2", BIG)], DAY1, priority="high")
    result = _send(sessions, live, body, "h1")
    assert result.outcome == "pending_approval" and result.change_status == "pending"
    with sessions() as s:
        assert s.get(Order, "SO-H") is None  # not applied
        change = s.get(PendingChange, result.change_id)
        assert change.status == "pending" and change.order_version == 1
        assert change.event["order"]["lines"] == [{"sku": "P2", "qty": BIG}]
        [hit] = change.impact
        assert hit["order_id"] == "SO-V" and hit["promised_date"] == "2026-12-02"
        assert hit["slip_h"] > 5 and hit["planned_end_after"] > hit["planned_end_before"]
        inbox = s.scalar(select(InboxEvent).where(InboxEvent.webhook_id == "h1"))
        assert inbox.outcome == "pending"
    assert [t for t, _ in _outbox(sessions)] == ["change.pending"]
    # The same webhook again is a duplicate; the same version under a new id keeps one change.
    assert _send(sessions, live, body, "h1").outcome == "duplicate"
    again = _send(sessions, live, body, "h1-bis")
    assert again.outcome == "pending_approval" and again.change_id == result.change_id


def test_approve_applies_releases_the_broken_promise_and_tells_the_crm(sessions, live, victim):
    body = order_event("SO-H", 1, [("P2", BIG)], DAY1, priority="high")
    change_id = _send(sessions, live, body, "h1").change_id
    with transaction(sessions) as s:
        decision = approve(s, change_id=change_id, actor="production_manager", note="ok")
        assert decision.outcome == "approved"
    with sessions() as s:
        assert s.get(Order, "SO-H").lines[0].qty == BIG
        assert s.get(Order, "SO-V").promise_version is None  # the next replan re-promises it
        assert s.get(PendingChange, change_id).decided_by == "production_manager"
        actions = {
            k: [h.action for h in v]
            for k, v in history(s, entity="order", entity_ids=["SO-H", "SO-V"]).items()
        }
    assert actions["SO-H"] == ["change.pending", "order.created", "change.approved"]
    assert "order.promise_released" in actions["SO-V"]
    kinds = _outbox(sessions)
    assert [t for t, _ in kinds] == ["change.pending", "change.approved"]
    payload = kinds[-1][1]
    assert payload["status"] == "approved" and payload["note"] == "ok"
    assert set(payload) == {
        "change_id",
        "order_id",
        "version",
        "status",
        "impact",
        "decided_by",
        "note",
    }
    with transaction(sessions) as s, pytest.raises(AlreadyDecided):
        reject(s, change_id=change_id, actor="admin")
    outcome = replan(
        sessions, live, now=NOW, trigger="approved", window=plan_window(promise_policy="earliest")
    )
    assert "SO-V" in outcome.promised  # a new, later promise


def test_reject_leaves_the_order_as_it_was(sessions, live, victim):
    body = order_event("SO-H", 1, [("P2", BIG)], DAY1, priority="high")
    change_id = _send(sessions, live, body, "h1").change_id
    with transaction(sessions) as s:
        assert reject(s, change_id=change_id, actor="admin", note="no").outcome == "rejected"
        assert reject(s, change_id=999, actor="admin") is None
    with sessions() as s:
        assert s.get(Order, "SO-H") is None
        assert s.get(Order, "SO-V").promise_version is not None
    assert [t for t, _ in _outbox(sessions)] == ["change.pending", "change.rejected"]


def test_auto_approve_by_slip_and_by_priority(sessions, live, victim):
    small = _send(
        sessions, live, order_event("SO-S", 1, [("P2", SMALL)], DAY1, priority="high"), "s1"
    )
    assert small.outcome == "applied" and small.change_status == "auto_approved"
    with sessions() as s:
        change = s.get(PendingChange, small.change_id)
        assert change.status == "auto_approved" and 0 < change.impact[0]["slip_h"] <= 5
        assert "slip" in change.note and s.get(Order, "SO-S") is not None
    rush = _send(sessions, live, order_event("SO-R", 1, [("P2", BIG)], DAY1, priority="rush"), "r1")
    assert rush.outcome == "applied" and rush.change_status == "auto_approved"
    with sessions() as s:
        assert "priority rush" in s.get(PendingChange, rush.change_id).note
        [entries] = history(s, entity="order", entity_ids=["SO-R"]).values()
        auto = [e for e in entries if e.action == "change.auto_approved"]
        assert auto and auto[0].details["rule"] == "priority rush"
    assert [t for t, _ in _outbox(sessions)] == ["change.auto_approved", "change.auto_approved"]


def test_a_newer_version_supersedes_a_waiting_one(sessions, live, victim):
    big = order_event("SO-H", 1, [("P2", BIG)], DAY1, priority="high")
    first = _send(sessions, live, big, "h1").change_id
    # v2 is small: applied at once, and v1 is moot.
    small = order_event("SO-H", 2, [("P1", 10)], DAY1)
    assert _send(sessions, live, small, "h2").outcome == "applied"
    with (
        transaction(sessions) as s,
        pytest.raises(AlreadyDecided, match="superseded by version 2"),
    ):
        approve(s, change_id=first, actor="admin")
    # A version applied past the gate (another path) is caught at approval time.
    second = _send(sessions, live, order_event("SO-H", 3, [("P2", BIG)], DAY1, "high"), "h3")
    with transaction(sessions) as s:
        apply_crm_event(
            s,
            event=parse_crm_event(order_event("SO-H", 4, [("P1", 5)], DAY1)),
            source="other",
            webhook_id="h4",
            raw="{}",
            actor="crm",
        )
    with transaction(sessions) as s:
        decision = approve(s, change_id=second.change_id, actor="admin")
        assert decision.outcome == "superseded" and "version 4" in decision.change.note
    with sessions() as s:
        assert s.get(Order, "SO-H").version == 4


def test_cancellations_are_never_gated(sessions, live, victim):
    cancel = order_event("SO-V", 2, event_type="order.cancelled")
    assert _send(sessions, live, cancel, "c1").outcome == "applied"
