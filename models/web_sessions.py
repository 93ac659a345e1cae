"""Browser sessions: one record per sign-in, so each can expire, be listed and be revoked.

The browser holds a random secret; the record is keyed by its SHA-256, so the table never
holds a usable session. Times are wall-clock (``models.clock.utcnow``), never the demo's
simulated clock: a session lasts real hours whatever the simulation speed.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from loopline.models.records import WebSession

SECRET_BYTES = 32
USER_AGENT_CHARS = 200
# Why: a session is touched (last_seen_at, sliding expiry) at most this often, so a busy
# screen writes a row a minute, not one per request.
TOUCH_EVERY_S = 60.0
# Expired and revoked rows are deleted this long after they ended (kept for the listing).
KEEP_ENDED_S = 7 * 24 * 3600.0
KIOSK_ROLES = frozenset({"display"})


@dataclass(frozen=True)
class SessionPolicy:
    """How long sign-ins last (seconds).

    A person's session ends after ``idle_s`` without use and at the latest ``max_age_s``
    after sign-in; a kiosk's (role ``display``) has no idle limit, so a wall switched off
    over a holiday still shows its screen, and ends ``kiosk_max_age_s`` after sign-in.
    """

    idle_s: float
    max_age_s: float
    kiosk_max_age_s: float

    def max_age_for(self, role: str) -> float:
        """The longest a sign-in of ``role`` may last."""
        return self.kiosk_max_age_s if role in KIOSK_ROLES else self.max_age_s

    def expiry(self, *, role: str, created_at: datetime, now: datetime) -> datetime:
        """When a session of ``role`` used at ``now`` ends if it is not used again."""
        end = created_at + timedelta(seconds=self.max_age_for(role))
        if role in KIOSK_ROLES:
            return end
        return min(end, now + timedelta(seconds=self.idle_s))

    def touch_every_s(self, role: str) -> float:
        """How stale ``last_seen_at`` may get: a tenth of the idle limit, at most a minute."""
        return TOUCH_EVERY_S if role in KIOSK_ROLES else min(TOUCH_EVERY_S, self.idle_s / 10)


def session_id(secret: str) -> str:
    """The record id of the session a browser's secret names."""
    return hashlib.sha256(secret.encode()).hexdigest()


def start(
    session: Session,
    *,
    principal: str,
    role: str,
    token_fingerprint: str,
    policy: SessionPolicy,
    now: datetime,
    user_agent: str | None = None,
    user_id: int | None = None,
) -> tuple[str, WebSession]:
    """Record a new sign-in; return the secret for the browser and the record."""
    secret = secrets.token_urlsafe(SECRET_BYTES)
    record = WebSession(
        id=session_id(secret),
        principal=principal,
        role=role,
        token_fingerprint=token_fingerprint,
        created_at=now,
        last_seen_at=now,
        expires_at=policy.expiry(role=role, created_at=now, now=now),
        user_agent=(user_agent or "")[:USER_AGENT_CHARS] or None,
        user_id=user_id,
    )
    session.add(record)
    # Housekeeping on sign-in (rare): rows that ended long ago go.
    cutoff = now - timedelta(seconds=KEEP_ENDED_S)
    session.execute(delete(WebSession).where(WebSession.expires_at < cutoff))
    session.execute(delete(WebSession).where(WebSession.revoked_at < cutoff))
    return secret, record


def active(session: Session, *, sid: str, now: datetime) -> WebSession | None:
    """The session ``sid`` if it is neither revoked nor expired (one primary-key read)."""
    record = session.get(WebSession, sid)
    if record is None or record.revoked_at is not None or record.expires_at <= now:
        return None
    return record


def touch(session: Session, *, record: WebSession, policy: SessionPolicy, now: datetime) -> bool:
    """Note a use of ``record`` (slides a person's idle expiry); True when it wrote."""
    stale = (now - record.last_seen_at).total_seconds() >= policy.touch_every_s(record.role)
    if not stale:
        return False
    expires = policy.expiry(role=record.role, created_at=record.created_at, now=now)
    session.execute(
        update(WebSession)
        .where(WebSession.id == record.id, WebSession.revoked_at.is_(None))
        .values(last_seen_at=now, expires_at=expires)
    )
    record.last_seen_at, record.expires_at = now, expires
    return True


def listing(session: Session, *, now: datetime) -> list[WebSession]:
    """Sessions that are still valid, newest use first."""
    query = (
        select(WebSession)
        .where(WebSession.revoked_at.is_(None), WebSession.expires_at > now)
        .order_by(WebSession.last_seen_at.desc())
    )
    return list(session.scalars(query))


def revoke(session: Session, *, sid: str, now: datetime) -> bool:
    """End session ``sid``; False when no valid session has that id."""
    result = session.execute(
        update(WebSession)
        .where(WebSession.id == sid, WebSession.revoked_at.is_(None), WebSession.expires_at > now)
        .values(revoked_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def revoke_all(session: Session, *, now: datetime, role: str | None = None) -> int:
    """End every valid session (of ``role`` when given); return how many."""
    query = update(WebSession).where(WebSession.revoked_at.is_(None), WebSession.expires_at > now)
    if role is not None:
        query = query.where(WebSession.role == role)
    result = session.execute(query.values(revoked_at=now))
    return int(result.rowcount)  # type: ignore[attr-defined]
