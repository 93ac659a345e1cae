"""Rush and change approval: a CRM order change that would break another order's promise
waits for a production manager.

``apply_gated`` applies a CRM ``order.upserted`` inside a SAVEPOINT and solves the plan as
a preview, before and after; the worker runs it on each received event (models/intake.py),
never the webhook's request. When another open order's planned end moves past the end of
its promised day, the savepoint is rolled back and the event is parked as a
``PendingChange`` with its impact, unless an auto-approve rule (``ApprovalPolicy``) lets it
in. Cancellations are never gated. ``approve`` re-applies a parked event through the same
apply path; ``reject`` leaves the order as it was. Every decision is audited and told to
the CRM through the outbox (``change.pending|approved|rejected|auto_approved``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import case, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from loopline.models.audit import record
from loopline.models.clock import end_of_day, iso, utcnow
from loopline.models.events import OrderCancelled, OrderUpserted, parse_crm_event
from loopline.models.live import Change, LiveState
from loopline.models.orders import OPEN_STATUSES, ApplyResult, apply_crm_event
from loopline.models.outbox import enqueue
from loopline.models.planning import ProblemError, solve
from loopline.models.records import InboxEvent, Order, PendingChange
from loopline.models.replan import PlanWindow, build_problem

log = logging.getLogger("loopline.approvals")

ChangeStatus = Literal["pending", "approved", "rejected", "auto_approved", "superseded"]
GateOutcome = Literal["applied", "stale", "duplicate", "pending_approval"]
# An order whose planned end moved by less than this (hours) was not moved by the change:
# two previews of nearly the same problem may differ a little.
SLIP_EPSILON_H = 0.25
# How an approved change is named in the inbox (its webhook-id is ``change-<id>``).
APPROVAL_SOURCE = "loopline:approval"


@dataclass(frozen=True)
class ApprovalPolicy:
    """Auto-approve rules: slips all within ``max_slip_h`` (0: off), or the changed order's
    priority is one of ``priorities``."""

    max_slip_h: float
    priorities: frozenset[str]

    def rule_for(self, *, priority: str, impact: Sequence[dict[str, Any]]) -> str | None:
        """The rule that lets a change with this impact in, or None."""
        if priority in self.priorities:
            return f"priority {priority}"
        if self.max_slip_h > 0 and all(i["slip_h"] <= self.max_slip_h for i in impact):
            return f"every slip within {self.max_slip_h:g} h"
        return None


@dataclass(frozen=True)
class Gate:
    """What the gate needs besides the session: live state, the loop's clock, the rules."""

    live: LiveState
    now: Callable[[], datetime]
    policy: ApprovalPolicy
    window: PlanWindow


@dataclass(frozen=True)
class GateResult:
    """A CRM event's fate at the gate; ``change_id`` names its ``PendingChange`` if any."""

    outcome: GateOutcome
    order_id: str
    version: int
    changes: dict[str, Any]
    change_id: int | None = None
    change_status: ChangeStatus | None = None


class AlreadyDecided(Exception):
    """The change is no longer pending."""

    def __init__(self, change: PendingChange) -> None:
        super().__init__(
            f"change {change.id} is already {change.status}"
            + (f" ({change.note})" if change.note else "")
        )
        self.change = change


@dataclass(frozen=True)
class Decision:
    """What ``approve``/``reject`` did: ``superseded`` means a newer version won meanwhile."""

    change: PendingChange
    outcome: Literal["approved", "rejected", "superseded"]
    changes: dict[str, Any] = field(default_factory=dict)


# -- the gate -------------------------------------------------------------------------------


def apply_gated(
    session: Session,
    *,
    gate: Gate | None,
    event: OrderUpserted | OrderCancelled,
    source: str,
    webhook_id: str,
    raw: str,
    actor: str,
    inbox_id: int | None = None,
) -> GateResult:
    """Apply a verified CRM event unless it would break another order's promise.

    Without a gate the event is simply applied. Runs inside the caller's transaction
    (whose loaded objects it may expunge); ``inbox_id`` names the event's inbox row when it
    was recorded already (the worker's intake), else the row is made here. A change
    that slips nobody, a cancellation, a duplicate and a stale version go through as
    ``apply_crm_event`` decides; the common case costs one preview solve, a change that
    slips someone a second one (the plan without it: only what the change moves counts).
    """
    order_id, version = event.order.id, event.order.version

    def write() -> ApplyResult:
        return apply_crm_event(
            session,
            event=event,
            source=source,
            webhook_id=webhook_id,
            raw=raw,
            actor=actor,
            inbox_id=inbox_id,
        )

    def apply() -> GateResult:
        result = write()
        if result.outcome == "applied":
            supersede_older(session, order_id=order_id, version=version, actor=actor)
        return GateResult(result.outcome, order_id, version, result.changes)

    if gate is None or isinstance(event, OrderCancelled) or not _others_promised(session, order_id):
        return apply()
    now = gate.now()
    savepoint = session.begin_nested()
    try:
        result = write()
        after: dict[str, datetime] | None = None
        if result.outcome == "applied":
            session.flush()
            after = _preview(session, gate, now, order_id, version)
    except BaseException:
        if savepoint.is_active:
            savepoint.rollback()
        raise
    late = impact_of(session, order_id=order_id, before={}, after=after) if after else []
    if not late:
        savepoint.commit()
        if result.outcome == "applied":
            supersede_older(session, order_id=order_id, version=version, actor=actor)
        return GateResult(result.outcome, order_id, version, result.changes)
    savepoint.rollback()
    # Why: a rolled-back SAVEPOINT can leave rows it inserted (work orders made by a flush
    # inside apply_crm_event) in the identity map, and applying again would collide.
    session.expunge_all()
    assert after is not None
    before = _preview(session, gate, now, order_id, version) or {}
    impact = impact_of(session, order_id=order_id, before=before, after=after)
    rule = gate.policy.rule_for(priority=event.order.priority, impact=impact) if impact else None
    if impact and rule is None:
        return _park(
            session,
            event=event,
            source=source,
            webhook_id=webhook_id,
            raw=raw,
            actor=actor,
            impact=impact,
            inbox_id=inbox_id,
        )
    applied = apply()
    if not impact or applied.outcome != "applied":
        return applied
    assert rule is not None
    change = _new_change(
        session,
        event=event,
        source=source,
        webhook_id=webhook_id,
        impact=impact,
        status="auto_approved",
    )
    _decide(change, "auto_approved", actor=f"auto: {rule}", note=f"auto-approved: {rule}")
    release_promises(session, change, actor=f"auto: {rule}")
    _audit(session, change, "change.auto_approved", actor=actor, rule=rule)
    notify_crm(session, change)
    log.info("change %s (%s v%s) auto-approved: %s", change.id, order_id, version, rule)
    return GateResult("applied", order_id, version, applied.changes, change.id, "auto_approved")


def _preview(
    session: Session, gate: Gate, now: datetime, order_id: str, version: int
) -> dict[str, datetime] | None:
    """``planned_ends``, or None (logged) when the planner refuses the problem."""
    try:
        return planned_ends(session, gate.live, now, gate.window)
    except ProblemError:  # the replan will say why; the gate must not stop the CRM
        log.exception("no preview for %s v%s: applied without the approval gate", order_id, version)
        return None


def _others_promised(session: Session, order_id: str) -> bool:
    """Whether any other open order has a promise a change could break."""
    return (
        session.scalar(
            select(Order.id)
            .where(
                Order.status.in_(OPEN_STATUSES),
                Order.promised_date.is_not(None),
                Order.id != order_id,
            )
            .limit(1)
        )
        is not None
    )


def planned_ends(
    session: Session, live: LiveState, now: datetime, window: PlanWindow
) -> dict[str, datetime]:
    """When each open order would finish if the plan were redone now, promises aside.

    Why aside: the planner keeps every promise it can (``Job.deadline``), so a change asked
    for at a higher priority would never show whom it displaces; here due dates and
    weights decide, and approving a change releases the promises it breaks.
    """
    problem, wos = build_problem(session, live, now, window)
    problem = replace(problem, jobs=tuple(replace(j, deadline=None) for j in problem.jobs))
    # As a replan solves (one planning path): from the previous plan, only the lines the
    # change touched are searched. Why not a fixed 0.3 s of search of the whole plan as
    # before: a burst of CRM events paid it on every round, however small the change.
    schedule = solve(problem)
    ends: dict[str, datetime] = {}
    for a in schedule.assignments:
        order_id = wos[a.job].order_id
        ends[order_id] = max(ends.get(order_id, a.end), a.end)
    return ends


def impact_of(
    session: Session,
    *,
    order_id: str,
    before: dict[str, datetime],
    after: dict[str, datetime],
) -> list[dict[str, Any]]:
    """The other open orders a change pushes past their promise, most slipped first."""
    rows = session.execute(
        select(Order.id, Order.promised_date).where(
            Order.status.in_(OPEN_STATUSES),
            Order.promised_date.is_not(None),
            Order.id != order_id,
        )
    ).all()
    impact: list[dict[str, Any]] = []
    for other, promised in rows:
        end_after, end_before = after.get(other), before.get(other)
        if end_after is None or promised is None:
            continue
        promise_end = end_of_day(promised)
        moved_h = (end_after - end_before).total_seconds() / 3600 if end_before else None
        if end_after <= promise_end or (moved_h is not None and moved_h < SLIP_EPSILON_H):
            continue
        impact.append(
            {
                "order_id": other,
                "promised_date": promised.isoformat(),
                "planned_end_before": iso(end_before),
                "planned_end_after": iso(end_after),
                "slip_h": round((end_after - promise_end).total_seconds() / 3600, 2),
                "delay_h": round(moved_h, 2) if moved_h is not None else None,
            }
        )
    impact.sort(key=lambda i: (-i["slip_h"], i["order_id"]))
    return impact


def _park(
    session: Session,
    *,
    event: OrderUpserted | OrderCancelled,
    source: str,
    webhook_id: str,
    raw: str,
    actor: str,
    impact: list[dict[str, Any]],
    inbox_id: int | None = None,
) -> GateResult:
    """Record the event as received but waiting, and park it (once per order version)."""
    order_id, version = event.order.id, event.order.version
    if inbox_id is not None:
        received = session.get(InboxEvent, inbox_id)
        assert received is not None, f"no inbox event {inbox_id}"
        received.outcome = "pending"
    else:
        inbox = InboxEvent(
            source=source,
            webhook_id=webhook_id,
            event_type=event.type,
            order_id=order_id,
            order_version=version,
            outcome="pending",
            raw=raw,
            event=event.model_dump(mode="json"),
        )
        try:
            with session.begin_nested():
                session.add(inbox)
        except IntegrityError:  # the same webhook-id raced in on another connection
            return GateResult("duplicate", order_id, version, {})
    change = session.scalar(
        select(PendingChange).where(
            PendingChange.order_id == order_id,
            PendingChange.order_version == version,
            PendingChange.status == "pending",
        )
    )
    if change is None:  # a second delivery of a parked version keeps the first change
        supersede_older(session, order_id=order_id, version=version, actor=actor)
        change = _new_change(
            session,
            event=event,
            source=source,
            webhook_id=webhook_id,
            impact=impact,
            status="pending",
        )
        _audit(session, change, "change.pending", actor=actor)
        notify_crm(session, change)
        log.info(
            "change %s (%s v%s) waits for approval: %d orders would slip",
            change.id,
            order_id,
            version,
            len(impact),
        )
    return GateResult("pending_approval", order_id, version, {}, change.id, "pending")


def _new_change(
    session: Session,
    *,
    event: OrderUpserted | OrderCancelled,
    source: str,
    webhook_id: str,
    impact: list[dict[str, Any]],
    status: ChangeStatus,
) -> PendingChange:
    change = PendingChange(
        order_id=event.order.id,
        order_version=event.order.version,
        source=source,
        webhook_id=webhook_id,
        event=event.model_dump(mode="json"),
        impact=impact,
        status=status,
        created_at=utcnow(),
    )
    session.add(change)
    session.flush()
    return change


def supersede_older(session: Session, *, order_id: str, version: int, actor: str) -> int:
    """Older pending versions of an order are moot once a newer one applies or waits."""
    older = list(
        session.scalars(
            select(PendingChange).where(
                PendingChange.order_id == order_id,
                PendingChange.status == "pending",
                PendingChange.order_version < version,
            )
        )
    )
    for change in older:
        _decide(change, "superseded", actor=actor, note=f"superseded by version {version}")
        _audit(session, change, "change.superseded", actor=actor)
    return len(older)


# -- decisions ------------------------------------------------------------------------------


def get_change(session: Session, *, change_id: int) -> PendingChange | None:
    """One change, or None."""
    return session.get(PendingChange, change_id)


def list_changes(
    session: Session, *, status: ChangeStatus | None = None, limit: int = 200
) -> list[PendingChange]:
    """Changes, pending first, newest first."""
    query = select(PendingChange)
    if status is not None:
        query = query.where(PendingChange.status == status)
    pending_first = case((PendingChange.status == "pending", 0), else_=1)
    query = query.order_by(
        pending_first, PendingChange.created_at.desc(), PendingChange.id.desc()
    ).limit(limit)
    return list(session.scalars(query))


def approve(
    session: Session, *, change_id: int, actor: str, note: str | None = None
) -> Decision | None:
    """Apply a parked change now (None: no such change; raises AlreadyDecided).

    If a newer version of the order was applied meanwhile the change is ``superseded``
    instead; the caller commits either way and asks for a replan after an approval.
    """
    change = session.get(PendingChange, change_id)
    if change is None:
        return None
    # Why the order first: the worker's intake locks the order, then its pending changes;
    # taking them in the same order here cannot deadlock with it.
    stored = session.get(
        Order, change.order_id, with_for_update={"of": Order}, populate_existing=True
    )
    session.refresh(change, with_for_update=True)
    if change.status != "pending":
        raise AlreadyDecided(change)
    if stored is not None and stored.version >= change.order_version:
        why = f"version {stored.version} of {change.order_id} was applied meanwhile"
        _decide(change, "superseded", actor=actor, note=why)
        _audit(session, change, "change.superseded", actor=actor)
        return Decision(change, "superseded")
    result = apply_crm_event(
        session,
        event=parse_crm_event(change.event),
        source=APPROVAL_SOURCE,
        webhook_id=f"change-{change.id}",
        raw=json.dumps(change.event, separators=(",", ":"), ensure_ascii=False),
        actor=actor,
    )
    if result.outcome != "applied":  # the row lock makes this a should-not-happen
        _decide(change, "superseded", actor=actor, note=f"not applied: {result.outcome}")
        _audit(session, change, "change.superseded", actor=actor)
        return Decision(change, "superseded")
    _decide(change, "approved", actor=actor, note=note)
    release_promises(session, change, actor=actor)
    supersede_older(session, order_id=change.order_id, version=change.order_version, actor=actor)
    _audit(session, change, "change.approved", actor=actor, changes=result.changes)
    notify_crm(session, change)
    return Decision(change, "approved", result.changes)


def reject(
    session: Session, *, change_id: int, actor: str, note: str | None = None
) -> Decision | None:
    """Turn a parked change down; the order stays as it was (None: no such change)."""
    change = session.get(PendingChange, change_id, with_for_update=True)
    if change is None:
        return None
    if change.status != "pending":
        raise AlreadyDecided(change)
    _decide(change, "rejected", actor=actor, note=note)
    _audit(session, change, "change.rejected", actor=actor)
    notify_crm(session, change)
    return Decision(change, "rejected")


def release_promises(session: Session, change: PendingChange, *, actor: str) -> list[str]:
    """The promises an approved change breaks are released: the next replan gives those
    orders new dates (and the CRM hears them) instead of holding the change back."""
    released = []
    for entry in change.impact:
        order = session.get(Order, entry["order_id"])
        if order is None or order.promise_version is None:
            continue
        order.promise_version = None
        released.append(order.id)
        record(
            session,
            actor=actor[:100],
            action="order.promise_released",
            entity="order",
            entity_id=order.id,
            details={
                "change_id": change.id,
                "for_order": change.order_id,
                "promised_date": entry["promised_date"],
                "slip_h": entry["slip_h"],
            },
        )
    return released


def _decide(change: PendingChange, status: ChangeStatus, *, actor: str, note: str | None) -> None:
    change.status = status
    change.decided_at = utcnow()
    change.decided_by = actor[:100]
    change.note = note


def _audit(
    session: Session, change: PendingChange, action: str, *, actor: str, **extra: Any
) -> None:
    record(
        session,
        actor=actor[:100],
        action=action,
        entity="order",
        entity_id=change.order_id,
        details={
            "change_id": change.id,
            "version": change.order_version,
            "webhook_id": change.webhook_id,
            "impact": change.impact,
            "note": change.note,
            **extra,
        },
    )


def change_payload(change: PendingChange) -> dict[str, Any]:
    """What the CRM is told about a change."""
    return {
        "change_id": change.id,
        "order_id": change.order_id,
        "version": change.order_version,
        "status": change.status,
        "impact": change.impact,
        "decided_by": change.decided_by,
        "note": change.note,
    }


def notify_crm(session: Session, change: PendingChange) -> None:
    """Queue ``change.<status>`` for the CRM in the caller's transaction."""
    enqueue(
        session,
        event_type=f"change.{change.status}",
        order_id=change.order_id,
        payload=change_payload(change),
    )


def announce_change(live: LiveState, change_id: int, order_id: str, status: str) -> None:
    """Tell open screens and stream clients (entity ``change``) after the commit."""
    live.announce(Change("change", str(change_id), {}, {"order_id": order_id, "status": status}))


def change_view(change: PendingChange) -> dict[str, Any]:
    """A change as the API shows it."""
    return {
        "id": change.id,
        "order_id": change.order_id,
        "version": change.order_version,
        "status": change.status,
        "impact": change.impact,
        "event": change.event,
        "source": change.source,
        "webhook_id": change.webhook_id,
        "created_at": iso(change.created_at),
        "decided_at": iso(change.decided_at),
        "decided_by": change.decided_by,
        "note": change.note,
    }
