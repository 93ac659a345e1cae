"""Replanning: snapshot the open work from SQL and live state, solve, publish the plan.

The planner itself (``models.planning``) is pure; this module is its first and last
step: it builds the problem and writes the schedule back to SQL, then to live state.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.alerts import alert_view, list_alerts
from models.audit import record
from models.db import transaction
from models.estimate import end_of_day, estimate, iso
from models.feedback import sync_feedback
from models.live import Change, LiveState, Update
from models.orders import OPEN_STATUSES
from models.planning import Job, Line, Problem, Schedule, solve
from models.records import Line as LineRecord
from models.records import Order, PlanRevision, WorkOrder

log = logging.getLogger("loopline.replan")

PRIORITY_WEIGHT = {"normal": 1.0, "high": 3.0, "rush": 10.0}
PLANNABLE = ("planned", "running")
# A job whose planned end moved by less than this is not reported as moved: time passing
# alone shifts every replan a little.
MOVE_EPSILON_H = 0.25


@dataclass(frozen=True)
class PlanOutcome:
    """What one replan did."""

    revision_id: int
    jobs: int
    solve_ms: float
    promised: dict[str, str]
    moved: int


def build_problem(
    session: Session, live: LiveState, now: datetime
) -> tuple[Problem, dict[str, WorkOrder]]:
    """The planning problem for all open work, with running work pinned to its line."""
    lines = list(session.scalars(select(LineRecord).order_by(LineRecord.id)))
    plan_lines = tuple(
        Line(id=ln.id, rates={r.sku: r.units_per_hour for r in ln.rates}) for ln in lines
    )
    makeable = {r.sku for ln in lines for r in ln.rates}
    rates_of = {ln.id: {r.sku for r in ln.rates} for ln in lines}
    rows = session.execute(
        select(WorkOrder, Order)
        .join(Order, WorkOrder.order_id == Order.id)
        .where(Order.status.in_(OPEN_STATUSES), WorkOrder.status.in_(PLANNABLE))
        .order_by(WorkOrder.id)
    ).all()
    live_wos = live.get_many("work_order", [wo.id for wo, _ in rows])
    jobs: list[Job] = []
    by_id: dict[str, WorkOrder] = {}
    for (wo, order), lv in zip(rows, live_wos, strict=True):
        good = max(wo.good, int((lv or {}).get("good") or 0))
        remaining = wo.qty - good
        if remaining <= 0 or wo.sku not in makeable:
            if wo.sku not in makeable:
                log.warning("work order %s: no line makes %s", wo.id, wo.sku)
            continue
        running_on = (lv or {}).get("line") if (lv or {}).get("status") == "running" else None
        # Running work stays where it runs, if that line can still make it (rates change).
        running = running_on if running_on and wo.sku in rates_of.get(running_on, {}) else None
        due_day: date = order.promised_date or order.requested_date
        weight = PRIORITY_WEIGHT.get(order.priority, 1.0) * max(1, order.customer.importance)
        jobs.append(
            Job(
                id=wo.id,
                product=wo.sku,
                qty=float(remaining),
                due=end_of_day(due_day),
                weight=weight,
                release=now,
                pinned_line=running,
                pinned_start=now if running else None,
            )
        )
        by_id[wo.id] = wo
    return Problem(start=now, lines=plan_lines, jobs=tuple(jobs)), by_id


def replan(
    sessions: sessionmaker[Session], live: LiveState, *, now: datetime, trigger: str
) -> PlanOutcome:
    """Plan all open work now, store the revision and promises, and update live state."""
    with transaction(sessions) as session:
        problem, wos = build_problem(session, live, now)
        started = time.perf_counter()
        schedule = solve(problem)
        solve_ms = (time.perf_counter() - started) * 1000
        outcome = _publish_sql(session, problem, schedule, wos, trigger, solve_ms)
        session.flush()
        # Live state first, so the promise and the ETA it implies reach the CRM together;
        # the outbox rows commit with the promises they report.
        sync_live(session, live, now=now)
        sync_feedback(session, live)
    live.announce(
        Change(
            "plan",
            str(outcome.revision_id),
            {},
            {"revision": outcome.revision_id, "jobs": outcome.jobs, "trigger": trigger},
        )
    )
    log.info(
        "plan %s: %d jobs in %.1f ms (%s), %d moved, %d promises",
        outcome.revision_id,
        outcome.jobs,
        solve_ms,
        trigger,
        outcome.moved,
        len(outcome.promised),
    )
    return outcome


def _publish_sql(
    session: Session,
    problem: Problem,
    schedule: Schedule,
    wos: dict[str, WorkOrder],
    trigger: str,
    solve_ms: float,
) -> PlanOutcome:
    previous = session.scalar(select(PlanRevision).order_by(PlanRevision.id.desc()).limit(1))
    before = {a["job"]: a for a in (previous.assignments if previous else [])}
    assignments = []
    order_end: dict[str, datetime] = {}
    moved = []
    for a in schedule.assignments:
        wo = wos[a.job]
        wo.line_id, wo.planned_start, wo.planned_end = a.line, a.start, a.end
        row = {
            "job": a.job,
            "order": wo.order_id,
            "line": a.line,
            "product": wo.sku,
            "qty": wo.qty,
            "start": iso(a.start),
            "end": iso(a.end),
        }
        assignments.append(row)
        order_end[wo.order_id] = max(order_end.get(wo.order_id, a.end), a.end)
        old = before.get(a.job)
        if old is not None:
            shift_h = a.end - datetime.fromisoformat(old["end"].replace("Z", "+00:00"))
            shift = shift_h.total_seconds() / 3600
            if old["line"] != a.line or abs(shift) >= MOVE_EPSILON_H:
                moved.append(
                    {
                        "job": a.job,
                        "from_line": old["line"],
                        "to_line": a.line,
                        "end_shift_h": round(shift, 2),
                    }
                )
    diff = {
        "moved": moved,
        "added": sorted(set(wos) - set(before)),
        "removed": sorted(set(before) - set(wos)),
    }
    revision = PlanRevision(
        plan_start=problem.start,
        trigger=trigger[:200],
        solver="dispatch-v0",
        jobs=len(assignments),
        total_weighted_tardiness_h=schedule.total_weighted_tardiness_h,
        solve_ms=round(solve_ms, 2),
        assignments=assignments,
        diff=diff,
    )
    session.add(revision)
    session.flush()
    promised = _promise(session, order_end, revision.id)
    record(
        session,
        actor="planner",
        action="plan.published",
        entity="plan",
        entity_id=str(revision.id),
        details={
            "trigger": trigger,
            "jobs": len(assignments),
            "moved": len(moved),
            "total_weighted_tardiness_h": schedule.total_weighted_tardiness_h,
        },
    )
    return PlanOutcome(revision.id, len(assignments), solve_ms, promised, len(moved))


def _promise(session: Session, order_end: dict[str, datetime], revision_id: int) -> dict[str, str]:
    """Promise a date to every order whose current version has none yet."""
    promised: dict[str, str] = {}
    if not order_end:
        return promised
    orders = session.scalars(select(Order).where(Order.id.in_(order_end)))
    for order in orders:
        if order.promised_date is not None and order.promise_version == order.version:
            continue
        # The promise is the day the last unit is planned to finish (a partial day counts).
        end = order_end[order.id] - timedelta(microseconds=1)
        new = end.date()
        old = order.promised_date
        order.promised_date, order.promise_version = new, order.version
        promised[order.id] = new.isoformat()
        record(
            session,
            actor="planner",
            action="order.promised",
            entity="order",
            entity_id=order.id,
            details={
                "version": order.version,
                "old": old.isoformat() if old else None,
                "new": new.isoformat(),
                "plan_revision": revision_id,
            },
        )
    return promised


def sync_live(session: Session, live: LiveState, *, now: datetime, rebuild: bool = False) -> None:
    """Make the live state agree with SQL: lines, open orders, their work orders, alerts.

    Live counters (good, scrap, rate) win over SQL's checkpoints unless ``rebuild``.
    """
    if rebuild:
        live.clear()
    lines = list(session.scalars(select(LineRecord).order_by(LineRecord.id)))
    orders = list(
        session.scalars(select(Order).where(Order.status.in_(OPEN_STATUSES)).order_by(Order.id))
    )
    wos = [wo for o in orders for wo in o.work_orders if wo.status != "cancelled"]
    known_wos = dict(
        zip([w.id for w in wos], live.get_many("work_order", [w.id for w in wos]), strict=True)
    )
    known_lines = dict(
        zip([ln.id for ln in lines], live.get_many("line", [ln.id for ln in lines]), strict=True)
    )
    queues: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    updates: list[Update] = []
    for wo in wos:
        fields: dict[str, Any] = {
            "order_id": wo.order_id,
            "sku": wo.sku,
            "qty": wo.qty,
            "planned_start": iso(wo.planned_start),
            "planned_end": iso(wo.planned_end),
        }
        lv = known_wos.get(wo.id)
        if lv is None:
            fields.update(
                line=wo.line_id,
                good=wo.good,
                scrap=wo.scrap,
                status=wo.status,
                progress=round(min(wo.good, wo.qty) / wo.qty, 4) if wo.qty else 0.0,
            )
        else:
            if lv.get("status") != "running":
                fields["line"] = wo.line_id
            if lv.get("status") == "done" and int(lv.get("good") or 0) < wo.qty:
                fields["status"] = "running"  # the order grew after this work order finished
            fields["progress"] = round(min(int(lv.get("good") or 0), wo.qty) / wo.qty, 4)
        line_id = (lv or {}).get("line") if (lv or {}).get("status") == "running" else wo.line_id
        if line_id and wo.planned_start:
            queues[line_id].append((wo.planned_start, wo.id))
        updates.append(Update("work_order", wo.id, fields))
    for ln in lines:
        fields = {
            "name": ln.name,
            "site": ln.site_id,
            "queue": [w for _, w in sorted(queues.get(ln.id, []))],
            "rates": {r.sku: r.units_per_hour for r in ln.rates},
        }
        if known_lines.get(ln.id) is None:
            fields.update(
                state="unavailable",
                reported_state=None,
                reason="no report yet",
                since=iso(now),
                seq=None,
                work_order=None,
                rate_uph=None,
            )
        updates.append(Update("line", ln.id, fields))
    for o in orders:
        updates.append(
            Update(
                "order",
                o.id,
                {
                    "customer": o.customer.name,
                    "customer_id": o.customer_id,
                    "status": o.status,
                    "priority": o.priority,
                    "requested_date": o.requested_date.isoformat(),
                    "promised_date": o.promised_date.isoformat() if o.promised_date else None,
                    "version": o.version,
                    "work_orders": [w.id for w in o.work_orders if w.status != "cancelled"],
                },
            )
        )
    active = list_alerts(session)
    for alert in active:
        updates.append(Update("alert", str(alert.id), alert_view(alert)))
    live.apply(updates)
    live.remove("order", set(live.ids("order")) - {o.id for o in orders})
    live.remove("work_order", set(live.ids("work_order")) - {w.id for w in wos})
    live.remove("alert", set(live.ids("alert")) - {str(a.id) for a in active})
    live.apply(estimate(live, now))
