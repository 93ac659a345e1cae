"""The demo's past: weeks of orders made and delivered before it started, so the KPI
screen has trends to show on its first run.

Written straight into the records as the loop would have left them: each order with its
lines, work orders (made on a line that can, with some scrap), the promise and the audit
trail, its delivery, the sales rep's follow-ups (most done, with satisfaction scores;
the latest still open in the inbox), line stops (resolved line-down alerts), each line's
OEE per shift (as the worker stores it: the stops as breakdowns, a few setups and small
stops, the line running a little below its ideal rate, some scrap) and the purchase
orders received meanwhile. Nothing here is owed to the CRM: it is history.
Deliveries and OEE get better over the weeks (fewer late, shorter lead times, faster
lines), as a factory that started using Loopline would hope.
"""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopline.models.audit import record
from loopline.models.downtime import load_tree
from loopline.models.followup import CONFIRMATION, SATISFACTION, FollowupTask, OrderDelivery
from loopline.models.oee import (
    FINAL_AFTER_S,
    Counts,
    StopSpan,
    compute_oee,
    line_calendar,
    shift_row,
    shifts_between,
)
from loopline.models.orders import work_order_id
from loopline.models.records import (
    Alert,
    AuditEntry,
    Customer,
    Line,
    Material,
    Order,
    OrderLine,
    PurchaseOrder,
    WorkOrder,
)
from loopline.simulators.crm import SALES_REPS

HISTORY_WEEKS = 12
ORDERS_PER_WEEK = (6, 11)  # a random count in this range each week
HISTORY_PREFIX = "SO-H"
FOLLOWUP_AFTER = timedelta(days=7)
NOTES = ("", "Customer happy", "Asked for faster delivery", "Repeat order coming")
STOP_REASONS = ("jam", "tool change", "no material", "sensor fault", "power dip")


def backfill_history(
    session: Session,
    *,
    now: datetime,
    weeks: int = HISTORY_WEEKS,
    rng: random.Random | None = None,
) -> int:
    """Write ``weeks`` of delivered orders ending at ``now`` (idempotent: nothing when the
    history is there); how many orders were written."""
    already = session.scalar(select(Order.id).where(Order.id.like(f"{HISTORY_PREFIX}%")).limit(1))
    if already is not None:
        return 0
    rng = rng or random.Random(11)
    customers = list(session.scalars(select(Customer.id).order_by(Customer.id)))
    lines = list(session.scalars(select(Line).order_by(Line.id)))
    if not customers or not lines:
        raise ValueError("backfill_history needs the factory's customers and lines first")
    makers: dict[str, list[Line]] = {}
    for ln in lines:
        for rate in ln.rates:
            makers.setdefault(rate.sku, []).append(ln)
    skus = sorted(makers)
    start = now - timedelta(weeks=weeks)
    n = 0
    for week in range(weeks):
        # 0 at the oldest week, 1 at the newest: the factory gets better.
        progress = week / max(1, weeks - 1)
        for _ in range(rng.randint(*ORDERS_PER_WEEK)):
            delivered = start + timedelta(weeks=week, seconds=rng.uniform(0, 7 * 86_400))
            if delivered >= now - timedelta(hours=6):
                continue
            n += 1
            _order(
                session,
                order_id=f"{HISTORY_PREFIX}{n:04d}",
                customer=rng.choice(customers),
                skus=rng.sample(skus, k=rng.randint(1, 2)),
                makers=makers,
                delivered=delivered,
                progress=progress,
                now=now,
                rng=rng,
            )
    stops = _stops(session, lines, start=start, now=now, rng=rng)
    _shift_oee(session, lines, stops, start=start, now=now, rng=rng)
    _receipts(session, start=start, now=now, rng=rng)
    session.flush()
    return n


def _order(
    session: Session,
    *,
    order_id: str,
    customer: str,
    skus: list[str],
    makers: dict[str, list[Line]],
    delivered: datetime,
    progress: float,
    now: datetime,
    rng: random.Random,
) -> None:
    lead_days = rng.uniform(4.0, 16.0) * (1.25 - 0.45 * progress)
    ordered = delivered - timedelta(days=lead_days)
    # The day the customer asked for: met more often as the weeks go by.
    late = rng.random() < 0.5 * (1 - progress) + 0.1
    offset = -rng.randint(1, 4) if late else rng.randint(0, 4)
    requested = max(ordered.date() + timedelta(days=2), delivered.date() + timedelta(days=offset))
    # The promise: usually what the plan showed, sometimes missed by a day or more (less
    # often as the weeks go by).
    missed = rng.random() < 0.35 * (1 - progress) + 0.05
    promised = delivered.date() - timedelta(
        days=rng.randint(1, 3) if missed else -rng.randint(0, 2)
    )
    rep = rng.choice(SALES_REPS)
    order = Order(
        id=order_id,
        customer_id=customer,
        version=1,
        status="delivered",
        priority=rng.choices(["normal", "high", "rush"], [0.8, 0.15, 0.05])[0],
        requested_date=requested,
        promised_date=promised,
        promise_version=1,
        sales_rep=rep,
        source="crm",
        created_at=ordered,
        updated_at=delivered,
        # What the CRM was told last, so the feedback sweep has nothing to send.
        reported={
            "status": "delivered",
            "promised_date": promised.isoformat(),
            "eta_date": None,
            "risk": None,
        },
    )
    session.add(order)
    session.flush()
    for no, sku in enumerate(skus, start=1):
        qty = rng.randrange(100, 2001, 50)
        scrap = int(qty * rng.uniform(0.0, 0.04))
        line = rng.choice(makers[sku])
        end = delivered - timedelta(hours=rng.uniform(6, 30))
        session.add(OrderLine(order_id=order_id, line_no=no, sku=sku, qty=qty))
        session.add(
            WorkOrder(
                id=work_order_id(order_id, no),
                order_id=order_id,
                line_no=no,
                sku=sku,
                qty=qty,
                status="done",
                line_id=line.id,
                planned_start=end - timedelta(hours=qty / 80),
                planned_end=end,
                good=qty,
                scrap=scrap,
            )
        )
    _audit(session, order_id, ordered, "crm", "order.created", {"version": 1, "history": True})
    _audit(
        session,
        order_id,
        ordered + timedelta(minutes=2),
        "planner",
        "order.promised",
        {"version": 1, "old": None, "new": promised.isoformat(), "rule": "history"},
    )
    made = delivered - timedelta(hours=rng.uniform(6, 30))
    _audit(session, order_id, made, "shop-floor", "order.completed", {"new": "completed"})
    _audit(session, order_id, delivered, "crm", "order.delivered", {"new": "delivered"})
    session.add(
        OrderDelivery(
            order_id=order_id,
            delivered_at=delivered,
            source="demo",
            actor="demo",
            recorded_at=delivered,
        )
    )
    recent = now - delivered < timedelta(days=2)
    _task(session, order, CONFIRMATION, due=delivered, now=now, rng=rng, done=not recent)
    due = delivered + FOLLOWUP_AFTER
    if due <= now:
        # Most satisfaction follow-ups are done within days; the last week's may wait.
        done = now - due > timedelta(days=3) or rng.random() < 0.5
        _task(
            session,
            order,
            SATISFACTION,
            due=due,
            now=now,
            rng=rng,
            done=done,
            score=_score(rng, promised, delivered.date(), requested),
        )


def _score(rng: random.Random, promised: date, delivered: date, requested: date) -> int:
    """A customer's satisfaction: high when the promise held, lower the later it came."""
    late = (delivered - min(promised, requested)).days
    base = 92 - 9 * max(0, late)
    return max(0, min(100, round(rng.gauss(base, 6))))


def _task(
    session: Session,
    order: Order,
    kind: str,
    *,
    due: datetime,
    now: datetime,
    rng: random.Random,
    done: bool,
    score: int | None = None,
) -> None:
    done_at = min(now, due + timedelta(hours=rng.uniform(2, 60))) if done else None
    session.add(
        FollowupTask(
            order_id=order.id,
            kind=kind,
            assignee=order.sales_rep,
            status="done" if done else "open",
            created_at=due,
            due_at=due,
            done_at=done_at,
            done_by=order.sales_rep if done else None,
            score=score if done and kind == SATISFACTION else None,
            note=rng.choice(NOTES) if done else None,
        )
    )


def _audit(
    session: Session,
    order_id: str,
    at: datetime,
    actor: str,
    action: str,
    details: dict[str, object],
) -> None:
    entry: AuditEntry = record(
        session, actor=actor, action=action, entity="order", entity_id=order_id, details=details
    )
    entry.at = at


def _stops(
    session: Session, lines: list[Line], *, start: datetime, now: datetime, rng: random.Random
) -> list[tuple[str, datetime, datetime]]:
    """A few resolved line stops per line (line-down alerts) over the weeks: (line, from,
    to) of each."""
    n = 0
    out: list[tuple[str, datetime, datetime]] = []
    for line in lines:
        for _ in range(rng.randint(3, 8)):
            opened = start + timedelta(
                seconds=rng.uniform(0, (now - start).total_seconds() - 86_400)
            )
            n += 1
            minutes = rng.uniform(10, 360)
            reason = rng.choice(STOP_REASONS)
            session.add(
                Alert(
                    key=f"line_down:{line.id}:history-{n}",
                    kind="line_down",
                    entity="line",
                    entity_id=line.id,
                    severity="critical",
                    message=f"Line {line.id} down: {reason}",
                    status="resolved",
                    opened_at=opened,
                    resolved_at=opened + timedelta(minutes=minutes),
                    details={"line": line.id, "reason": reason, "history": True},
                )
            )
            out.append((line.id, opened, opened + timedelta(minutes=minutes)))
    return out


def _shift_oee(
    session: Session,
    lines: list[Line],
    stops: list[tuple[str, datetime, datetime]],
    *,
    start: datetime,
    now: datetime,
    rng: random.Random,
) -> None:
    """Each line's OEE per shift over the weeks, stored final as the worker leaves a shift
    that is over (only shifts over by ``FINAL_AFTER_S``: the worker owns the rest)."""
    tree = load_tree(session)
    done_by = now - timedelta(seconds=FINAL_AFTER_S)
    span_s = max(1.0, (now - start).total_seconds())
    rows = []
    for line in lines:
        down = [StopSpan(a, b, "breakdown") for lid, a, b in stops if lid == line.id]
        cal = line_calendar(line, tree)
        for shift in shifts_between(line.id, cal, tree, start, done_by):
            if shift.start < start or shift.end > done_by or not shift.planned:
                continue
            progress = (shift.start - start).total_seconds() / span_s  # 0 oldest, 1 newest
            lost = [s for s in down if s.start < shift.end and s.end > shift.start]
            first = shift.planned[0][0]
            if rng.random() < 0.5:  # a changeover early in the shift
                setup = first + timedelta(minutes=rng.uniform(30, 90))
                lost.append(StopSpan(setup, setup + timedelta(minutes=rng.uniform(5, 25)), "setup"))
            for _ in range(rng.randint(0, 4)):
                at = first + timedelta(minutes=rng.uniform(0, 400))
                lost.append(
                    StopSpan(at, at + timedelta(seconds=rng.uniform(30, 240)), "small_stop")
                )
            # Run time at the ideal rate: 78-88 % at first, 86-95 % by the last weeks.
            planned_s = sum((b - a).total_seconds() for a, b in shift.planned)
            run_s = max(
                0.0,
                planned_s - sum(_inside(s, shift.planned) for s in lost if s.loss != "small_stop"),
            )
            ideal_s = run_s * rng.uniform(0.78 + 0.08 * progress, 0.88 + 0.07 * progress)
            units = int(ideal_s / 36)  # 100 units an hour at the ideal rate
            scrap = int(units * rng.uniform(0.01, 0.04 - 0.015 * progress))
            counts = Counts(units - scrap, scrap, min(scrap, rng.randint(0, 5)), ideal_s)
            figures = compute_oee(shift.planned, lost, counts, until=shift.end)
            rows.append(shift_row(shift, figures, now=now))
    session.add_all(rows)  # new rows only: the history is written once


def _inside(stop: StopSpan, spans: tuple[tuple[datetime, datetime], ...]) -> float:
    """Seconds of ``stop`` inside ``spans``."""
    return sum(max(0.0, (min(b, stop.end) - max(a, stop.start)).total_seconds()) for a, b in spans)


def _receipts(session: Session, *, start: datetime, now: datetime, rng: random.Random) -> None:
    """Material bought and received over the weeks (inventory turns need them)."""

    for i, material in enumerate(session.scalars(select(Material).order_by(Material.id))):
        for week in range(0, int((now - start).days / 7), 3):
            arrived = datetime.combine(
                (start + timedelta(weeks=week, days=rng.randint(0, 6))).date(), time(8), now.tzinfo
            )
            session.add(
                PurchaseOrder(
                    id=f"PO-H{i}{week:02d}",
                    material_id=material.id,
                    qty=round(material.on_hand * rng.uniform(0.15, 0.35)),
                    arrives_at=arrived,
                    status="received",
                )
            )
