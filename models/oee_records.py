"""Tables of downtime and OEE: the reason tree, each stop of a line, and OEE per shift."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopline.models.clock import utcnow
from loopline.models.records import Base


class OeeConfig(Base):
    """The plant's reason tree, small-stop limit and default shifts (one row, id 1).

    No row means the built-in tree (``loopline.models.downtime.DEFAULT_TREE``).
    """

    __tablename__ = "oee_config"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    config: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LineStop(Base):
    """One stretch of time a line did not run (down, idle or changeover), and why.

    ``sensor_code`` is the reason code the line sent (kept as sent, even when the tree does
    not know it); ``reason_code`` is the tree's code that counts: the sensor's when known,
    else the one an operator assigned (``assigned_by``).
    """

    __tablename__ = "line_stop"
    __table_args__ = (
        UniqueConstraint("line_id", "started_at"),
        Index("ix_line_stop_open", "line_id", "ended_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    line_id: Mapped[str] = mapped_column(ForeignKey("line.id"))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    state: Mapped[str] = mapped_column(String(20))  # down | idle | changeover
    sensor_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    sensor_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    assigned_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    assigned_at: Mapped[datetime | None] = mapped_column(nullable=True)


class OeeLineStart(Base):
    """When Loopline first heard from a line: planned time before it is not counted (no
    one knows what the line did then, and it must not pass for run time)."""

    __tablename__ = "oee_line_start"
    line_id: Mapped[str] = mapped_column(ForeignKey("line.id"), primary_key=True)
    first_report_at: Mapped[datetime]


class ShiftOee(Base):
    """A line's OEE over one shift, as last computed (``final`` once the shift is over)."""

    __tablename__ = "shift_oee"
    line_id: Mapped[str] = mapped_column(ForeignKey("line.id"), primary_key=True)
    shift_start: Mapped[datetime] = mapped_column(primary_key=True)
    shift_end: Mapped[datetime]
    shift_name: Mapped[str] = mapped_column(String(64), default="")
    planned_s: Mapped[float] = mapped_column(Float)
    run_s: Mapped[float] = mapped_column(Float)
    ideal_s: Mapped[float] = mapped_column(Float)
    good: Mapped[int] = mapped_column(BigInteger)
    scrap: Mapped[int] = mapped_column(BigInteger)
    availability: Mapped[float | None] = mapped_column(Float, nullable=True)
    performance: Mapped[float | None] = mapped_column(Float, nullable=True)
    quality: Mapped[float | None] = mapped_column(Float, nullable=True)
    oee: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Seconds (stops) or units (rejects) per big loss, plus "unexplained".
    losses: Mapped[dict[str, Any]] = mapped_column(default=dict)
    final: Mapped[bool] = mapped_column(default=False)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
