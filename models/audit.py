"""The audit log: who changed what, when, and what it did."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.records import AuditEntry


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: str,
    details: dict[str, Any],
) -> AuditEntry:
    """Add one audit entry to the caller's transaction."""
    entry = AuditEntry(
        actor=actor, action=action, entity=entity, entity_id=entity_id, details=details
    )
    session.add(entry)
    return entry


def history(session: Session, *, entity: str, entity_id: str, limit: int = 100) -> list[AuditEntry]:
    """The newest audit entries of one entity, oldest first."""
    rows = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.entity == entity, AuditEntry.entity_id == entity_id)
        .order_by(AuditEntry.id.desc())
        .limit(limit)
    )
    return list(reversed(list(rows)))
