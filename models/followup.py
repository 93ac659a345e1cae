"""After delivery: the delivery record, and the follow-up tasks of the order's sales rep.

An order is delivered once (``mark_delivered``, from the CRM's status or
``POST /api/v1/orders/{id}/deliver``); that opens a delivery-confirmation task for its
sales rep at once, and ``open_due_followups`` (the worker's sweep) opens a satisfaction
follow-up (score 0-100 plus a note) some days later. Every task opened or completed is
owed to the CRM: an outbox event is written in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from loopline.models.audit import record
from loopline.models.clock import utcnow
from loopline.models.estimate import iso
from loopline.models.outbox import enqueue
from loopline.models.records import Base, Order

TaskKind = Literal["delivery_confirmation", "satisfaction"]
TaskStatus = Literal["open", "done"]
CONFIRMATION: TaskKind = "delivery_confirmation"
SATISFACTION: TaskKind = "satisfaction"
DELIVERED = "delivered"
TASK_OPENED_EVENT = "followup.opened"
TASK_DONE_EVENT = "followup.completed"
SCORE_MIN, SCORE_MAX = 0, 100
NOTE_MAX_CHARS = 2000


class OrderDelivery(Base):
    """When an order reached its customer, and who said so."""

    __tablename__ = "order_delivery"
    __table_args__ = (Index("ix_order_delivery_at", "delivered_at"),)
    order_id: Mapped[str] = mapped_column(ForeignKey("sales_order.id"), primary_key=True)
    delivered_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(40))  # crm | api | demo
    actor: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class FollowupTask(Base):
    """Something a sales rep owes an order after delivery: confirm it, ask how it went."""

    __tablename__ = "followup_task"
    __table_args__ = (
        UniqueConstraint("order_id", "kind"),
        Index("ix_followup_task_assignee", "assignee", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("sales_order.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))  # TaskKind
    assignee: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="open")  # TaskStatus
    created_at: Mapped[datetime]
    due_at: Mapped[datetime]
    done_at: Mapped[datetime | None] = mapped_column(nullable=True)
    done_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    score: Mapped[int | None] = mapped_column(Integer, nullable=True)  # satisfaction, 0-100
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class NotDeliverable(ValueError):
    """The order cannot be delivered (it is cancelled)."""


class TaskDone(ValueError):
    """The task was completed already."""


class BadTaskInput(ValueError):
    """A completion misses or breaks a field; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class TaskView(TypedDict):
    """A follow-up task as the API and the inbox show it."""

    id: int
    order_id: str
    customer: str | None
    kind: str
    assignee: str | None
    status: str
    created_at: str | None
    due_at: str | None
    done_at: str | None
    done_by: str | None
    score: int | None
    note: str | None
    delivered_at: str | None


@dataclass(frozen=True)
class Delivered:
    """What ``mark_delivered`` did; ``new`` is False for a repeated delivery."""

    delivery: OrderDelivery
    new: bool


def mark_delivered(
    session: Session, *, order: Order, delivered_at: datetime, source: str, actor: str
) -> Delivered:
    """Record an order's delivery and open its confirmation task, in the caller's
    transaction; a second delivery of the same order changes nothing."""
    existing = session.get(OrderDelivery, order.id)
    if existing is not None:
        return Delivered(existing, new=False)
    if order.status == "cancelled":
        raise NotDeliverable(f"order '{order.id}' is cancelled")
    delivery = OrderDelivery(
        order_id=order.id, delivered_at=delivered_at, source=source, actor=actor
    )
    session.add(delivery)
    old = order.status
    order.status = DELIVERED
    record(
        session,
        actor=actor,
        action="order.delivered",
        entity="order",
        entity_id=order.id,
        details={"old": old, "new": DELIVERED, "delivered_at": iso(delivered_at), "source": source},
    )
    _open_task(session, order, CONFIRMATION, now=delivered_at)
    session.flush()
    return Delivered(delivery, new=True)


def _open_task(session: Session, order: Order, kind: TaskKind, *, now: datetime) -> FollowupTask:
    task = FollowupTask(
        order_id=order.id,
        kind=kind,
        assignee=order.sales_rep,
        status="open",
        created_at=now,
        due_at=now,
    )
    session.add(task)
    session.flush()
    enqueue(
        session,
        event_type=TASK_OPENED_EVENT,
        order_id=order.id,
        payload=_crm_payload(task),
    )
    return task


def open_due_followups(session: Session, *, now: datetime, after: timedelta) -> int:
    """Open the satisfaction follow-up of every order delivered at least ``after`` ago
    that has none yet; how many were opened."""
    has_one = (
        select(FollowupTask.id)
        .where(FollowupTask.order_id == OrderDelivery.order_id, FollowupTask.kind == SATISFACTION)
        .exists()
    )
    due = list(
        session.execute(
            select(Order, OrderDelivery.delivered_at)
            .join(OrderDelivery, OrderDelivery.order_id == Order.id)
            .where(OrderDelivery.delivered_at <= now - after, ~has_one)
            .order_by(OrderDelivery.delivered_at)
        ).all()
    )
    for order, delivered_at in due:
        _open_task(session, order, SATISFACTION, now=max(now, delivered_at + after))
    return len(due)


def complete_task(
    session: Session,
    *,
    task_id: int,
    actor: str,
    now: datetime,
    score: int | None = None,
    note: str | None = None,
) -> FollowupTask | None:
    """Complete a task (a satisfaction follow-up needs its ``score``); None when there is
    no such task. Raises TaskDone when it was done already, BadTaskInput for bad input."""
    task = session.get(FollowupTask, task_id, with_for_update=True)
    if task is None:
        return None
    if task.status == "done":
        raise TaskDone(f"task {task_id} was completed by {task.done_by} already")
    if task.kind == SATISFACTION and score is None:
        raise BadTaskInput("score", "a satisfaction follow-up needs a score from 0 to 100")
    if score is not None and not SCORE_MIN <= score <= SCORE_MAX:
        raise BadTaskInput("score", f"must be from {SCORE_MIN} to {SCORE_MAX}")
    if note is not None and len(note) > NOTE_MAX_CHARS:
        raise BadTaskInput("note", f"at most {NOTE_MAX_CHARS} characters")
    task.status, task.done_at, task.done_by = "done", now, actor
    task.score, task.note = score, (note or None)
    record(
        session,
        actor=actor,
        action=f"followup.{task.kind}.done",
        entity="order",
        entity_id=task.order_id,
        details={"task": task.id, "score": score, "note": task.note},
    )
    session.flush()
    enqueue(session, event_type=TASK_DONE_EVENT, order_id=task.order_id, payload=_crm_payload(task))
    return task


def _crm_payload(task: FollowupTask) -> dict[str, Any]:
    """What the CRM is told about a task."""
    return {
        "task_id": task.id,
        "order_id": task.order_id,
        "kind": task.kind,
        "assignee": task.assignee,
        "status": task.status,
        "due_at": iso(task.due_at),
        "done_at": iso(task.done_at),
        "done_by": task.done_by,
        "score": task.score,
        "note": task.note,
    }


def list_tasks(
    session: Session,
    *,
    assignee: str | None = None,
    status: TaskStatus | None = "open",
    order_id: str | None = None,
    limit: int = 200,
) -> list[TaskView]:
    """Tasks, the oldest due first (open ones) or the latest done first."""
    q = (
        select(FollowupTask, Order, OrderDelivery.delivered_at)
        .join(Order, Order.id == FollowupTask.order_id)
        .outerjoin(OrderDelivery, OrderDelivery.order_id == FollowupTask.order_id)
        .limit(limit)
    )
    if assignee:
        q = q.where(FollowupTask.assignee == assignee)
    if status:
        q = q.where(FollowupTask.status == status)
    if order_id:
        q = q.where(FollowupTask.order_id == order_id)
    if status == "done":
        q = q.order_by(FollowupTask.done_at.desc(), FollowupTask.id.desc())
    else:
        q = q.order_by(FollowupTask.due_at, FollowupTask.id)
    return [task_view(task, order, at) for task, order, at in session.execute(q).all()]


def task_view(task: FollowupTask, order: Order | None, delivered_at: datetime | None) -> TaskView:
    """One task, with its order's customer and delivery time."""
    return {
        "id": task.id,
        "order_id": task.order_id,
        "customer": order.customer.name if order is not None else None,
        "kind": task.kind,
        "assignee": task.assignee,
        "status": task.status,
        "created_at": iso(task.created_at),
        "due_at": iso(task.due_at),
        "done_at": iso(task.done_at),
        "done_by": task.done_by,
        "score": task.score,
        "note": task.note,
        "delivered_at": iso(delivered_at),
    }


def get_task(session: Session, *, task_id: int) -> TaskView | None:
    """One task's view, or None."""
    task = session.get(FollowupTask, task_id)
    if task is None:
        return None
    delivery = session.get(OrderDelivery, task.order_id)
    return task_view(
        task, session.get(Order, task.order_id), delivery.delivered_at if delivery else None
    )
