"""Quotes: when could the factory promise a new order, and whose promise would it cost.

The DB side of ``models.planning.quote``: the current open work as a planning problem,
the answer mapped back from work orders to orders and their promises, and an audit entry.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loopline.models.audit import record
from loopline.models.clock import end_of_day, iso, promise_day
from loopline.models.live import LiveState
from loopline.models.planning import Problem
from loopline.models.records import InboxEvent, LineRate, Order, PlanRevision, Product, WorkOrder
from loopline.models.replan import PRIORITY_WEIGHT, PlanWindow, build_problem, promise_for

if TYPE_CHECKING:
    from loopline.models.planning.quote import Placement

QUOTE_TIME_LIMIT_S = 0.05
# Quotes reuse the planning problem built for the previous quote (reading every open work
# order from SQL and live state is most of a quote's time at 2,000 jobs) while no plan
# revision was published, no CRM event received, and for at most this long.
PROBLEM_REUSE_S = 30.0
_problems: dict[tuple[str, int], tuple[tuple[int | None, int | None], datetime, Problem]] = {}
_problems_lock = threading.Lock()


class UnknownSku(ValueError):
    """The factory does not know the product, or no line can make it."""

    def __init__(self, sku: str, reason: str) -> None:
        super().__init__(reason)
        self.sku = sku
        self.reason = reason


@dataclass(frozen=True)
class QuoteAsk:
    """What sales asks about."""

    sku: str
    qty: float
    requested_date: date
    priority: str = "normal"


def make_quote(
    session: Session,
    live: LiveState,
    *,
    ask: QuoteAsk,
    now: datetime,
    actor: str,
    window: PlanWindow,
) -> dict[str, Any]:
    """Quote ``ask`` against the current plan; audited as ``quote.made``.

    Raises UnknownSku. The answer has ``earliest`` (moving nobody) and ``prioritized``
    (going first, with the orders that would slip).
    """
    # Imported when asked: the planner's quote module is heavier than the rest of the app.
    from loopline.models.planning.quote import QuoteRequest, quote

    problem = _current_problem(session, live, now, window)
    # A line of the current problem makes it: a known product some line makes (the SQL
    # checks only when not, to say which of the two is missing).
    if not any(ask.sku in ln.rates for ln in problem.lines):
        if session.get(Product, ask.sku) is None:
            raise UnknownSku(ask.sku, f"unknown product '{ask.sku}'")
        if session.scalar(select(LineRate.line_id).where(LineRate.sku == ask.sku).limit(1)) is None:
            raise UnknownSku(ask.sku, f"no line can make '{ask.sku}'")
    due = end_of_day(ask.requested_date)
    answer = quote(
        problem,
        QuoteRequest(
            product=ask.sku,
            qty=float(ask.qty),
            due=due,
            weight=PRIORITY_WEIGHT[ask.priority],
            priority=ask.priority,
        ),
        time_limit=QUOTE_TIME_LIMIT_S,
    )
    jobs = [s.job for s in answer.slips]
    orders: dict[str, tuple[str, date | None]] = {}
    if jobs:  # the order and promise of each work order that would slip (columns only)
        rows = session.execute(
            select(WorkOrder.id, Order.id, Order.promised_date)
            .join(Order, WorkOrder.order_id == Order.id)
            .where(WorkOrder.id.in_(jobs))
        )
        orders = {wo_id: (order_id, promised) for wo_id, order_id, promised in rows}
    slips = []
    for s in answer.slips:
        order_id, promised = orders.get(s.job, (None, None))
        slips.append(
            {
                "order_id": order_id,
                "work_order": s.job,
                "slip_h": round(s.slip_h, 2),
                "old_end": iso(s.old_end),
                "new_end": iso(s.new_end),
                "promised_date": promised.isoformat() if promised else None,
                "breaks_promise": bool(promised and s.new_end > end_of_day(promised)),
            }
        )
    earliest = _placement(answer.earliest, ask.requested_date, window)
    prioritized = _placement(answer.prioritized, ask.requested_date, window)
    result: dict[str, Any] = {
        "sku": ask.sku,
        "qty": ask.qty,
        "requested_date": ask.requested_date.isoformat(),
        "priority": ask.priority,
        "earliest": earliest,
        "prioritized": {**prioritized, "slips": slips},
    }
    record(
        session,
        actor=actor,
        action="quote.made",
        entity="product",
        entity_id=ask.sku,
        details={
            "qty": ask.qty,
            "requested_date": result["requested_date"],
            "priority": ask.priority,
            "earliest": earliest["date"],
            "prioritized": prioritized["date"],
            "rule": earliest["rule"],
            "slipping_orders": sorted({s["order_id"] for s in slips if s["order_id"]}),
            "breaks_promises": sorted(
                {s["order_id"] for s in slips if s["breaks_promise"] and s["order_id"]}
            ),
        },
    )
    return result


def _current_problem(
    session: Session, live: LiveState, now: datetime, window: PlanWindow
) -> Problem:
    """The open work as a planning problem: built afresh, or the previous quote's while
    nothing was replanned or received since (and ``PROBLEM_REUSE_S`` has not passed)."""
    bind = session.get_bind()
    where = (str(bind.engine.url), id(bind.engine))
    row = session.execute(
        select(
            select(func.max(PlanRevision.id)).scalar_subquery(),
            select(func.max(InboxEvent.id)).scalar_subquery(),
        )
    ).one()
    version = (row[0], row[1])
    with _problems_lock:
        cached = _problems.get(where)
    if cached is not None:
        seen, built_at, problem = cached
        age = (now - built_at).total_seconds()
        if seen == version and 0 <= age <= PROBLEM_REUSE_S and problem.frozen_h == window.frozen_h:
            return problem
    problem, _ = build_problem(session, live, now, window)
    with _problems_lock:
        _problems[where] = (version, now, problem)
    return problem


def _placement(placement: Placement, requested: date, window: PlanWindow) -> dict[str, Any]:
    """A placement as the date sales may promise, by the same rule the replan promises by
    (``promise_for``): the requested date when the plan meets it with the margin, else the
    day the last unit is planned to finish (``finish_date``)."""
    promised, rule = promise_for(requested, placement.end, window)
    return {
        "date": promised.isoformat(),
        "rule": rule,
        "finish_date": promise_day(placement.end).isoformat(),
        "start": iso(placement.start),
        "end": iso(placement.end),
        "line": placement.line,
        "meets_requested": placement.end <= end_of_day(requested),
    }
