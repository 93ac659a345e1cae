"""Alerts: open once per condition (``key``), acknowledge, resolve; mirrored to live state."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopline.models.audit import record
from loopline.models.clock import utcnow
from loopline.models.records import Alert

ACTIVE = ("open", "acked")
# An alert only moves forward: open -> acked -> resolved (a condition that fires again
# opens a new alert).
_STEP = {"open": 0, "acked": 1, "resolved": 2}


def not_behind(alerts: list[Alert], shown: list[dict[str, Any] | None]) -> list[Alert]:
    """Those of ``alerts`` (read from SQL) not behind what the live state ``shown`` for
    each (same order) already says.

    Why: a sweep reads the alerts, then writes them to live state; an acknowledgement
    committed and mirrored in between would be overwritten by the older "open" until the
    next sweep, and the alert panel would flip back under the person who acked it.
    """
    return [
        a
        for a, live in zip(alerts, shown, strict=True)
        if live is None or _STEP.get(a.status, 0) >= _STEP.get(str(live.get("status")), 0)
    ]


def open_alert(
    session: Session,
    *,
    key: str,
    kind: str,
    entity: str,
    entity_id: str,
    severity: str,
    message: str,
    role: str = "production",
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> Alert:
    """Open an alert for a condition, or return the one already active for the same key."""
    existing = active_alert(session, key=key)
    if existing is not None:
        if existing.message != message:
            existing.message = message
        if details is not None and existing.details != details:
            existing.details = details
        return existing
    alert = Alert(
        key=key,
        kind=kind,
        entity=entity,
        entity_id=entity_id,
        severity=severity,
        message=message,
        role=role,
        details=details or {},
        opened_at=at or utcnow(),
    )
    session.add(alert)
    session.flush()
    return alert


def active_alert(session: Session, *, key: str) -> Alert | None:
    """The open or acknowledged alert for a condition, if any."""
    return session.scalar(select(Alert).where(Alert.key == key, Alert.status.in_(ACTIVE)))


def resolve_alert(session: Session, *, key: str, now: datetime | None = None) -> Alert | None:
    """Close the active alert for a condition that no longer holds."""
    alert = active_alert(session, key=key)
    if alert is not None:
        alert.status = "resolved"
        alert.resolved_at = now or utcnow()
    return alert


def ack_alert(session: Session, *, alert_id: int, actor: str) -> Alert | None:
    """Acknowledge an alert: someone is on it. None when there is no such alert."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        return None
    if alert.status == "open":
        alert.status = "acked"
        alert.acked_at = utcnow()
        alert.acked_by = actor
        record(
            session,
            actor=actor,
            action="alert.acked",
            entity="alert",
            entity_id=str(alert.id),
            details={"key": alert.key},
        )
    return alert


def list_alerts(
    session: Session, *, include_resolved: bool = False, limit: int = 200
) -> list[Alert]:
    """Active alerts (or all, newest first)."""
    q = select(Alert).order_by(Alert.id.desc()).limit(limit)
    if not include_resolved:
        q = q.where(Alert.status.in_(ACTIVE))
    return list(session.scalars(q))


def alert_view(alert: Alert) -> dict[str, Any]:
    """An alert as the API and the live state show it."""
    return {
        "id": str(alert.id),
        "key": alert.key,
        "kind": alert.kind,
        "severity": alert.severity,
        "message": alert.message,
        "entity": alert.entity,
        "entity_id": alert.entity_id,
        "role": alert.role,
        "status": alert.status,
        "opened_at": alert.opened_at,
        "acked_at": alert.acked_at,
        "acked_by": alert.acked_by,
        "resolved_at": alert.resolved_at,
        "details": alert.details,
    }


@dataclass(frozen=True)
class Condition:
    """A condition that should have an alert open while it holds."""

    key: str
    kind: str
    entity: str
    entity_id: str
    severity: str
    message: str
    role: str = "production"
    # The message's parts, so a screen can word it in its own language.
    details: dict[str, Any] = field(default_factory=dict)
