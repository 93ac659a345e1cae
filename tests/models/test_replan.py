"""Replanning's first and last steps: the problem built from SQL and live state, and what a
plan publishes (revision diff, purchase requests), on SQLite + real Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from loopline.models.clock import end_of_day
from loopline.models.db import transaction
from loopline.models.events import parse_crm_event
from loopline.models.live import Update
from loopline.models.orders import apply_crm_event
from loopline.models.records import (
    AuditEntry,
    BomLine,
    Line,
    Material,
    Order,
    PlanRevision,
    PurchaseOrder,
    PurchaseRequest,
    WorkOrder,
)
from loopline.models.replan import build_problem, replan
from tests.factories import order_event, plan_window

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # a Tuesday
BERLIN_SHIFTS = {
    "timezone": "Europe/Berlin",
    "shifts": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "06:00", "end": "22:00"}],
    "breaks": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "12:00", "end": "12:30"}],
    "holidays": ["2026-12-25"],
}


@pytest.fixture
def sessions(any_sessions):
    """These tests run on SQLite and on PostgreSQL."""
    return any_sessions


def _order(sessions, order_id, version=1, lines=None, days=5, **kw):
    body = order_event(order_id, version, lines, (NOW + timedelta(days=days)).date(), **kw)
    with transaction(sessions) as s:
        apply_crm_event(
            s,
            event=parse_crm_event(body),
            source="canonical",
            webhook_id=f"{order_id}-{version}",
            raw="{}",
            actor="crm",
        )


def _materials(sessions, *, on_hand: float, lead_time_days: float = 5.0) -> None:
    """One material M1, two of it in every P1; an open and a received purchase order."""
    with transaction(sessions) as s:
        s.add(Material(id="M1", name="Steel", unit="kg", on_hand=on_hand, lead_time_days=5.0))
        s.flush()
        s.add(BomLine(sku="P1", material_id="M1", qty_per_unit=2.0))
        s.add(PurchaseOrder(id="PO-1", material_id="M1", qty=10.0, arrives_at=NOW, status="open"))
        s.add(
            PurchaseOrder(id="PO-0", material_id="M1", qty=99.0, arrives_at=NOW, status="received")
        )


def test_build_problem_maps_calendars_changeovers_materials_and_frozen(sessions, live):
    with transaction(sessions) as s:
        line = s.get(Line, "L1")
        line.calendar = BERLIN_SHIFTS
        # A product nobody makes (P9) is left out rather than failing the plan.
        line.changeovers = {"P1": {"P2": 0.5, "P9": 1.0}, "P9": {"P1": 1.0}}
    _materials(sessions, on_hand=100.0)
    with sessions() as s:
        problem, _ = build_problem(
            s, live, NOW, plan_window(promise_policy="earliest", frozen_h=2.5)
        )
    lines = {ln.id: ln for ln in problem.lines}
    assert lines["L1"].calendar == "L1" and lines["L2"].calendar is None
    calendar = problem.calendars["L1"]
    assert calendar.timezone == "Europe/Berlin"
    assert [(sorted(w.days), w.start.hour, w.end.hour) for w in calendar.shifts] == [
        ([0, 1, 2, 3, 4], 6, 22)
    ]
    assert [d.isoformat() for d in calendar.holidays] == ["2026-12-25"]
    assert problem.changeovers == {"L1": {"P1": {"P2": 0.5}}}
    assert problem.changeover_h("L1", "P1", "P2") == 0.5
    assert problem.frozen_h == 2.5
    materials = problem.materials
    assert materials is not None
    assert materials.bom == {"P1": {"M1": 2.0}}
    assert materials.items["M1"].on_hand == 100.0
    assert [po.id for po in materials.purchase_orders] == ["PO-1"]  # received ones are stock


def test_build_problem_without_materials_or_calendars_stays_plain(sessions, live):
    with sessions() as s:
        problem, _ = build_problem(s, live, NOW, plan_window(promise_policy="earliest"))
    assert problem.calendars == {} and problem.changeovers == {} and problem.materials is None
    assert problem.frozen_h == 1.0  # LOOPLINE_FROZEN_WINDOW_H's default


def test_down_line_is_assumed_back_later_and_setup_is_what_runs(sessions, live):
    _order(sessions, "SO-1", lines=[("P1", 100)])
    replan(sessions, live, now=NOW, trigger="t", window=plan_window(promise_policy="earliest"))
    live.apply(
        [
            Update("line", "L2", {"state": "down", "reason": "jam"}),
            Update("line", "L1", {"state": "running", "work_order": "WO-1-1"}),
            Update("work_order", "WO-1-1", {"status": "running", "line": "L1", "good": 10}),
        ]
    )
    with sessions() as s:
        problem, _ = build_problem(
            s, live, NOW, plan_window(promise_policy="earliest", line_down_assume_h=0.5)
        )
    lines = {ln.id: ln for ln in problem.lines}
    assert lines["L2"].down_until == NOW + timedelta(hours=0.5)
    assert lines["L2"].down_reason == "jam"
    assert lines["L1"].down_until is None and lines["L1"].setup == "P1"
    assert lines["L2"].setup is None


def test_jobs_carry_priority_order_promise_and_previous_plan(sessions, live):
    _order(sessions, "SO-1", lines=[("P1", 100)], priority="rush")
    _order(sessions, "SO-2", lines=[("P2", 50)])
    replan(sessions, live, now=NOW, trigger="t", window=plan_window(promise_policy="earliest"))
    _order(sessions, "SO-2", version=2, lines=[("P2", 60)])  # a new version: no promise yet
    with sessions() as s:
        problem, _ = build_problem(s, live, NOW, plan_window(promise_policy="earliest"))
        promised = s.get(Order, "SO-1").promised_date
        wo = s.get(WorkOrder, "WO-1-1")
        planned = (wo.line_id, wo.planned_start)
    jobs = {j.id: j for j in problem.jobs}
    first = jobs["WO-1-1"]
    assert (first.priority, first.order) == ("rush", "SO-1")
    assert first.deadline == end_of_day(promised)
    assert (first.planned_line, first.planned_start) == planned
    second = jobs["WO-2-1"]
    assert (second.priority, second.order, second.deadline) == ("normal", "SO-2", None)


def test_replan_raises_purchase_requests_and_supersedes_them(sessions, live):
    _materials(sessions, on_hand=0.0)  # PO-1 brings 10 kg; 100 P1 need 200 kg
    _order(sessions, "SO-1", lines=[("P1", 100)], days=20)
    first = replan(
        sessions, live, now=NOW, trigger="t1", window=plan_window(promise_policy="earliest")
    )
    with sessions() as s:
        [pr] = s.scalars(select(PurchaseRequest)).all()
        assert (pr.material_id, pr.status, pr.plan_revision_id) == ("M1", "open", first.revision_id)
        assert pr.qty >= 190.0 - 1e-6
        assert pr.jobs == ["WO-1-1"]
        assert pr.arrives_if_ordered_now == NOW + timedelta(days=5)
    second = replan(
        sessions,
        live,
        now=NOW + timedelta(minutes=5),
        trigger="t2",
        window=plan_window(promise_policy="earliest"),
    )
    with sessions() as s:
        rows = s.scalars(select(PurchaseRequest).order_by(PurchaseRequest.id)).all()
        assert [(r.status, r.plan_revision_id) for r in rows] == [
            ("superseded", first.revision_id),
            ("open", second.revision_id),
        ]
        raised = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "purchase_request.raised")
        ).all()
        # Raised once: the second plan only restates a shortage purchasing already sees.
        assert [(a.entity, a.entity_id) for a in raised] == [("material", "M1")]


def test_revision_diff_names_the_trigger_what_moved_and_what_is_late(sessions, live):
    _order(sessions, "SO-1", lines=[("P2", 100)])  # P2 only on L1, 2 h
    _order(sessions, "SO-3", lines=[("P2", 2000)], days=0)  # 40 h of work due today
    first = replan(
        sessions,
        live,
        now=NOW,
        trigger="crm SO-1 v1",
        window=plan_window(promise_policy="earliest", frozen_h=0.0),
    )
    with sessions() as s:
        diff = s.get(PlanRevision, first.revision_id).diff
    assert diff["trigger"] == "crm SO-1 v1"
    assert diff["added"] == ["WO-1-1", "WO-3-1"] and diff["moved"] == []
    late = {row["job"]: row for row in diff["late"]}
    assert late["WO-3-1"]["order"] == "SO-3" and late["WO-3-1"]["tardiness_h"] > 0
    assert late["WO-3-1"]["reason"] and isinstance(late["WO-3-1"]["cause"], dict)

    live.apply([Update("line", "L1", {"state": "down", "reason": "jam"})])
    second = replan(
        sessions,
        live,
        now=NOW,
        trigger="line L1 down",
        window=plan_window(promise_policy="earliest", frozen_h=0.0, line_down_assume_h=3.0),
    )
    with sessions() as s:
        rev = s.get(PlanRevision, second.revision_id)
        diff = rev.diff
        assert rev.trigger == "line L1 down" and rev.solver
    assert diff["trigger"] == "line L1 down"
    moved = {m["job"]: m for m in diff["moved"]}
    assert second.moved == len(moved) >= 1
    assert all((m["from_line"], m["to_line"]) == ("L1", "L1") for m in moved.values())
    # The job that started at once on L1 now waits for the line to be back.
    assert max(m["start_shift_h"] for m in moved.values()) >= 3.0 - 0.01
    assert all(set(m) >= {"order", "start_shift_h", "end_shift_h"} for m in moved.values())


def test_promise_is_the_requested_date_when_the_plan_meets_it_with_margin(sessions, live):
    """An order asking for a date weeks out is promised that date, not the day its work is
    planned to end (which left no slack, so later orders "broke" it); one the plan cannot
    meet with the margin is promised the earliest safe date; the history says which."""
    _order(sessions, "SO-1", lines=[("P1", 100)], days=20)  # 1 h of work, due in 20 days
    _order(sessions, "SO-3", lines=[("P2", 2000)], days=0)  # 40 h of work due today
    window = plan_window(frozen_h=0.0, promise_policy="requested")
    replan(sessions, live, now=NOW, trigger="t", window=window)
    with sessions() as s:
        far, tight = s.get(Order, "SO-1"), s.get(Order, "SO-3")
        assert far.promised_date == far.requested_date == (NOW + timedelta(days=20)).date()
        assert tight.promised_date > tight.requested_date
        rules = {
            a.entity_id: a.details["rule"]
            for a in s.scalars(select(AuditEntry).where(AuditEntry.action == "order.promised"))
        }
    assert rules["SO-1"].startswith("requested date met")
    assert rules["SO-3"].startswith("earliest safe date")


def test_earliest_policy_promises_the_planned_finish_day(sessions, live):
    _order(sessions, "SO-1", lines=[("P1", 100)], days=20)
    window = plan_window(frozen_h=0.0, promise_policy="earliest")
    replan(sessions, live, now=NOW, trigger="t", window=window)
    with sessions() as s:
        assert s.get(Order, "SO-1").promised_date == NOW.date()


def test_a_replan_reads_no_order_lines_and_each_collection_once(sessions, live):
    # Why: the orders' collections load eagerly (selectin) wherever an order is read; the
    # problem needs neither, and loading them was half of building it at 800 orders.
    from sqlalchemy import event

    for n in range(4):
        _order(sessions, f"SO-{n}", lines=[("P1", 10), ("P2", 5)])
    engine = sessions.kw["bind"]
    statements: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        with sessions() as s:
            problem, _ = build_problem(s, live, NOW, plan_window())
        assert len(problem.jobs) == 8
        assert not [q for q in statements if "FROM order_line" in q]
        replan(sessions, live, now=NOW, trigger="t", window=plan_window())
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert not [q for q in statements if "FROM order_line" in q]
    # The work orders of all orders in a query or two (never one per order).
    assert len([q for q in statements if q.lstrip().startswith("SELECT work_order")]) <= 6
