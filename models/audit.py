"""The audit log: who changed what, when, and what it did."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopline.models.records import AuditEntry


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


def history(
    session: Session, *, entity: str, entity_ids: Sequence[str], limit: int = 100
) -> dict[str, list[AuditEntry]]:
    """The newest ``limit`` entries of each entity, oldest first, in one query."""
    out: dict[str, list[AuditEntry]] = {}
    if not entity_ids:
        return out
    rows = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.entity == entity, AuditEntry.entity_id.in_(list(entity_ids)))
        .order_by(AuditEntry.id.desc())
    )
    for entry in rows:
        kept = out.setdefault(entry.entity_id, [])
        if len(kept) < limit:
            kept.append(entry)
    return {k: v[::-1] for k, v in out.items()}
