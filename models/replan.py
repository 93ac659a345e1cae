"""Replanning: snapshot the open work from SQL and live state, solve, publish the plan.

The planner itself (``models.planning``) is pure; this module is its first and last
step: it builds the problem and writes the schedule back to SQL, then to live state.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

import orjson
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, lazyload, sessionmaker

from loopline.models.alerts import alert_view, list_alerts, not_behind
from loopline.models.audit import record
from loopline.models.clock import end_of_day, iso, parse_ts, promise_day, utcnow
from loopline.models.db import transaction
from loopline.models.estimate import estimate
from loopline.models.feedback import FEEDBACK_STEP, sync_feedback
from loopline.models.live import Change, LiveState, Update
from loopline.models.live import key as live_key
from loopline.models.orders import OPEN_STATUSES
from loopline.models.planning import (
    Calendar,
    Job,
    LateJob,
    Line,
    Material,
    Materials,
    Problem,
    ProblemError,
    PurchaseOrder,
    Schedule,
    solve,
)
from loopline.models.planning.problem import PRIORITIES, check_problem, parse_calendar
from loopline.models.quarantine import Findings, count_problem, run_isolated
from loopline.models.quarantine import record as record_quarantine
from loopline.models.records import (
    BomLine,
    Customer,
    Order,
    PlanRevision,
    PurchaseRequest,
    Site,
    WorkOrder,
)
from loopline.models.records import Line as LineRecord
from loopline.models.records import Material as MaterialRecord
from loopline.models.records import PurchaseOrder as PurchaseOrderRecord

log = logging.getLogger("loopline.replan")

PRIORITY_WEIGHT = {"normal": 1.0, "high": 3.0, "rush": 10.0}
PLANNABLE = ("planned", "running")
# A job whose planned end moved by less than this is not reported as moved: time passing
# alone shifts every replan a little.
MOVE_EPSILON_H = 0.25
REPLAN_STEP = "replan"
# Each round of the planner's check leaves out the jobs and lines it names; a bad part
# can hide another (a total over the horizon), so a few rounds.
MAX_CHECK_ROUNDS = 3
# The live state's note of what the last sync wrote for each open order: a digest of the SQL
# fields of the order and its work orders. A sync that brings only changes (``full=False``)
# rewrites an order when its digest differs, or when it or a work order of it is missing
# from the live state; the others are left as they are.
SYNCED_KEY = "ll:meta:synced"
_JOB_PATH = re.compile(r"^jobs\[(\d+)\]")
_LINE_PATH = re.compile(r"^lines\[(\d+)\]")


@dataclass(frozen=True)
class PlanWindow:
    """How the problem is cut from the present, the same for replans, previews and
    quotes, and how promises are made. Every value comes from Settings (their defaults and
    meaning live there: ``frozen_window_h``, ``line_down_assume_h``, ``promise_policy``,
    ``promise_margin_h``); ``loopline.runtime.plan_window`` builds it.

    ``frozen_h``: planned work starting this soon stays put. ``line_down_assume_h``: a line
    reported down is assumed back this long from each replan (nobody knows when a jam is
    cleared). ``promise_policy``: "requested" promises the requested date when the plan
    meets it ``promise_margin_h`` early, else the earliest safe date; "earliest" always
    promises the day the last unit is planned to finish.
    """

    frozen_h: float
    line_down_assume_h: float
    promise_policy: str
    promise_margin_h: float


class Work(NamedTuple):
    """What planning needs of one open work order and its order: read as columns, not
    objects. Why: hydrating a WorkOrder, its Order and Customer per job was most of
    building the problem (0.9 s at 7,000 jobs), and every replan, preview and quote
    builds one."""

    id: str
    order_id: str
    sku: str
    qty: int
    good: int
    line_id: str | None
    planned_start: datetime | None
    planned_end: datetime | None
    priority: str
    version: int
    requested_date: date
    promised_date: date | None
    promise_version: int | None
    importance: int


_WORK_COLUMNS = (
    WorkOrder.id,
    WorkOrder.order_id,
    WorkOrder.sku,
    WorkOrder.qty,
    WorkOrder.good,
    WorkOrder.line_id,
    WorkOrder.planned_start,
    WorkOrder.planned_end,
    Order.priority,
    Order.version,
    Order.requested_date,
    Order.promised_date,
    Order.promise_version,
    Customer.importance,
)


@dataclass(frozen=True)
class PlanOutcome:
    """What one replan did."""

    revision_id: int
    jobs: int
    solve_ms: float
    promised: dict[str, str]
    moved: int


def build_problem(
    session: Session,
    live: LiveState,
    now: datetime,
    window: PlanWindow,
    findings: Findings | None = None,
) -> tuple[Problem, dict[str, Work]]:
    """The planning problem for all open work: lines with their calendars, changeovers,
    live state (down, set up for) and materials; jobs with their promises and the previous
    plan; running work pinned to its line.

    Work orders and lines whose data the planner cannot take (or whose live counters are
    not believable) are left out and named in ``findings`` (step ``replan``).
    """
    findings = findings if findings is not None else Findings()
    lines = list(session.scalars(select(LineRecord).order_by(LineRecord.id)))
    makeable = {r.sku for ln in lines for r in ln.rates}
    rates_of = {ln.id: {r.sku for r in ln.rates} for ln in lines}
    # Pending changes flushed in this session (a preview's) are read as they stand.
    rows = [
        Work._make(row)
        for row in session.execute(
            select(*_WORK_COLUMNS)
            .join(Order, WorkOrder.order_id == Order.id)
            .join(Customer, Order.customer_id == Customer.id)
            .where(Order.status.in_(OPEN_STATUSES), WorkOrder.status.in_(PLANNABLE))
            .order_by(WorkOrder.id)
        )
    ]
    live_wos = live.get_many("work_order", [wo.id for wo in rows])
    jobs: list[Job] = []
    by_id: dict[str, Work] = {}
    running_sku: dict[str, str] = {}  # line -> the product running on it
    for wo, lv in zip(rows, live_wos, strict=True):
        with findings.guard(REPLAN_STEP, "work_order", wo.id, order=wo.order_id):
            job = _job(wo, lv or {}, now, makeable, rates_of)
            if job is None:
                continue
            if job.pinned_line:
                running_sku[job.pinned_line] = wo.sku
            jobs.append(job)
            by_id[wo.id] = wo
    plan_lines, calendars = _plan_lines(
        session, live, lines, running_sku, now=now, line_down_assume_h=window.line_down_assume_h
    )
    problem = Problem(
        start=now,
        lines=plan_lines,
        jobs=tuple(jobs),
        calendars=calendars,
        changeovers=_changeovers(lines, makeable),
        materials=_materials(session, makeable),
        frozen_h=window.frozen_h,
    )
    problem = _without_bad_parts(problem, by_id, findings)
    findings.finished(REPLAN_STEP)
    return problem, by_id


def _job(
    wo: Work,
    lv: dict[str, Any],
    now: datetime,
    makeable: set[str],
    rates_of: dict[str, set[str]],
) -> Job | None:
    """One work order as the planner's job (None: nothing left to make); raises on data
    the planner cannot take."""
    if problem := count_problem(lv, wo.qty):
        raise ValueError(problem)
    good = max(wo.good, int(lv.get("good") or 0))
    remaining = wo.qty - good
    if remaining <= 0 or wo.sku not in makeable:
        if wo.sku not in makeable:
            log.warning("work order %s: no line makes %s", wo.id, wo.sku)
        return None
    running_on = lv.get("line") if lv.get("status") == "running" else None
    # Running work stays where it runs, if that line can still make it (rates change).
    running = running_on if running_on and wo.sku in rates_of.get(running_on, set()) else None
    due_day: date = wo.promised_date or wo.requested_date
    weight = PRIORITY_WEIGHT.get(wo.priority, 1.0) * max(1, wo.importance)
    promised = wo.promised_date is not None and wo.promise_version == wo.version
    # The previous plan, where its line can still make the product.
    planned = wo.line_id is not None and wo.sku in rates_of.get(wo.line_id, set())
    return Job(
        id=wo.id,
        product=wo.sku,
        qty=float(remaining),
        # An order already overdue is late work, not bad data: due now, as soon as can be.
        due=max(end_of_day(due_day), now),
        weight=weight,
        release=now,
        pinned_line=running,
        pinned_start=now if running else None,
        priority=wo.priority if wo.priority in PRIORITIES else "normal",
        deadline=end_of_day(wo.promised_date) if promised and wo.promised_date else None,
        planned_line=wo.line_id if planned else None,
        planned_start=wo.planned_start if planned else None,
        order=wo.order_id,
    )


def _without_bad_parts(problem: Problem, by_id: dict[str, Work], findings: Findings) -> Problem:
    """The problem less the jobs and lines the planner's check refuses, each flagged; raises
    ``ProblemError`` when what is wrong belongs to no one job or line."""
    for _ in range(MAX_CHECK_ROUNDS):
        try:
            check_problem(problem)
            return problem
        except ProblemError as exc:
            bad_jobs: dict[int, str] = {}
            bad_lines: dict[int, str] = {}
            for issue in exc.errors:
                if m := _JOB_PATH.match(issue.path):
                    bad_jobs.setdefault(int(m.group(1)), str(issue))
                elif m := _LINE_PATH.match(issue.path):
                    bad_lines.setdefault(int(m.group(1)), str(issue))
            if not bad_jobs and not bad_lines:
                raise
            for i, why in bad_jobs.items():
                job = problem.jobs[i]
                findings.flag(REPLAN_STEP, "work_order", job.id, why, order=job.order or "")
                by_id.pop(job.id, None)
            for i, why in bad_lines.items():
                findings.flag(REPLAN_STEP, "line", problem.lines[i].id, why)
            gone = {problem.lines[i].id for i in bad_lines}
            problem = replace(
                problem,
                lines=tuple(ln for i, ln in enumerate(problem.lines) if i not in bad_lines),
                jobs=tuple(
                    _off_lines(job, gone) for i, job in enumerate(problem.jobs) if i not in bad_jobs
                ),
                changeovers={k: v for k, v in problem.changeovers.items() if k not in gone},
            )
    check_problem(problem)
    return problem


def _off_lines(job: Job, gone: set[str]) -> Job:
    """A job no longer pinned to, or planned on, a line left out of the problem."""
    if job.pinned_line in gone:
        job = replace(job, pinned_line=None, pinned_start=None)
    if job.planned_line in gone:
        job = replace(job, planned_line=None, planned_start=None)
    return job


def _plan_lines(
    session: Session,
    live: LiveState,
    lines: list[LineRecord],
    running_sku: dict[str, str],
    *,
    now: datetime,
    line_down_assume_h: float,
) -> tuple[tuple[Line, ...], dict[str, Calendar]]:
    """The planner's lines (calendar, down, set up for) and their calendars by line id."""
    states = live.get_many("line", [ln.id for ln in lines])
    # Each line is set up for what it runs, else for what it made last.
    last_wos = [str(st["work_order"]) for st in states if st and st.get("work_order")]
    sku_of = {
        wo_id: str(lv["sku"])
        for wo_id, lv in zip(last_wos, live.get_many("work_order", last_wos), strict=True)
        if lv and lv.get("sku")
    }
    if missing := set(last_wos) - set(sku_of):  # finished work leaves the live state
        sku_of.update(
            (wo_id, sku)
            for wo_id, sku in session.execute(
                select(WorkOrder.id, WorkOrder.sku).where(WorkOrder.id.in_(missing))
            )
        )
    calendars: dict[str, Calendar] = {}
    plan_lines = []
    for ln, state in zip(lines, states, strict=True):
        state = state or {}
        if ln.calendar is not None:
            try:
                calendars[ln.id] = parse_calendar(ln.id, ln.calendar)
            except ProblemError as exc:  # stored before a check existed: plan around the clock
                log.warning("line %s: calendar ignored: %s", ln.id, exc)
        down = state.get("state") == "down"
        setup = running_sku.get(ln.id) or sku_of.get(str(state.get("work_order")))
        rates = {r.sku: r.units_per_hour for r in ln.rates}
        plan_lines.append(
            Line(
                id=ln.id,
                rates=rates,
                calendar=ln.id if ln.id in calendars else None,
                down_until=now + timedelta(hours=line_down_assume_h) if down else None,
                down_reason=str(state.get("reason") or "down") if down else "",
                setup=setup if setup in rates else None,
            )
        )
    return tuple(plan_lines), calendars


def _changeovers(
    lines: list[LineRecord], makeable: set[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """Each line's changeover matrix, limited to products some line makes."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for ln in lines:
        table = {
            before: {after: float(h) for after, h in (row or {}).items() if after in makeable}
            for before, row in (ln.changeovers or {}).items()
            if before in makeable
        }
        table = {before: row for before, row in table.items() if row}
        if table:
            out[ln.id] = table
    return out


def _materials(session: Session, makeable: set[str]) -> Materials | None:
    """Stock, BOMs of the products some line makes and open purchase orders (None: no BOM)."""
    bom: dict[str, dict[str, float]] = defaultdict(dict)
    for line in session.scalars(select(BomLine).where(BomLine.sku.in_(makeable))):
        bom[line.sku][line.material_id] = line.qty_per_unit
    if not bom:
        return None
    items = {
        m.id: Material(m.id, m.on_hand, m.lead_time_days, m.unit)
        for m in session.scalars(select(MaterialRecord).order_by(MaterialRecord.id))
    }
    orders = session.scalars(
        select(PurchaseOrderRecord)
        .where(PurchaseOrderRecord.status == "open")
        .order_by(PurchaseOrderRecord.arrives_at, PurchaseOrderRecord.id)
    )
    return Materials(
        items=items,
        bom=dict(bom),
        purchase_orders=tuple(
            PurchaseOrder(po.id, po.material_id, po.qty, po.arrives_at) for po in orders
        ),
    )


def replan(
    sessions: sessionmaker[Session],
    live: LiveState,
    *,
    now: datetime,
    trigger: str,
    window: PlanWindow,
    track: Callable[[str], str] | None = None,
    full_sync: bool = True,
) -> PlanOutcome:
    """Plan all open work now, store the revision, promises and purchase requests, and
    update live state; ``track`` makes the tracking link sent with each promise.
    ``full_sync=False``: the live state gets only what changed (``sync_live``'s ``full``)."""
    findings = Findings()
    with transaction(sessions) as session:
        problem, wos = build_problem(session, live, now, window, findings=findings)
        started = time.perf_counter()
        schedule = solve(problem)
        solve_ms = (time.perf_counter() - started) * 1000
        outcome = _publish_sql(session, problem, schedule, wos, trigger, solve_ms, window)
        session.flush()
        # Live state first, so the promise and the ETA it implies reach the CRM together;
        # the outbox rows commit with the promises they report.
        sync_live(session, live, now=now, findings=findings, full=full_sync)
        run_isolated(
            session,
            findings,
            FEEDBACK_STEP,
            lambda isolate: sync_feedback(
                session, live, findings=findings, isolate=isolate, track=track
            ),
        )
        run_isolated(
            session,
            findings,
            "quarantine",
            lambda _: record_quarantine(session, findings, now=utcnow()),
        )
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
    wos: dict[str, Work],
    trigger: str,
    solve_ms: float,
    window: PlanWindow,
) -> PlanOutcome:
    previous = session.scalar(select(PlanRevision).order_by(PlanRevision.id.desc()).limit(1))
    before = {a["job"]: a for a in (previous.assignments if previous else [])}
    assignments = []
    order_end: dict[str, datetime] = {}
    moved = []
    placed: list[dict[str, Any]] = []  # the work orders whose line or times changed
    for a in schedule.assignments:
        wo = wos[a.job]
        if (wo.line_id, wo.planned_start, wo.planned_end) != (a.line, a.start, a.end):
            placed.append(
                {"id": wo.id, "line_id": a.line, "planned_start": a.start, "planned_end": a.end}
            )
        row = {
            "job": a.job,
            "order": wo.order_id,
            "line": a.line,
            "product": wo.sku,
            "qty": wo.qty,
            "start": iso(a.start),
            "end": iso(a.end),
        }
        if a.setup_h:
            row["changeover_h"] = round(a.setup_h, 3)
        assignments.append(row)
        order_end[wo.order_id] = max(order_end.get(wo.order_id, a.end), a.end)
        old = before.get(a.job)
        if old is not None:
            end_shift = _hours(a.end - _ts(old["end"]))
            start_shift = _hours(a.start - _ts(old["start"]))
            if old["line"] != a.line or abs(end_shift) >= MOVE_EPSILON_H:
                moved.append(
                    {
                        "job": a.job,
                        "order": wo.order_id,
                        "from_line": old["line"],
                        "to_line": a.line,
                        "start_shift_h": round(start_shift, 2),
                        "end_shift_h": round(end_shift, 2),
                    }
                )
    diff = {
        "trigger": trigger,
        "moved": moved,
        "added": sorted(set(wos) - set(before)),
        "removed": sorted(set(before) - set(wos)),
        "late": [_late_row(lj, wos) for lj in schedule.late_jobs],
        "at_risk": [_late_row(lj, wos) for lj in schedule.at_risk],
    }
    if placed:
        # ORM bulk UPDATE by primary key: one executemany, no object per work order. The
        # session holds no WorkOrder the plan changed (``build_problem`` reads columns),
        # and what is read later in the transaction comes from the database.
        session.flush()
        session.execute(update(WorkOrder), placed)
        session.expire_all()
    revision = PlanRevision(
        plan_start=problem.start,
        trigger=trigger[:200],
        solver=schedule.solver[:40],
        jobs=len(assignments),
        total_weighted_tardiness_h=schedule.total_weighted_tardiness_h,
        solve_ms=round(solve_ms, 2),
        assignments=assignments,
        diff=diff,
    )
    session.add(revision)
    session.flush()
    promised = _promise(session, order_end, revision.id, window)
    requests = _publish_purchase_requests(session, schedule, revision.id)
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
            "late": len(diff["late"]),
            "purchase_requests": requests,
            "total_weighted_tardiness_h": schedule.total_weighted_tardiness_h,
        },
    )
    return PlanOutcome(revision.id, len(assignments), solve_ms, promised, len(moved))


def _late_row(late: LateJob, wos: dict[str, Work]) -> dict[str, Any]:
    """A late (or at-risk) job for the revision's diff: which, how late, and why."""
    wo = wos.get(late.job)
    row = {
        "job": late.job,
        "order": wo.order_id if wo is not None else None,
        "line": late.line,
        "tardiness_h": round(late.tardiness_h, 2),
        "reason": late.reason,
        "cause": dict(late.cause),
    }
    if late.slack_h:
        row["slack_h"] = round(late.slack_h, 2)
    return row


def _publish_purchase_requests(session: Session, schedule: Schedule, revision_id: int) -> int:
    """Replace the open purchase requests with this plan's; audit materials newly short."""
    wanted = schedule.purchase_requests
    open_before = list(
        session.scalars(select(PurchaseRequest).where(PurchaseRequest.status == "open"))
    )
    short_before = {pr.material_id for pr in open_before}
    for pr in open_before:
        pr.status = "superseded"
    for req in wanted:
        row = PurchaseRequest(
            material_id=req.material,
            qty=float(req.qty),
            needed_by=req.needed_by,
            arrives_if_ordered_now=req.arrives,
            jobs=list(req.jobs),
            plan_revision_id=revision_id,
            status="open",
        )
        session.add(row)
        if req.material not in short_before:
            session.flush()
            record(
                session,
                actor="planner",
                action="purchase_request.raised",
                entity="material",
                entity_id=req.material,
                details={
                    "purchase_request": row.id,
                    "qty": float(req.qty),
                    "needed_by": iso(req.needed_by),
                    "arrives_if_ordered_now": iso(req.arrives),
                    "jobs": list(req.jobs),
                    "plan_revision": revision_id,
                },
            )
    return len(wanted)


def _ts(value: str) -> datetime:
    """A stored plan's timestamp (always present there)."""
    moment = parse_ts(value)
    assert moment is not None
    return moment


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


def promise_for(requested: date, planned_end: datetime, window: PlanWindow) -> tuple[date, str]:
    """The date to promise for an order planned to finish at ``planned_end``, and the rule
    that chose it: the requested date when the plan meets it with the margin to spare (the
    slack stays the factory's, so later orders do not "break" a promise made too early),
    otherwise the earliest safe date, the day the last unit is planned to finish."""
    earliest = promise_day(planned_end)
    if window.promise_policy != "requested":
        return earliest, "earliest safe date"
    if planned_end + timedelta(hours=window.promise_margin_h) <= end_of_day(requested):
        return requested, f"requested date met with {window.promise_margin_h:g} h margin"
    return earliest, "earliest safe date (requested date not met with margin)"


def _promise(
    session: Session, order_end: dict[str, datetime], revision_id: int, window: PlanWindow
) -> dict[str, str]:
    """Promise a date to every order whose current version has none yet."""
    promised: dict[str, str] = {}
    if not order_end:
        return promised
    # Only the orders owed a promise (why: reading every planned order back cost a replan
    # at 800 open orders more than promising the new ones).
    unpromised = or_(
        Order.promised_date.is_(None),
        Order.promise_version.is_(None),
        Order.promise_version != Order.version,
    )
    orders = session.scalars(
        select(Order)
        .where(Order.id.in_(order_end), unpromised)
        .order_by(Order.id)
        .options(lazyload(Order.lines))
    )
    for order in orders:
        if order.promised_date is not None and order.promise_version == order.version:
            continue
        new, rule = promise_for(order.requested_date, order_end[order.id], window)
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
                "rule": rule,
                "plan_revision": revision_id,
            },
        )
    return promised


def sync_live(
    session: Session,
    live: LiveState,
    *,
    now: datetime,
    rebuild: bool = False,
    findings: Findings | None = None,
    full: bool = True,
) -> None:
    """Make the live state agree with SQL: lines, open orders, their work orders, alerts.

    Live counters (good, scrap, rate) win over SQL's checkpoints unless ``rebuild``. A work
    order whose live values cannot be read is left as it is and named in ``findings``.
    ``full=False`` rewrites only the orders (and their work orders) whose SQL fields changed
    since the last sync (``SYNCED_KEY``), or that the live state lacks; lines, alerts,
    removals and ETAs are always brought up to date. Why: a replan at 800 open orders spent
    most of its sync rewriting (reading, diffing) orders nothing had changed.
    """
    findings = findings if findings is not None else Findings()
    if rebuild:
        live.clear()
        full = True
    # What is read to build the updates is what they are diffed against: ``apply`` then
    # reads only what was not read (why: it re-read every work order and line, a third of
    # the sync at 2,000 open orders). A counter an ingest moves meanwhile is then not
    # written back from the older read, as it was when the diff saw the newer value.
    seen = live.snapshot()
    lines = list(session.scalars(select(LineRecord).order_by(LineRecord.id)))
    digests, open_wos = _digests(session)
    if full:
        dirty = set(digests)
    else:
        synced = live.redis.hgetall(SYNCED_KEY)
        live_orders, live_wos = set(live.ids("order")), set(live.ids("work_order"))
        wos_of: dict[str, list[str]] = defaultdict(list)
        for wo_id, order_id, _, _ in open_wos:
            wos_of[order_id].append(wo_id)
        dirty = {
            order_id
            for order_id, digest in digests.items()
            if synced.get(order_id) != digest  # type: ignore[union-attr]
            or order_id not in live_orders
            or any(w not in live_wos for w in wos_of[order_id])
        }
    chosen = Order.status.in_(OPEN_STATUSES) if full else Order.id.in_(dirty)
    orders = (
        list(
            session.scalars(
                select(Order).where(chosen).order_by(Order.id).options(lazyload(Order.lines))
            )
        )
        if dirty
        else []
    )
    wos = [wo for o in orders for wo in o.work_orders if wo.status != "cancelled"]
    known_wos = dict(
        zip([w.id for w in wos], seen.get_many("work_order", [w.id for w in wos]), strict=True)
    )
    # Where the others run (a running work order is queued on the line it runs on).
    others = [wo_id for wo_id, _, _, _ in open_wos if wo_id not in known_wos]
    running_on = _running_lines(live, others)
    known_lines = dict(
        zip([ln.id for ln in lines], seen.get_many("line", [ln.id for ln in lines]), strict=True)
    )
    queues: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    updates: list[Update] = []
    unsynced: set[str] = set()  # orders one of whose work orders could not be written
    for wo in wos:
        written = False
        with findings.guard(REPLAN_STEP, "work_order", wo.id, order=wo.order_id):
            lv = known_wos.get(wo.id)
            updates.append(Update("work_order", wo.id, _live_work_order(wo, lv)))
            line_id = (lv or {}).get("line") if (lv or {}).get("status") == "running" else None
            line_id = line_id or wo.line_id
            if line_id and wo.planned_start:
                queues[str(line_id)].append((wo.planned_start, wo.id))
            written = True
        if not written:
            unsynced.add(wo.order_id)
    for wo_id, _, wo_line, planned_start in open_wos:
        if wo_id in known_wos:
            continue
        line_id = running_on.get(wo_id) or wo_line
        if line_id and planned_start:
            queues[str(line_id)].append((planned_start, wo_id))
    site_names = {i: name for i, name in session.execute(select(Site.id, Site.name))}
    for ln in lines:
        fields: dict[str, Any] = {
            "name": ln.name,
            "site": ln.site_id,
            "site_name": site_names.get(ln.site_id, ln.site_id),
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
    for alert in not_behind(active, seen.get_many("alert", [str(a.id) for a in active])):
        updates.append(Update("alert", str(alert.id), alert_view(alert)))
    seen.apply(updates)
    gone = set(live.ids("order")) - set(digests)
    live.remove("order", gone)
    live.remove("work_order", set(live.ids("work_order")) - {w for w, _, _, _ in open_wos})
    live.remove("alert", set(live.ids("alert")) - {str(a.id) for a in active})
    with live.redis.pipeline(transaction=False) as pipe:
        if full:
            pipe.delete(SYNCED_KEY)
        elif gone:
            pipe.hdel(SYNCED_KEY, *gone)
        digested: dict[Any, str] = {o.id: digests[o.id] for o in orders if o.id not in unsynced}
        if digested:
            pipe.hset(SYNCED_KEY, mapping=digested)
        pipe.execute()
    live.apply(estimate(live, now, findings=findings))
    live.mark_built(now)


def _digests(
    session: Session,
) -> tuple[dict[str, str], list[tuple[str, str, str | None, datetime | None]]]:
    """A digest of each open order's SQL fields (and its work orders'), and each of their
    work orders not cancelled as ``(id, order id, planned line, planned start)``."""
    order_rows = session.execute(
        select(
            Order.id,
            Order.customer_id,
            Customer.name,
            Order.status,
            Order.priority,
            Order.requested_date,
            Order.promised_date,
            Order.version,
        )
        .join(Customer, Order.customer_id == Customer.id)
        .where(Order.status.in_(OPEN_STATUSES))
    ).all()
    wo_rows = session.execute(
        select(
            WorkOrder.id,
            WorkOrder.order_id,
            WorkOrder.sku,
            WorkOrder.qty,
            WorkOrder.status,
            WorkOrder.line_id,
            WorkOrder.planned_start,
            WorkOrder.planned_end,
            WorkOrder.good,
            WorkOrder.scrap,
        )
        .join(Order, WorkOrder.order_id == Order.id)
        .where(Order.status.in_(OPEN_STATUSES))
        .order_by(WorkOrder.id)
    ).all()
    of_order: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    open_wos: list[tuple[str, str, str | None, datetime | None]] = []
    for row in wo_rows:
        # Times as the live state holds them (to the second): a plan that moved less
        # writes nothing new.
        of_order[row[1]].append((*row[:6], iso(row[6]), iso(row[7]), *row[8:]))
        if row[4] != "cancelled":
            open_wos.append((row[0], row[1], row[5], row[6]))
    digests = {
        row[0]: hashlib.blake2b(
            repr((tuple(row), of_order.get(row[0], []))).encode(), digest_size=12
        ).hexdigest()
        for row in order_rows
    }
    return digests, open_wos


def _running_lines(live: LiveState, wo_ids: list[str]) -> dict[str, str]:
    """The line each of ``wo_ids`` runs on, for those the live state says are running."""
    if not wo_ids:
        return {}
    with live.redis.pipeline(transaction=False) as pipe:
        for wo_id in wo_ids:
            pipe.hmget(live_key("work_order", wo_id), ["status", "line"])
        answers = pipe.execute()
    out: dict[str, str] = {}
    for wo_id, (status, line) in zip(wo_ids, answers, strict=True):
        if status is not None and line is not None and orjson.loads(status) == "running":
            running_line = orjson.loads(line)
            if running_line:
                out[wo_id] = str(running_line)
    return out


def _live_work_order(wo: WorkOrder, lv: dict[str, Any] | None) -> dict[str, Any]:
    """The fields SQL gives a work order's live state (counters only when it has none)."""
    fields: dict[str, Any] = {
        "order_id": wo.order_id,
        "sku": wo.sku,
        "qty": wo.qty,
        "planned_start": iso(wo.planned_start),
        "planned_end": iso(wo.planned_end),
    }
    if lv is None:
        fields.update(
            line=wo.line_id,
            good=wo.good,
            scrap=wo.scrap,
            status=wo.status,
            progress=round(min(wo.good, wo.qty) / wo.qty, 4) if wo.qty else 0.0,
        )
        return fields
    if problem := count_problem(lv, wo.qty):
        raise ValueError(problem)
    good = int(lv.get("good") or 0)
    if lv.get("status") != "running":
        fields["line"] = wo.line_id
    if lv.get("status") == "done" and good < wo.qty:
        fields["status"] = "running"  # the order grew after this work order finished
    fields["progress"] = round(min(good, wo.qty) / wo.qty, 4)
    return fields
