"""CRM intake: a webhook only records its event; the worker applies what was received.

``record_received`` is the request side: one short transaction that inserts the verified,
validated event into the inbox as ``received`` (or ``stale``, or finds it a duplicate).
``apply_received`` is the worker side, run under the loop's duty lock so appliers never
race: per order, the newest received version goes through the approval gate (applied,
auto-approved or parked); older received versions of that order are recorded as stale. Each
order is applied in a transaction of its own, so an inbox row stays ``received`` until what
it changed is committed: a worker that dies mid-apply loses nothing, the next one applies it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models.approvals import Gate, GateResult, apply_gated
from models.db import transaction
from models.events import OrderCancelled, OrderUpserted, parse_crm_event
from models.orders import UnknownProduct, check_products, high_water, record_stale
from models.records import DeadLetter, InboxEvent, Order

log = logging.getLogger("loopline.intake")

Receipt = Literal["accepted", "stale", "duplicate"]
RECEIVED = "received"
# Orders applied in one round before the worker replans (each may cost a preview solve).
INTAKE_BATCH_ORDERS = 50
# A received event that keeps failing to apply is given up (dead-lettered) after this.
MAX_APPLY_ATTEMPTS = 5


@dataclass(frozen=True)
class Recorded:
    """What the request side did with an event; ``outcome`` is the webhook's answer."""

    outcome: Receipt
    order_id: str
    version: int


def record_received(
    sessions: sessionmaker[Session],
    *,
    event: OrderUpserted | OrderCancelled,
    source: str,
    webhook_id: str,
    raw: str,
    actor: str,
) -> Recorded:
    """Insert a verified event into the inbox for the worker, in a short transaction.

    Raises UnknownProduct for a SKU the factory does not know (a 422 at the edge). A
    version at or below the order's stored one is recorded as ``stale`` and changes
    nothing; the same ``webhook_id`` again is a ``duplicate`` (the unique key decides, so
    concurrent deliveries cannot both get in). Nothing here locks the order.
    """
    order_id, version = event.order.id, event.order.version
    try:
        with transaction(sessions) as session:
            if isinstance(event, OrderUpserted):
                check_products(session, event)
            high = high_water(session, order_id, session.get(Order, order_id))
            stale = high is not None and version <= high
            session.add(
                InboxEvent(
                    source=source,
                    webhook_id=webhook_id,
                    event_type=event.type,
                    order_id=order_id,
                    order_version=version,
                    outcome="stale" if stale else RECEIVED,
                    raw=raw,
                    event=event.model_dump(mode="json"),
                )
            )
            session.flush()
            if stale:
                assert high is not None
                record_stale(
                    session,
                    order_id=order_id,
                    version=version,
                    high=high,
                    webhook_id=webhook_id,
                    actor=actor,
                )
    except IntegrityError:  # the unique (source, webhook_id): a redelivery
        return Recorded("duplicate", order_id, version)
    return Recorded("stale" if stale else "accepted", order_id, version)


def has_received(session: Session) -> bool:
    """Whether any received event waits for the worker."""
    return bool(session.scalar(select(exists().where(InboxEvent.outcome == RECEIVED))))


@dataclass
class Intake:
    """What one round of ``apply_received`` did."""

    applied: list[GateResult] = field(default_factory=list)
    parked: list[GateResult] = field(default_factory=list)
    stale: int = 0
    failed: int = 0
    more: bool = False  # orders were left for the next round

    @property
    def changes(self) -> list[GateResult]:
        """The results that parked or auto-approved a change (screens hear of those)."""
        return [r for r in self.applied + self.parked if r.change_id is not None]

    def triggers(self) -> list[str]:
        """How the replan names what the intake applied."""
        return [f"crm {r.order_id} v{r.version}" for r in self.applied]


def apply_received(
    sessions: sessionmaker[Session],
    *,
    gate: Gate | None,
    actor: str = "crm",
    max_orders: int = INTAKE_BATCH_ORDERS,
    on_change: Callable[[GateResult], None] | None = None,
) -> Intake:
    """Apply received CRM events, oldest order first, each order's newest version.

    Call it where no other applier runs at the same time (the loop's duty lock). An order
    whose apply fails is left ``received`` for the next round (the others go on); after
    ``MAX_APPLY_ATTEMPTS`` it is given up as ``failed`` with a dead letter. ``on_change``
    hears each parked or auto-approved change after its commit.
    """
    with sessions() as session:
        rows = session.execute(
            select(InboxEvent.id, InboxEvent.order_id, InboxEvent.order_version)
            .where(InboxEvent.outcome == RECEIVED)
            .order_by(InboxEvent.id)
        ).all()
    by_order: dict[str, list[tuple[int, int]]] = {}
    for row_id, order_id, version in rows:
        by_order.setdefault(order_id or "", []).append((version or 0, row_id))
    intake = Intake(more=len(by_order) > max_orders)
    for order_id, received in list(by_order.items())[:max_orders]:
        # The newest version wins; among equal versions the first to arrive.
        received.sort(key=lambda vr: (-vr[0], vr[1]))
        (version, winner), older = received[0], [row_id for _, row_id in received[1:]]
        try:
            with transaction(sessions) as session:
                intake.stale += _mark_superseded(session, older, order_id, version, actor)
                result = _apply_one(session, winner, gate, actor)
        except UnknownProduct as exc:
            _give_up(sessions, winner, "rejected", "unknown_product", str(exc))
            intake.failed += 1
            continue
        except Exception as exc:  # one bad order must not stop the others
            log.exception("could not apply CRM event %s (%s v%s)", winner, order_id, version)
            if _count_attempt(sessions, winner) >= MAX_APPLY_ATTEMPTS:
                _give_up(sessions, winner, "failed", "apply_failed", repr(exc)[:2000])
            intake.failed += 1
            continue
        if result is None:
            continue
        if result.outcome == "applied":
            intake.applied.append(result)
        elif result.outcome == "pending_approval":
            intake.parked.append(result)
        else:
            intake.stale += 1
        if on_change is not None and result.change_id is not None:
            on_change(result)
    return intake


def _apply_one(session: Session, inbox_id: int, gate: Gate | None, actor: str) -> GateResult | None:
    """Apply one received event (None: another applier got to it first)."""
    # Why the row lock: should two appliers ever overlap (a duty lock that expired), the
    # second waits here and then finds the event no longer received.
    inbox = session.get(InboxEvent, inbox_id, with_for_update=True, populate_existing=True)
    if inbox is None or inbox.outcome != RECEIVED:
        return None
    # Rows recorded before the canonical event was kept carry only their raw body.
    event = parse_crm_event(inbox.event if inbox.event is not None else json.loads(inbox.raw))
    return apply_gated(
        session,
        gate=gate,
        event=event,
        source=inbox.source,
        webhook_id=inbox.webhook_id,
        raw=inbox.raw,
        actor=actor,
        inbox_id=inbox_id,
    )


def _mark_superseded(
    session: Session, row_ids: list[int], order_id: str, newest: int, actor: str
) -> int:
    """Older received versions of an order are stale once a newer one is received."""
    if not row_ids:
        return 0
    older = session.execute(
        select(InboxEvent.webhook_id, InboxEvent.order_version).where(InboxEvent.id.in_(row_ids))
    ).all()
    session.execute(update(InboxEvent).where(InboxEvent.id.in_(row_ids)).values(outcome="stale"))
    for webhook_id, version in older:
        record_stale(
            session,
            order_id=order_id,
            version=version or 0,
            high=newest,
            webhook_id=webhook_id,
            actor=actor,
        )
    return len(row_ids)


def _count_attempt(sessions: sessionmaker[Session], inbox_id: int) -> int:
    with transaction(sessions) as session:
        session.execute(
            update(InboxEvent)
            .where(InboxEvent.id == inbox_id)
            .values(attempts=InboxEvent.attempts + 1)
        )
        attempts = session.scalar(select(InboxEvent.attempts).where(InboxEvent.id == inbox_id))
        return int(attempts or 0)


def _give_up(
    sessions: sessionmaker[Session], inbox_id: int, outcome: str, reason: str, detail: str
) -> None:
    """Stop retrying a received event: mark it and keep it as a dead letter."""
    with transaction(sessions) as session:
        inbox = session.get(InboxEvent, inbox_id)
        if inbox is None:
            return
        inbox.outcome = outcome
        session.add(
            DeadLetter(
                source=inbox.source,
                topic="inbox",
                reason=reason,
                detail=json.dumps(
                    {"webhook_id": inbox.webhook_id, "inbox_id": inbox_id, "error": detail},
                    ensure_ascii=False,
                ),
                payload=inbox.raw,
            )
        )
    log.error("CRM event %s given up (%s): %s", inbox_id, reason, detail)
