"""The system of record: SQLAlchemy 2 tables for the factory, its orders and the loop's log."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from loopline.models.clock import utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Base of every Loopline table."""

    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Site(Base):
    __tablename__ = "site"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Product(Base):
    __tablename__ = "product"
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Line(Base):
    __tablename__ = "line"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("site.id"))
    name: Mapped[str] = mapped_column(String(200))
    # The working calendar (the planner's ``calendars`` entry form); None: around the clock.
    calendar: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    # Changeover hours, ``{from_sku: {to_sku: hours}}``; None: no changeover time.
    changeovers: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    rates: Mapped[list[LineRate]] = relationship(
        back_populates="line", cascade="all, delete-orphan", lazy="selectin"
    )


class LineRate(Base):
    """How many units per hour a line makes of one product; no row means it cannot."""

    __tablename__ = "line_rate"
    line_id: Mapped[str] = mapped_column(ForeignKey("line.id"), primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("product.sku"), primary_key=True)
    units_per_hour: Mapped[float] = mapped_column(Float)
    line: Mapped[Line] = relationship(back_populates="rates")


class Material(Base):
    """A material products are made of: stock on hand and the supplier's lead time."""

    __tablename__ = "material"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    unit: Mapped[str] = mapped_column(String(20), default="")
    on_hand: Mapped[float] = mapped_column(Float, default=0.0)
    lead_time_days: Mapped[float] = mapped_column(Float, default=0.0)


class BomLine(Base):
    """How much of one material one unit of a product takes."""

    __tablename__ = "bom_line"
    sku: Mapped[str] = mapped_column(ForeignKey("product.sku"), primary_key=True)
    material_id: Mapped[str] = mapped_column(ForeignKey("material.id"), primary_key=True)
    qty_per_unit: Mapped[float] = mapped_column(Float)


class PurchaseOrder(Base):
    """Material ordered from a supplier, arriving at ``arrives_at``."""

    __tablename__ = "purchase_order"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    material_id: Mapped[str] = mapped_column(ForeignKey("material.id"), index=True)
    qty: Mapped[float] = mapped_column(Float)
    arrives_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | received


class PurchaseRequest(Base):
    """Material the plan is short of, for purchasing to buy; a new plan supersedes it."""

    __tablename__ = "purchase_request"
    __table_args__ = (Index("ix_purchase_request_status", "status", "material_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    material_id: Mapped[str] = mapped_column(ForeignKey("material.id"))
    qty: Mapped[float] = mapped_column(Float)
    needed_by: Mapped[datetime]
    arrives_if_ordered_now: Mapped[datetime]
    jobs: Mapped[list[Any]] = mapped_column(default=list)  # work order ids waiting for it
    plan_revision_id: Mapped[int | None] = mapped_column(
        ForeignKey("plan_revision.id"), nullable=True
    )
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | superseded
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Customer(Base):
    __tablename__ = "customer"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    importance: Mapped[int] = mapped_column(Integer, default=1)


class Order(Base):
    """A customer order as the CRM last told us (``version``), plus what we promised."""

    __tablename__ = "sales_order"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customer.id"))
    # 64-bit: a connector may use the CRM's change time in epoch ms as the version.
    version: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20), default="open")
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    requested_date: Mapped[date] = mapped_column(Date)
    promised_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    # The order version the promise was made for: a newer version gets a new promise.
    promise_version: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sales_rep: Mapped[str | None] = mapped_column(String(100), nullable=True)
    source: Mapped[str] = mapped_column(String(40), default="crm")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # What the CRM was last told, so only real changes are sent back.
    reported: Mapped[dict[str, Any]] = mapped_column(default=dict)
    customer: Mapped[Customer] = relationship(lazy="joined")
    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order",
        cascade="all, delete-orphan",
        order_by="OrderLine.line_no",
        lazy="selectin",
    )
    work_orders: Mapped[list[WorkOrder]] = relationship(
        back_populates="order", order_by="WorkOrder.id", lazy="selectin"
    )


class OrderLine(Base):
    __tablename__ = "order_line"
    order_id: Mapped[str] = mapped_column(ForeignKey("sales_order.id"), primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("product.sku"))
    qty: Mapped[int] = mapped_column(Integer)
    order: Mapped[Order] = relationship(back_populates="lines")


class WorkOrder(Base):
    """One order line's production on one line: ``WO-<order number>-<line no>``."""

    __tablename__ = "work_order"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("sales_order.id"), index=True)
    line_no: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str] = mapped_column(ForeignKey("product.sku"))
    qty: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="planned")
    line_id: Mapped[str | None] = mapped_column(ForeignKey("line.id"), nullable=True)
    planned_start: Mapped[datetime | None] = mapped_column(nullable=True)
    planned_end: Mapped[datetime | None] = mapped_column(nullable=True)
    # Checkpoints of the live counters, so Redis can be rebuilt from SQL.
    good: Mapped[int] = mapped_column(BigInteger, default=0)
    scrap: Mapped[int] = mapped_column(BigInteger, default=0)
    order: Mapped[Order] = relationship(back_populates="work_orders")


class PlanRevision(Base):
    __tablename__ = "plan_revision"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    plan_start: Mapped[datetime]
    trigger: Mapped[str] = mapped_column(String(200))
    solver: Mapped[str] = mapped_column(String(40))
    jobs: Mapped[int] = mapped_column(Integer)
    total_weighted_tardiness_h: Mapped[float] = mapped_column(Float)
    solve_ms: Mapped[float] = mapped_column(Float)
    assignments: Mapped[list[Any]] = mapped_column(default=list)
    diff: Mapped[dict[str, Any]] = mapped_column(default=dict)


class InboxEvent(Base):
    """Every event received from a CRM, raw, with what became of it."""

    __tablename__ = "inbox_event"
    __table_args__ = (
        UniqueConstraint("source", "webhook_id"),
        Index("ix_inbox_event_outcome", "outcome", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(40))
    webhook_id: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    event_type: Mapped[str] = mapped_column(String(40))
    order_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    order_version: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # received (waits for the worker) | applied | stale | pending (parked for approval)
    # | rejected (unknown product at apply time) | failed (gave up after retries)
    outcome: Mapped[str] = mapped_column(String(20))
    raw: Mapped[str] = mapped_column(Text)
    # The canonical event (after the source's mapping), what the worker applies.
    event: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class OrderTombstone(Base):
    """An order cancelled before it was ever created: lower versions arriving later are
    stale, so the order is not created as open (the Order row plays this part once it
    exists)."""

    __tablename__ = "order_tombstone"
    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    cancelled_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxEvent(Base):
    """An event owed to the CRM; written in the same transaction as the change it reports."""

    __tablename__ = "outbox_event"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(String(80), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    event_type: Mapped[str] = mapped_column(String(40))
    order_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|delivered|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The relay delivering it now (host:pid:relay; once delivered, the one that did) and
    # until when; renewed while it works, so a dead relay's claim lapses within seconds.
    claimed_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(nullable=True)


class Alert(Base):
    """Something a person should look at; ``key`` names the condition so it opens once."""

    __tablename__ = "alert"
    __table_args__ = (Index("ix_alert_key_status", "key", "status"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(80))
    severity: Mapped[str] = mapped_column(String(20), default="warning")
    message: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(40), default="production")
    status: Mapped[str] = mapped_column(String(20), default="open")  # open|acked|resolved
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    acked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    acked_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class AuditEntry(Base):
    """Who changed what, when, and what it did to the plan."""

    __tablename__ = "audit_entry"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(60))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(80), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class PendingChange(Base):
    """A CRM order change that would break another order's promise, parked for approval."""

    __tablename__ = "pending_change"
    __table_args__ = (Index("ix_pending_change_status", "status", "created_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(64), index=True)
    order_version: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(40))
    webhook_id: Mapped[str] = mapped_column(String(200))
    # The canonical event as stored, enough to apply it again on approval.
    event: Mapped[dict[str, Any]]
    # [{order_id, promised_date, planned_end_before, planned_end_after, slip_h}]
    impact: Mapped[list[Any]] = mapped_column(default=list)
    # pending | approved | rejected | auto_approved | superseded
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class DeadLetter(Base):
    """Input that could not be accepted, kept with the reason so nothing vanishes silently."""

    __tablename__ = "dead_letter"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(40))  # mqtt | crm
    topic: Mapped[str] = mapped_column(String(300))
    reason: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    payload: Mapped[str] = mapped_column(Text)


class WebSession(Base):
    """One browser sign-in: who it stands for, the token it was traded for, its lifetime.

    ``id`` is the SHA-256 of the random secret the browser holds (signed, in its cookie), so
    the table never holds a usable session. ``token_fingerprint`` is a keyed hash of the token
    used to sign in: when that role's configured token changes, the session no longer matches.
    """

    __tablename__ = "web_session"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(40))
    token_fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The moment it ends if not used again: min(sign-in + max age, last use + idle limit).
    expires_at: Mapped[datetime] = mapped_column(index=True)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The person signed in (``models.users.User.id``); None: a role token's sign-in.
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
