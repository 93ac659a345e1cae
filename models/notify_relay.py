"""Delivers pending notifications: batched per channel and address, within each robot's
rate limit, with backoff while a channel is down, dead (plus an alert) after its attempts.

The rows are the queue (``Notification``, the outbox pattern): a relay claims due rows
with a short lease, sends, and marks them, so a relay that dies loses nothing and a channel
that is down only delays. Rate limits are counted from the messages sent (SQL), so every
relay of the plant sees the same budget. A message that waits for the budget takes the
rows that became due meanwhile: a burst of 100 events reaches DingTalk as a few messages.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import socket
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from loopline.models.alerts import open_alert, resolve_alert
from loopline.models.channels import RATE_LIMITS, Item, Mention, SendError, fit, send
from loopline.models.clock import utcnow
from loopline.models.db import transaction
from loopline.models.notify_records import Notification
from loopline.models.notify_rules import INBOX, Channel, NotifyConfig

log = logging.getLogger("loopline.notify")

LEASE_S = 60.0
# Enough for a robot's fullest minute (20 messages of MAX_BATCH_LIMITED).
CLAIM_LIMIT = 2000
LAST_ERROR_MAX_CHARS = 1000
# Items one message carries at most when the rate limit forces fuller messages.
MAX_BATCH_LIMITED = 100
# How long a channel that answered "too many requests" is left alone.
RATE_LIMITED_PAUSE_S = 30.0


@dataclass(frozen=True)
class _Row:
    id: int
    channel: str
    address: str
    attempts: int
    item: Item


class NotificationRelay:
    """Sends due notifications on their channels (``deliver_due``)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: NotifyConfig,
        *,
        now: Callable[[], datetime] = utcnow,
        client: httpx.Client | None = None,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 600.0,
        rng: random.Random | None = None,
    ) -> None:
        self._sessions = sessions
        self.config = config
        self._now = now
        self._own_client = client is None
        self._client = client or httpx.Client()
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._rng = rng or random.Random()
        self.relay_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[-120:]

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def backoff_s(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failure: exponential, half jittered, capped."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** max(attempts - 1, 0))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def deliver_due(self) -> int:
        """Send what is due, as few messages as the channels need; how many rows were sent."""
        rows = self._claim()
        groups: dict[tuple[str, str], list[_Row]] = defaultdict(list)
        for row in rows:
            groups[(row.channel, row.address)].append(row)
        sent = 0
        for (name, address), group in groups.items():
            try:
                sent += self._deliver_group(name, address, group)
            except Exception:  # one channel's trouble must not hold up the others
                log.exception("notifications on %s: delivery bookkeeping failed", name)
                self._release([r.id for r in group], None)
        return sent

    def _claim(self) -> list[_Row]:
        now = self._now()
        # A channel another relay is sending on is left to it: one sender per channel at a
        # time keeps the rate limit counted from sent rows true for the whole plant.
        busy = (
            select(Notification.channel)
            .where(
                Notification.status == "pending",
                Notification.claimed_by != self.relay_id,
                Notification.claimed_until > now,
            )
            .distinct()
        )
        query = (
            select(Notification)
            .where(
                Notification.status == "pending",
                Notification.channel != INBOX,
                Notification.next_attempt_at <= now,
                or_(Notification.claimed_until.is_(None), Notification.claimed_until <= now),
                Notification.channel.not_in(busy),
            )
            .order_by(Notification.id)
            .limit(CLAIM_LIMIT)
            .with_for_update(skip_locked=True)
        )
        with transaction(self._sessions) as session:
            rows = list(session.scalars(query))
            for r in rows:
                r.claimed_by, r.claimed_until = self.relay_id, now + timedelta(seconds=LEASE_S)
            return [_Row(r.id, r.channel, r.address, r.attempts, _item(r)) for r in rows]

    def _deliver_group(self, name: str, address: str, group: list[_Row]) -> int:
        channel = self.config.channel(name)
        if channel is None:
            self._fail(group, f"no channel {name!r} in the rules file any more", dead=True)
            return 0
        sent = 0
        budget, _ = self._budget(channel, name)
        rest = list(group)
        while rest and budget > 0:
            # More due than the budget carries at max_batch: fuller messages now rather
            # than the rest waiting for the rate limit's window (up to the text limit).
            cap = max(channel.max_batch, math.ceil(len(rest) / budget))
            n = fit(channel, [r.item for r in rest], cap=min(cap, MAX_BATCH_LIMITED))
            batch, rest = rest[:n], rest[n:]
            message_id = (
                "ntf_"
                + hashlib.sha256(",".join(str(r.id) for r in batch).encode()).hexdigest()[:24]
            )
            try:
                send(
                    channel,
                    [r.item for r in batch],
                    message_id=message_id,
                    address=address,
                    client=self._client,
                    now=utcnow(),  # signatures carry wall-clock time
                )
            except SendError as exc:
                if exc.rate_limited:
                    later = self._now() + timedelta(seconds=RATE_LIMITED_PAUSE_S)
                    self._release([r.id for r in batch + rest], later)
                    log.warning("%s: rate limited by the channel; waiting", name)
                    return sent
                self._fail(batch, str(exc), dead=exc.permanent)
                self._release([r.id for r in rest], None)
                return sent
            self._sent(batch, message_id)
            sent += len(batch)
            budget -= 1
        if rest:  # over the budget: they go together in the next message
            _, free_at = self._budget(channel, name)
            self._release([r.id for r in rest], free_at)
        return sent

    def _budget(self, channel: Channel, name: str) -> tuple[int, datetime | None]:
        """Messages the channel may take now, and when the next one is free if none."""
        limits = RATE_LIMITS.get(channel.type)
        if not limits:
            return 1_000_000, None
        now = self._now()
        budget, free_at = 1_000_000, None
        with self._sessions() as session:
            for count, per_s in limits:
                since = now - timedelta(seconds=per_s)
                sends: list[datetime] = list(
                    session.scalars(
                        select(func.min(Notification.sent_at))
                        .where(
                            Notification.channel == name,
                            Notification.status == "sent",
                            Notification.sent_at > since,
                        )
                        .group_by(Notification.message_id)
                    )
                )
                left = count - len(sends)
                if left <= 0:
                    oldest = min(sends)
                    moment = oldest + timedelta(seconds=per_s)
                    free_at = moment if free_at is None else max(free_at, moment)
                budget = min(budget, left)
        return max(budget, 0), free_at

    def _sent(self, batch: Sequence[_Row], message_id: str) -> None:
        now = self._now()
        with transaction(self._sessions) as session:
            session.execute(
                update(Notification)
                .where(Notification.id.in_([r.id for r in batch]))
                .values(
                    status="sent",
                    sent_at=now,
                    message_id=message_id,
                    last_error=None,
                    claimed_until=None,
                )
            )
            resolve_alert(session, key=_down_key(batch[0].channel), now=now)

    def _release(self, ids: list[int], next_at: datetime | None) -> None:
        if not ids:
            return
        values: dict[str, Any] = {"claimed_by": None, "claimed_until": None}
        if next_at is not None:
            values["next_attempt_at"] = next_at
        with transaction(self._sessions) as session:
            session.execute(
                update(Notification)
                .where(Notification.id.in_(ids), Notification.claimed_by == self.relay_id)
                .values(**values)
            )

    def _fail(self, batch: Sequence[_Row], error: str, *, dead: bool) -> None:
        now = self._now()
        name = batch[0].channel
        channel = self.config.channel(name)
        max_attempts = channel.max_attempts if channel else 1
        died = 0
        with transaction(self._sessions) as session:
            for r in batch:
                stored = session.get(Notification, r.id)
                if stored is None or stored.claimed_by != self.relay_id:
                    continue
                stored.attempts += 1
                stored.last_error = error[:LAST_ERROR_MAX_CHARS]
                stored.claimed_by = stored.claimed_until = None
                if dead or stored.attempts >= max_attempts:
                    stored.status = "dead"
                    died += 1
                else:
                    stored.next_attempt_at = now + timedelta(
                        seconds=self.backoff_s(stored.attempts)
                    )
            log.warning("notifications on %s failed (%s)", name, error)
            if died:
                session.flush()
                dead_count = session.scalar(
                    select(func.count(Notification.id)).where(
                        Notification.channel == name, Notification.status == "dead"
                    )
                )
                open_alert(
                    session,
                    key=_down_key(name),
                    kind="notify_channel_down",
                    entity="channel",
                    entity_id=name[:80],
                    severity="warning",
                    role="it",
                    message=f"Notification channel {name} did not take {dead_count} "
                    f"notification(s): {error[:200]}",
                    details={"channel": name, "dead": dead_count, "error": error[:200]},
                )


def _down_key(channel: str) -> str:
    return f"notify_channel_down:{channel}"


def _item(row: Notification) -> Item:
    mentions = tuple(
        Mention(id=str(m.get("id")), name=str(m.get("name")), mobile=m.get("mobile"))
        for m in (row.details or {}).get("mentions", [])
    )
    return Item(
        id=row.id,
        title=row.title,
        body=row.body,
        severity=row.severity,
        event=row.event,
        created_at=row.created_at,
        details={k: v for k, v in (row.details or {}).items() if k != "mentions"},
        mentions=mentions,
    )


def requeue_dead(session: Session, *, channel: str | None = None, now: datetime) -> int:
    """Give dead notifications (of one channel) fresh attempts, once it works again."""
    q = update(Notification).where(Notification.status == "dead")
    if channel:
        q = q.where(Notification.channel == channel)
    result = session.execute(q.values(status="pending", attempts=0, next_attempt_at=now))
    return int(getattr(result, "rowcount", 0) or 0)
