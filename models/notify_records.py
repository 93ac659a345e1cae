"""Tables of notifications and alert escalation (migration 0009_notifications)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopline.models.clock import utcnow
from loopline.models.records import Base


class Notification(Base):
    """One message owed to one recipient on one channel: an inbox entry, an e-mail to one
    address, or an item of a chat robot's or webhook's message.

    Written in the same transaction as the sweep that saw the event (the outbox pattern):
    the relay delivers ``pending`` rows when due, with backoff, several per message where a
    channel is rate-limited, and marks them ``sent`` or, after its attempts, ``dead``.
    Inbox rows are ``sent`` at once; ``read_at`` marks them read.
    """

    __tablename__ = "notification"
    __table_args__ = (
        # One row per event occurrence, channel and address: a sweep that runs twice
        # over the same event adds nothing.
        UniqueConstraint("event_key", "channel", "address", name="uq_notification_event"),
        Index("ix_notification_due", "status", "next_attempt_at"),
        Index("ix_notification_dedupe", "dedupe_key", "channel", "address", "created_at"),
        Index("ix_notification_inbox", "channel", "address", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    event: Mapped[str] = mapped_column(String(40))  # line_down, promise_broken, escalation...
    # The occurrence (``alert:17:rule:down15``), and the condition (``line_down:L1``) that
    # the dedupe window applies to.
    event_key: Mapped[str] = mapped_column(String(200))
    dedupe_key: Mapped[str] = mapped_column(String(200))
    rule: Mapped[str] = mapped_column(String(100))  # rule name or "escalation:<level>"
    severity: Mapped[str] = mapped_column(String(20), default="info")
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alert.id"), nullable=True)
    channel: Mapped[str] = mapped_column(String(64))  # "inbox" or a channel's name
    channel_type: Mapped[str] = mapped_column(String(20))  # inbox|email|webhook|dingtalk|...
    recipient: Mapped[str] = mapped_column(String(200))  # as the rule wrote it
    # Inbox: the person's id (or "role:x" when nobody holds the role); e-mail: the address;
    # robots and webhooks: "" (one message to the group).
    address: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|sent|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set when quiet hours held it back (the moment it was made to wait until).
    held_until: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The message it left in (several rows share one where a robot batches).
    message_id: Mapped[str | None] = mapped_column(String(80), nullable=True, index=True)
    claimed_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(nullable=True)
    read_at: Mapped[datetime | None] = mapped_column(nullable=True)


class NotifyCursor(Base):
    """How far a sweep has read a log (the audit log), so a restart rereads nothing old."""

    __tablename__ = "notify_cursor"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class AlertEscalation(Base):
    """Where an alert stands in its escalation chain, its snooze, and how it was closed."""

    __tablename__ = "alert_escalation"
    alert_id: Mapped[int] = mapped_column(ForeignKey("alert.id"), primary_key=True)
    policy: Mapped[str] = mapped_column(String(100), default="")
    level: Mapped[int] = mapped_column(Integer, default=0)
    # When it goes to the next level if nobody acknowledges (None: no next level).
    next_at: Mapped[datetime | None] = mapped_column(nullable=True, index=True)
    snoozed_until: Mapped[datetime | None] = mapped_column(nullable=True)
    snoozed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    stopped_at: Mapped[datetime | None] = mapped_column(nullable=True)
    stop_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    resolve_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
