"""The outbox: events owed to the CRM, delivered at least once (DESIGN.md, "Loopline → CRM").

``enqueue`` adds an event in the same transaction as the change it reports; ``OutboxRelay``
POSTs due events, signed with Standard Webhooks, keeping the same ``webhook-id`` on every
retry so the CRM can drop duplicates. Events of one order are delivered in order.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import httpx
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker
from standardwebhooks import Webhook

from loopline.models.alerts import open_alert, resolve_alert
from loopline.models.clock import utcnow
from loopline.models.db import transaction
from loopline.models.records import OutboxEvent

log = logging.getLogger("loopline.outbox")

UNREACHABLE_KEY = "crm_unreachable"
# Rows claimed per round.
CLAIM_CHUNK = 20
# A claim is a short lease that a keeper thread renews while the relay delivers: a relay
# that dies holding rows delays them this long at most (ISSUE8: a crash costs <= 10 s).
LEASE_S = 6.0
LEASE_RENEW_S = 2.0
LAST_ERROR_MAX_CHARS = 1000
CLAIMED_BY_MAX_CHARS = 120


def enqueue(
    session: Session, *, event_type: str, order_id: str | None, payload: dict[str, Any]
) -> OutboxEvent:
    """Add one event owed to the CRM to the caller's transaction."""
    row = OutboxEvent(
        webhook_id=f"msg_{uuid.uuid4().hex}",
        event_type=event_type,
        order_id=order_id,
        payload=payload,
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
    )
    session.add(row)
    return row


def requeue_dead(session: Session, *, now: datetime | None = None) -> int:
    """Give every dead event a fresh set of attempts (after the CRM is back); how many."""
    result = session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.status == "dead")
        .values(status="pending", attempts=0, next_attempt_at=now or utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class _Claimed:
    """A plain copy of a claimed row, so no session is held during the HTTP call."""

    id: int
    webhook_id: str
    event_type: str
    order_id: str | None
    created_at: datetime
    payload: dict[str, Any]
    attempts: int


def envelope(event_type: str, created_at: datetime, payload: dict[str, Any]) -> str:
    """The JSON body sent to the CRM: ``{"type", "occurred_at", "data"}``."""
    occurred = created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {"type": event_type, "occurred_at": occurred, "data": payload},
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )


class OutboxRelay:
    """Delivers due outbox events to the CRM with backoff; dead + an alert when it stays down."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        url: str,
        secret: str,
        max_attempts: int,
        backoff_base_s: float,
        backoff_max_s: float,
        timeout_s: float,
        now: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        client: httpx.Client | None = None,
        lease_s: float = LEASE_S,
        renew_s: float = LEASE_RENEW_S,
    ) -> None:
        self._sessions = sessions
        # Who holds a claim, readable in SQL: host, process and this relay.
        self.relay_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[
            -CLAIMED_BY_MAX_CHARS:
        ]
        self.lease_s = lease_s
        self.renew_s = renew_s
        self.url = url
        self.host = httpx.URL(url).host or url
        self._webhook = Webhook(secret)
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self._now = now
        self._rng = rng or random.Random()
        self._own_client = client is None
        self._client = client or httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        """Close the HTTP client (if this relay opened it)."""
        if self._own_client:
            self._client.close()

    def __enter__(self) -> OutboxRelay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def deliver_due(self, limit: int = 100) -> int:
        """Try the due pending events (at most ``limit``), oldest first; how many got delivered."""
        delivered = tried = 0
        with self._renewing():
            while tried < limit:
                # A claim holds at most one event per order (its oldest pending), so a later
                # event of an order is only sent once the earlier one is delivered or dead.
                claimed = self._claim(min(CLAIM_CHUNK, limit - tried))
                if not claimed:
                    break
                sent: list[_Claimed] = []
                self._prepare(claimed)
                for row in claimed:
                    tried += 1
                    try:
                        error = self._post(row)
                        if error is None:
                            sent.append(row)
                        else:
                            self._failed(row, error)
                    except Exception:  # one bad row must not stop the batch
                        log.exception("outbox %s: delivery bookkeeping failed", row.webhook_id)
                self._prepare([])  # what was read for this chunk is not kept past it
                try:
                    delivered += self._delivered(sent)
                except Exception:  # the claims lapse: sent again (same webhook-id) later
                    log.exception("outbox: bookkeeping of %d deliveries failed", len(sent))
        return delivered

    def _prepare(self, claimed: list[_Claimed]) -> None:
        """Before a claimed chunk is posted row by row: read what its rows need together
        (a subclass's hook; the plain relay needs nothing)."""

    @contextmanager
    def _renewing(self) -> Iterator[None]:
        """Renew this relay's claims in a keeper thread while the body delivers them."""
        stop = threading.Event()

        def keep() -> None:
            while not stop.wait(self.renew_s):
                try:
                    self._renew()
                except Exception:  # the lease still runs a while: try again
                    log.warning("outbox claims not renewed", exc_info=True)

        keeper = threading.Thread(target=keep, name="loopline-outbox-lease", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            stop.set()
            keeper.join()

    def _renew(self) -> int:
        """Push back the end of every lease this relay still holds; how many."""
        now = self._now()
        with transaction(self._sessions) as session:
            result = session.execute(
                update(OutboxEvent)
                .where(
                    OutboxEvent.claimed_by == self.relay_id,
                    OutboxEvent.status == "pending",
                    OutboxEvent.claimed_until.is_not(None),
                )
                .values(claimed_until=now + timedelta(seconds=self.lease_s))
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def backoff_s(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failure: exponential, half of it jittered, capped."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** max(attempts - 1, 0))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _claim(self, n: int) -> list[_Claimed]:
        """Lease the due events that head their order's queue (PostgreSQL: SKIP LOCKED)."""
        now = self._now()
        older = aliased(OutboxEvent)
        earlier_pending = (
            select(older.id)
            .where(
                older.order_id == OutboxEvent.order_id,
                older.status == "pending",
                older.id < OutboxEvent.id,
            )
            .exists()
        )
        query = (
            select(OutboxEvent)
            .where(
                OutboxEvent.status == "pending",
                OutboxEvent.next_attempt_at <= now,
                or_(OutboxEvent.claimed_until.is_(None), OutboxEvent.claimed_until <= now),
                ~earlier_pending,
            )
            .order_by(OutboxEvent.id)
            .limit(n)
            .with_for_update(skip_locked=True, of=OutboxEvent)
        )
        # Why a lease: the row stays "pending" but is claimed while this relay calls the
        # CRM, so no other relay sends it, nor a later event of the same order, meanwhile.
        # Short and renewed (``_renewing``): a dead relay's claim lapses within seconds.
        with transaction(self._sessions) as session:
            rows = list(session.scalars(query))
            for row in rows:
                row.claimed_by = self.relay_id
                row.claimed_until = now + timedelta(seconds=self.lease_s)
            return [
                _Claimed(
                    id=r.id,
                    webhook_id=r.webhook_id,
                    event_type=r.event_type,
                    order_id=r.order_id,
                    created_at=r.created_at,
                    payload=dict(r.payload),
                    attempts=r.attempts,
                )
                for r in rows
            ]

    def _post(self, row: _Claimed) -> str | None:
        """POST one event; None on a 2xx, else what went wrong."""
        body = envelope(row.event_type, row.created_at, row.payload)
        # The signature timestamp is wall-clock time: the receiver checks it against its own.
        stamp = utcnow()
        headers = {
            "content-type": "application/json",
            "user-agent": "loopline-outbox/1",
            "webhook-id": row.webhook_id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": self._webhook.sign(row.webhook_id, stamp, body),
        }
        try:
            response = self._client.post(
                self.url, content=body.encode(), headers=headers, timeout=self.timeout_s
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}: {response.text[:200]}"

    def _delivered(self, rows: list[_Claimed]) -> int:
        """Mark sent events delivered, all in one transaction; how many were still there.

        Why together: one transaction per event (a pool checkout, a read, the alert, the
        commit) was most of the relay's SQL while a replan's promises went out. Should this
        fail, the events stay claimed until the lease lapses and are sent again (at least
        once, the same ``webhook-id``)."""
        if not rows:
            return 0
        now = self._now()
        with transaction(self._sessions) as session:
            result = session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_([r.id for r in rows]))
                # claimed_by stays: which relay delivered it.
                .values(
                    status="delivered",
                    delivered_at=now,
                    last_error=None,
                    claimed_by=self.relay_id,
                    claimed_until=None,
                )
                .execution_options(synchronize_session=False)
            )
            resolve_alert(session, key=UNREACHABLE_KEY, now=now)
            return int(getattr(result, "rowcount", 0) or 0)

    def _failed(self, row: _Claimed, error: str) -> None:
        """Count a failed attempt: retry after a backoff, or dead (and alert) after the last."""
        now = self._now()
        with transaction(self._sessions) as session:
            stored = session.get(OutboxEvent, row.id)
            if stored is None:
                return
            if stored.status != "pending" or stored.claimed_by != self.relay_id:
                # Our lease lapsed and another relay took the event over: its bookkeeping.
                log.warning("outbox %s: claim lost while sending (%s)", row.webhook_id, error)
                return
            stored.claimed_by = stored.claimed_until = None
            stored.attempts += 1
            stored.last_error = error[:LAST_ERROR_MAX_CHARS]
            if stored.attempts >= self.max_attempts:
                stored.status = "dead"
                log.error(
                    "outbox %s dead after %d attempts: %s", row.webhook_id, stored.attempts, error
                )
                session.flush()
                self._alert(session, error)
            else:
                delay = self.backoff_s(stored.attempts)
                stored.next_attempt_at = now + timedelta(seconds=delay)
                log.warning(
                    "outbox %s attempt %d failed (%s); retry in %.1f s",
                    row.webhook_id,
                    stored.attempts,
                    error,
                    delay,
                )
            return

    def _alert(self, session: Session, error: str) -> None:
        count = session.scalar(
            select(func.count(OutboxEvent.id)).where(OutboxEvent.status == "dead")
        )
        open_alert(
            session,
            key=UNREACHABLE_KEY,
            kind="crm_unreachable",
            entity="crm",
            entity_id=self.host[:80],
            severity="critical",
            role="it",
            message=(
                f"The CRM at {self.host} did not accept updates after {self.max_attempts} "
                f"attempts; {count} undelivered. Last error: {error[:200]}"
            ),
            details={"url": self.url, "dead_events": count},
        )
