"""Orders: applying CRM events to the system of record, and reading orders back."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from loopline.models.audit import record
from loopline.models.events import OrderCancelled, OrderUpserted
from loopline.models.followup import mark_delivered
from loopline.models.records import (
    Customer,
    InboxEvent,
    Order,
    OrderLine,
    OrderTombstone,
    Product,
    WorkOrder,
)

log = logging.getLogger("loopline.orders")

Outcome = Literal["applied", "stale", "duplicate"]
OPEN_STATUSES = ("open", "in_progress")


class UnknownProduct(ValueError):
    """An order line names a SKU the factory does not know."""

    def __init__(self, field: str, sku: str) -> None:
        super().__init__(f"{field}: unknown product '{sku}'")
        self.field = field
        self.sku = sku


@dataclass(frozen=True)
class ApplyResult:
    """What a CRM event did: ``applied`` means the plan must be redone."""

    outcome: Outcome
    order_id: str
    version: int
    changes: dict[str, Any]


def work_order_id(order_id: str, line_no: int) -> str:
    """``SO-1001`` line 1 -> ``WO-1001-1`` (DESIGN.md's naming)."""
    return f"WO-{order_id.removeprefix('SO-')}-{line_no}"


def apply_crm_event(
    session: Session,
    *,
    event: OrderUpserted | OrderCancelled,
    source: str,
    webhook_id: str,
    raw: str,
    actor: str,
    inbox_id: int | None = None,
) -> ApplyResult:
    """Record a verified CRM event in the inbox and apply it unless it is a duplicate or stale.

    Runs inside the caller's transaction; a duplicate ``webhook_id`` changes nothing. With
    ``inbox_id`` the event was recorded already (``models.intake``): only its outcome is
    set. The order's row is locked (PostgreSQL) so two appliers of one order wait in turn;
    a version at or below the stored one, or below a cancel of an order never created (its
    tombstone), is stale.
    """
    order_id, version = event.order.id, event.order.version
    if inbox_id is None:
        seen = session.scalar(
            select(InboxEvent.id).where(
                InboxEvent.source == source, InboxEvent.webhook_id == webhook_id
            )
        )
        if seen is not None:
            return ApplyResult("duplicate", order_id, version, {})
    stored = session.get(Order, order_id, with_for_update={"of": Order}, populate_existing=True)
    high = high_water(session, order_id, stored)
    stale = high is not None and version <= high
    if isinstance(event, OrderUpserted) and not stale:
        check_products(session, event)
    outcome = "stale" if stale else "applied"
    if inbox_id is None:
        inbox = InboxEvent(
            source=source,
            webhook_id=webhook_id,
            event_type=event.type,
            order_id=order_id,
            order_version=version,
            outcome=outcome,
            raw=raw,
            event=event.model_dump(mode="json"),
        )
        try:
            with session.begin_nested():
                session.add(inbox)
        except IntegrityError:  # the same webhook-id raced in on another connection
            return ApplyResult("duplicate", order_id, version, {})
    else:
        received = session.get(InboxEvent, inbox_id)
        assert received is not None, f"no inbox event {inbox_id}"
        received.outcome = outcome
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
        return ApplyResult("stale", order_id, version, {})
    if isinstance(event, OrderCancelled):
        changes = (
            _cancel(session, stored, version) if stored else _tombstone(session, order_id, version)
        )
        action = "order.cancelled"
    else:
        changes = _upsert(session, stored, event)
        action = "order.created" if stored is None else "order.changed"
        if event.order.status == "delivered":
            _deliver(session, event, source, actor, changes)
    record(
        session,
        actor=actor,
        action=action,
        entity="order",
        entity_id=order_id,
        details={"version": version, "webhook_id": webhook_id, "changes": changes},
    )
    return ApplyResult("applied", order_id, version, changes)


def _deliver(
    session: Session, event: OrderUpserted, source: str, actor: str, changes: dict[str, Any]
) -> None:
    """The CRM says the order reached its customer: record it (once)."""
    order = session.get(Order, event.order.id)
    assert order is not None, "upserted just now"
    old = order.status
    at = event.order.delivered_at or event.occurred_at
    done = mark_delivered(
        session,
        order=order,
        delivered_at=at if at.tzinfo else at.replace(tzinfo=UTC),
        source=source,
        actor=actor,
    )
    if done.new:
        changes["status"] = [old, order.status]


def high_water(session: Session, order_id: str, stored: Order | None) -> int | None:
    """The highest version of an order applied so far: the stored order's, or the
    tombstone's when it was cancelled before it was created (None: nothing yet)."""
    if stored is not None:
        return stored.version
    return session.scalar(select(OrderTombstone.version).where(OrderTombstone.order_id == order_id))


def record_stale(
    session: Session, *, order_id: str, version: int, high: int, webhook_id: str, actor: str
) -> None:
    """Audit a version that arrived after a newer one and changed nothing."""
    record(
        session,
        actor=actor,
        action="order.stale_ignored",
        entity="order",
        entity_id=order_id,
        details={"version": version, "stored_version": high, "webhook_id": webhook_id},
    )


def check_products(session: Session, event: OrderUpserted) -> None:
    """Raise UnknownProduct naming the first line whose SKU the factory does not know."""
    skus = {line.sku for line in event.order.lines}
    known = set(session.scalars(select(Product.sku).where(Product.sku.in_(skus))))
    for i, line in enumerate(event.order.lines):
        if line.sku not in known:
            raise UnknownProduct(f"order.lines[{i}].sku", line.sku)


def _tombstone(session: Session, order_id: str, version: int) -> dict[str, Any]:
    """A cancel of an order never created: remembered, so lower versions stay stale."""
    tomb = session.get(OrderTombstone, order_id, with_for_update=True)
    if tomb is None:
        session.add(OrderTombstone(order_id=order_id, version=version))
    else:
        tomb.version = max(tomb.version, version)
    return {"status": [None, "cancelled"]}


def _upsert(session: Session, stored: Order | None, event: OrderUpserted) -> dict[str, Any]:
    o = event.order
    customer = session.get(Customer, o.customer.id)
    if customer is None:
        customer = Customer(id=o.customer.id, name=o.customer.name)
        session.add(customer)
    elif customer.name != o.customer.name:
        customer.name = o.customer.name
    new_lines = [(i + 1, line.sku, line.qty) for i, line in enumerate(o.lines)]
    if stored is None:
        # A version newer than a cancel reopens the order: the tombstone has done its part.
        tomb = session.get(OrderTombstone, o.id)
        if tomb is not None:
            session.delete(tomb)
        order = Order(
            id=o.id,
            customer_id=customer.id,
            version=o.version,
            status="open",
            priority=o.priority,
            requested_date=o.requested_date,
            sales_rep=o.sales_rep,
            reported={},
        )
        session.add(order)
        order.lines = [OrderLine(line_no=n, sku=s, qty=q) for n, s, q in new_lines]
        session.flush()
        _sync_work_orders(session, order)
        return {"created": True, "lines": [[s, q] for _, s, q in new_lines]}
    changes: dict[str, Any] = {}
    for attr, value in (
        ("customer_id", customer.id),
        ("priority", o.priority),
        ("requested_date", o.requested_date),
        ("sales_rep", o.sales_rep),
    ):
        old = getattr(stored, attr)
        if old != value:
            changes[attr] = [_plain(old), _plain(value)]
            setattr(stored, attr, value)
    old_lines = [(ln.line_no, ln.sku, ln.qty) for ln in stored.lines]
    if old_lines != new_lines:
        changes["lines"] = [[[s, q] for _, s, q in old_lines], [[s, q] for _, s, q in new_lines]]
        by_no = {ln.line_no: ln for ln in stored.lines}
        for n, sku, qty in new_lines:
            if n in by_no:
                by_no[n].sku, by_no[n].qty = sku, qty
            else:
                stored.lines.append(OrderLine(line_no=n, sku=sku, qty=qty))
        for n in set(by_no) - {n for n, _, _ in new_lines}:
            stored.lines.remove(by_no[n])
    if stored.status == "cancelled":
        changes["status"] = ["cancelled", "open"]
        stored.status = "open"
    stored.version = o.version
    session.flush()
    _sync_work_orders(session, stored)
    return changes


def _cancel(session: Session, order: Order, version: int) -> dict[str, Any]:
    order.version = version
    if order.status == "cancelled":
        return {}
    old = order.status
    order.status = "cancelled"
    for wo in order.work_orders:
        if wo.status != "done":
            wo.status = "cancelled"
    return {"status": [old, "cancelled"]}


def _sync_work_orders(session: Session, order: Order) -> None:
    """One work order per order line; quantities follow the order, removed lines cancel."""
    existing = {wo.id: wo for wo in order.work_orders}
    wanted = set()
    for line in order.lines:
        wo_id = work_order_id(order.id, line.line_no)
        wanted.add(wo_id)
        wo = existing.get(wo_id)
        if wo is None:
            session.add(
                WorkOrder(
                    id=wo_id, order_id=order.id, line_no=line.line_no, sku=line.sku, qty=line.qty
                )
            )
        else:
            wo.sku, wo.qty = line.sku, line.qty
            if wo.status == "cancelled":
                wo.status = "planned"
            elif wo.status == "done" and wo.good < wo.qty:
                wo.status = "running"
    for wo_id, wo in existing.items():
        if wo_id not in wanted and wo.status != "done":
            wo.status = "cancelled"
    session.flush()
    session.expire(order, ["work_orders"])


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def open_orders(session: Session) -> list[Order]:
    """Orders still to be made, oldest first."""
    return list(
        session.scalars(select(Order).where(Order.status.in_(OPEN_STATUSES)).order_by(Order.id))
    )
