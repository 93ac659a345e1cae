"""Notifications: events (alerts, audit entries) -> rules -> rows owed to people on channels.

A sweep (``Notifier.sweep``, in the worker) looks at two sources:
- active alerts: line down, order at risk, CRM unreachable and any other alert kind, once
  the condition has lasted a rule's ``after_min`` (a snoozed alert tells nobody);
- the audit log, read past a cursor: promises moved later or released (promise broken), a
  rush order accepted, a change waiting for approval, material newly short.
For each matching rule it writes ``Notification`` rows in the sweep's transaction: one per
person in the inbox, one per address by e-mail, one per robot or webhook (the people are
mentioned). Quiet hours hold chat and mail (never the inbox) until they end; the same
condition is told once per ``dedupe_min``. The relay (``models.notify_relay``) delivers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypedDict

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from loopline.models.clock import iso, utcnow
from loopline.models.notify_records import AlertEscalation, Notification, NotifyCursor
from loopline.models.notify_rules import (
    INBOX,
    SEVERITIES,
    Address,
    Directory,
    NotifyConfig,
    QuietHours,
    Rule,
)
from loopline.models.notify_text import text
from loopline.models.records import Alert, AuditEntry, Order
from loopline.models.scope import Visible, visible
from loopline.models.users import OrderScope

log = logging.getLogger("loopline.notify")

# Alert kinds that have an event of their own; others are the generic "alert" event.
ALERT_EVENTS = {"line_down", "order_at_risk", "crm_unreachable"}
AUDIT_CURSOR = "audit"
# The live change announcing an inbox entry written or read (``{"address": ...}``).
NOTIFICATION_ENTITY = "notification"
# Audit entries newer than this are read again next sweep: a transaction that began
# earlier may still commit an entry with a lower id (the event key keeps it told once).
AUDIT_SETTLE_S = 120.0
AUDIT_BATCH = 500


@dataclass(frozen=True)
class Event:
    """Something that happened, as rules match it and messages word it."""

    kind: str  # an EventKind
    key: str  # this occurrence (told once)
    dedupe_key: str  # the condition (told once per dedupe window)
    severity: str
    title: str
    body: str
    details: dict[str, Any] = field(default_factory=dict)
    alert_id: int | None = None
    alert_kind: str | None = None
    line: str | None = None
    age_min: float = 0.0  # how long the condition has held
    # Set by escalation: (level, minutes unacknowledged); the wording adds it.
    escalated: tuple[int, int] | None = None


def matches(rule: Rule, event: Event) -> bool:
    """Whether a rule covers an event."""
    if rule.event != event.kind:
        return False
    if rule.event == "alert" and rule.kinds and event.alert_kind not in rule.kinds:
        return False
    if SEVERITIES.index(event.severity) < SEVERITIES.index(rule.min_severity):
        return False
    if rule.lines and event.line not in rule.lines:
        return False
    return event.age_min >= rule.after_min


def fan_out(
    session: Session,
    config: NotifyConfig,
    directory: Directory,
    event: Event,
    *,
    rule: str,
    to: Sequence[str],
    via: Sequence[str],
    quiet: QuietHours | None,
    dedupe_min: float,
    now: datetime,
    told: Told | None = None,
) -> list[Notification]:
    """Write the rows that tell ``to`` of ``event`` on each channel of ``via``.

    ``told``: what was told already, loaded by the caller for a whole sweep (a sweep sees
    every active alert each round: two queries instead of one per row); the caller then
    flushes. Without it, each row is checked in SQL.
    """
    people: dict[str, tuple[str, Address]] = {}
    empty_roles: list[str] = []
    for recipient in to:
        found = directory.resolve(recipient)
        if not found and recipient.startswith("role:"):
            empty_roles.append(recipient)
        for addr in found:
            people.setdefault(addr.id, (recipient, addr))
    # Each rule tells an occurrence once; two rules reaching one person within the dedupe
    # window tell it once between them (the dedupe key is the condition's).
    occurrence = f"{event.key}|{rule}"[:200]
    release = quiet.release_at(now, event.severity) if quiet else None
    details = {**event.details, "recipients": list(to)}
    rows: list[Notification] = []
    for name in via:
        if name == INBOX:
            targets = [(r, a.id, a.lang) for r, a in people.values()]
            targets += [(r, r, "en") for r in empty_roles]
            ctype = INBOX
        else:
            channel = config.channel(name)
            if channel is None:
                continue
            ctype = channel.type
            if ctype == "email":
                targets = [(r, a.email, a.lang) for r, a in people.values() if a.email]
            else:  # one message to the group, naming the people
                targets = [(",".join(to)[:200], "", channel.lang)]
                details = {
                    **details,
                    "mentions": [
                        {"id": a.id, "name": a.name, "mobile": a.mobile} for _, a in people.values()
                    ],
                }
        for recipient, address, lang in targets:
            if told is not None:
                if told.seen(occurrence, event, name, address, dedupe_min=dedupe_min, now=now):
                    continue
            elif _told(session, occurrence, event, name, address, dedupe_min=dedupe_min, now=now):
                continue
            title, body = text(event, lang)
            row = Notification(
                created_at=now,
                event=event.kind,
                event_key=occurrence,
                dedupe_key=event.dedupe_key[:200],
                rule=rule[:100],
                severity=event.severity,
                title=title[:300],
                body=body,
                details={**details, "lang": lang},
                alert_id=event.alert_id,
                channel=name,
                channel_type=ctype,
                recipient=recipient[:200],
                address=address[:200],
                status="sent" if name == INBOX else "pending",
                attempts=0,
                next_attempt_at=release if (release and name != INBOX) else now,
                held_until=release if name != INBOX else None,
                sent_at=now if name == INBOX else None,
            )
            session.add(row)
            rows.append(row)
            if told is not None:
                told.add(row)
    if rows and told is None:
        session.flush()
    return rows


class Told:
    """What a sweep's events were told already: their occurrences, and the newest row of
    each condition per channel and address (for the dedupe window)."""

    def __init__(self) -> None:
        self.occurrences: set[tuple[str, str, str]] = set()
        self.latest: dict[tuple[str, str, str], datetime] = {}

    @classmethod
    def load(
        cls, session: Session, events: Sequence[Event], rules: Sequence[Rule], *, now: datetime
    ) -> Told:
        told = cls()
        keys = list({f"{e.key}|{r.name}"[:200] for e in events for r in rules})
        conditions = list({e.dedupe_key[:200] for e in events})
        window = max((r.dedupe_min for r in rules), default=0.0)
        for i in range(0, len(keys), 500):
            told.occurrences.update(
                (k, c, a)
                for k, c, a in session.execute(
                    select(
                        Notification.event_key, Notification.channel, Notification.address
                    ).where(Notification.event_key.in_(keys[i : i + 500]))
                )
            )
        for i in range(0, len(conditions), 500) if window > 0 else ():
            for d, c, a, at in session.execute(
                select(
                    Notification.dedupe_key,
                    Notification.channel,
                    Notification.address,
                    func.max(Notification.created_at),
                )
                .where(
                    Notification.dedupe_key.in_(conditions[i : i + 500]),
                    Notification.created_at > now - timedelta(minutes=window),
                )
                .group_by(Notification.dedupe_key, Notification.channel, Notification.address)
            ):
                told.latest[(d, c, a)] = at
        return told

    def seen(
        self,
        occurrence: str,
        event: Event,
        channel: str,
        address: str,
        *,
        dedupe_min: float,
        now: datetime,
    ) -> bool:
        """Whether this occurrence was told, or its condition within the dedupe window."""
        if (occurrence, channel, address[:200]) in self.occurrences:
            return True
        latest = self.latest.get((event.dedupe_key[:200], channel, address[:200]))
        return (
            dedupe_min > 0 and latest is not None and latest > now - timedelta(minutes=dedupe_min)
        )

    def add(self, row: Notification) -> None:
        self.occurrences.add((row.event_key, row.channel, row.address))
        key = (row.dedupe_key, row.channel, row.address)
        if key not in self.latest or self.latest[key] < row.created_at:
            self.latest[key] = row.created_at


def _told(
    session: Session,
    occurrence: str,
    event: Event,
    channel: str,
    address: str,
    *,
    dedupe_min: float,
    now: datetime,
) -> bool:
    """Whether this occurrence was told, or its condition was within the dedupe window."""
    told = Notification.event_key == occurrence
    if dedupe_min > 0:
        told = or_(
            told,
            and_(
                Notification.dedupe_key == event.dedupe_key[:200],
                Notification.created_at > now - timedelta(minutes=dedupe_min),
            ),
        )
    where = (Notification.channel == channel, Notification.address == address, told)
    return bool(session.scalar(select(exists().where(*where))))


# -- sources --------------------------------------------------------------------------------


def alert_events(session: Session, *, now: datetime) -> Iterator[Event]:
    """An event per active alert that is not snoozed (its age: since it opened, or the
    line's minutes down)."""
    snoozed = select(AlertEscalation.alert_id).where(AlertEscalation.snoozed_until > now)
    alerts = session.scalars(
        select(Alert)
        .where(Alert.status.in_(("open", "acked")), Alert.id.not_in(snoozed))
        .order_by(Alert.id)
    )
    for alert in alerts:
        yield alert_event(alert, now=now)


def alert_event(alert: Alert, *, now: datetime, prefix: str = "") -> Event:
    """An alert as an event."""
    details = dict(alert.details or {})
    age = (now - alert.opened_at).total_seconds() / 60
    if alert.kind == "line_down" and isinstance(details.get("minutes"), int | float):
        age = max(age, float(details["minutes"]))
    kind = alert.kind if alert.kind in ALERT_EVENTS else "alert"
    return Event(
        kind=kind,
        key=f"{prefix}alert:{alert.id}",
        dedupe_key=f"{prefix}{alert.key}",
        severity=alert.severity if alert.severity in SEVERITIES else "warning",
        title=alert.message.split(":")[0][:120] if alert.kind == "line_down" else alert.message,
        body=alert.message,
        details={
            "alert": alert.id,
            "kind": alert.kind,
            "entity": alert.entity,
            "entity_id": alert.entity_id,
            **details,
        },
        alert_id=alert.id,
        alert_kind=alert.kind,
        line=alert.entity_id if alert.entity == "line" else None,
        age_min=age,
    )


def audit_event(session: Session, entry: AuditEntry) -> Event | None:
    """The event an audit entry stands for, if it is one rules can name."""
    d = entry.details or {}
    key = f"audit:{entry.id}"
    if entry.action == "order.promised":
        old, new = d.get("old"), d.get("new")
        if not old or not new or date.fromisoformat(new) <= date.fromisoformat(old):
            return None
        return Event(
            kind="promise_broken",
            key=key,
            dedupe_key=f"promise_broken:{entry.entity_id}:{new}",
            severity="warning",
            title=f"Order {entry.entity_id}: promise moved from {old} to {new}",
            body=f"The plan can no longer meet the date promised for order {entry.entity_id} "
            f"({old}); the new promise is {new}.",
            details={"order": entry.entity_id, "old": old, "new": new},
        )
    if entry.action == "order.promise_released":
        return Event(
            kind="promise_broken",
            key=key,
            dedupe_key=f"promise_broken:{entry.entity_id}:released",
            severity="warning",
            title=f"Order {entry.entity_id}: promise {d.get('promised_date')} released",
            body=f"An approved change of order {d.get('for_order')} breaks the promise of "
            f"order {entry.entity_id} ({d.get('promised_date')}, slip {d.get('slip_h')} h); "
            "it gets a new date with the next plan.",
            details={"order": entry.entity_id, **d},
        )
    if entry.action == "change.pending":
        impact = d.get("impact") or []
        return Event(
            kind="change_waiting",
            key=key,
            dedupe_key=f"change_waiting:{d.get('change_id')}",
            severity="warning",
            title=f"Change of order {entry.entity_id} waits for approval",
            body=f"Version {d.get('version')} of order {entry.entity_id} would break "
            f"{len(impact)} promise(s): " + ", ".join(str(i.get("order_id")) for i in impact[:10]),
            details={
                "order": entry.entity_id,
                "change_id": d.get("change_id"),
                "version": d.get("version"),
                "impact_orders": [i.get("order_id") for i in impact],
            },
        )
    if entry.action in (
        "order.created",
        "order.changed",
        "change.approved",
        "change.auto_approved",
    ):
        if not _rush_now(session, entry):
            return None
        return Event(
            kind="rush_accepted",
            key=key,
            dedupe_key=f"rush_accepted:{entry.entity_id}",
            severity="info",
            title=f"Rush order {entry.entity_id} accepted",
            body=f"Rush order {entry.entity_id} is in the plan ({entry.action}).",
            details={"order": entry.entity_id, "action": entry.action},
        )
    if entry.action == "purchase_request.raised":
        return Event(
            kind="material_short",
            key=key,
            dedupe_key=f"material_short:{entry.entity_id}",
            severity="warning",
            title=f"Material {entry.entity_id} short",
            body=f"The plan needs {d.get('qty')} more of {entry.entity_id} by "
            f"{d.get('needed_by')}; ordered now it arrives {d.get('arrives_if_ordered_now')}. "
            f"Waiting: {', '.join(d.get('jobs') or [])}",
            details={"material": entry.entity_id, **d},
        )
    return None


def _rush_now(session: Session, entry: AuditEntry) -> bool:
    """Whether the entry made a rush order part of the plan (created rush, became rush, or
    a rush change approved)."""
    d = entry.details or {}
    if entry.action.startswith("change."):
        event = d.get("event") or {}
        priority = (event.get("order") or {}).get("priority")
        if priority is None:
            order = session.get(Order, entry.entity_id)
            priority = order.priority if order else None
        return priority == "rush"
    changes = d.get("changes") or {}
    if entry.action == "order.changed":
        return (changes.get("priority") or [None, None])[1] == "rush"
    order = session.get(Order, entry.entity_id)
    return order is not None and order.priority == "rush"


def audit_events(session: Session, *, wall_now: datetime) -> Iterator[Event]:
    """Events of the audit log past the cursor; the cursor moves past settled entries."""
    cursor = session.get(NotifyCursor, AUDIT_CURSOR)
    if cursor is None:
        # A new installation starts at the log's end: no flood about the past.
        last = session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1))
        cursor = NotifyCursor(name=AUDIT_CURSOR, position=last or 0)
        session.add(cursor)
        session.flush()
    entries = list(
        session.scalars(
            select(AuditEntry)
            .where(AuditEntry.id > cursor.position)
            .order_by(AuditEntry.id)
            .limit(AUDIT_BATCH)
        )
    )
    settled = wall_now - timedelta(seconds=AUDIT_SETTLE_S)
    position, prefix_settled = cursor.position, True
    for entry in entries:
        # The cursor moves over the settled entries before the first unsettled one.
        prefix_settled = prefix_settled and entry.at <= settled
        if prefix_settled:
            position = entry.id
        event = audit_event(session, entry)
        if event is not None:
            yield event
    if len(entries) == AUDIT_BATCH:  # a long backlog: move on even if not settled
        position = max(position, entries[-1].id)
    if position != cursor.position:
        session.execute(
            update(NotifyCursor).where(NotifyCursor.name == AUDIT_CURSOR).values(position=position)
        )


def apply_rules(
    session: Session,
    config: NotifyConfig,
    directory: Directory,
    events: Iterable[Event],
    *,
    now: datetime,
) -> int:
    """Tell each event to every rule that matches it; how many rows were written."""
    written = 0
    events = list(events)
    told = Told.load(session, events, config.rules, now=now)
    for event in events:
        for rule in config.rules:
            if matches(rule, event):
                written += len(
                    fan_out(
                        session,
                        config,
                        directory,
                        event,
                        rule=rule.name,
                        to=rule.to,
                        via=rule.via,
                        quiet=rule.quiet_hours,
                        dedupe_min=rule.dedupe_min,
                        now=now,
                        told=told,
                    )
                )
    session.flush()
    return written


# -- the inbox ------------------------------------------------------------------------------
def inbox_addresses(
    name: str, roles: Sequence[str], *, person: str | None = None
) -> tuple[list[str], bool]:
    """The inbox addresses a caller reads (their name, and ``role:x`` for each role), and
    whether that is every inbox: an admin reads all, or one ``person``'s."""
    if "admin" in roles:
        return ([person], False) if person else ([], True)
    return [name, *(f"role:{role}" for role in roles)], False


def in_scope(row: Notification, vis: Visible | None) -> bool:
    """Whether a person limited to some customers may read this entry: an entry about
    another customer's order (an order at risk told to ``role:sales``) is not theirs."""
    details = row.details
    if vis is None or not isinstance(details, dict):
        return True
    # Its text may name other orders too: the order a change was for, the orders it
    # would break. An entry naming any order out of scope is left out whole.
    named = [details.get("for_order"), *(details.get("impact_orders") or [])]
    if any(o is not None and o not in vis.orders for o in named):
        return False
    return vis.row_ok(details)


def told_of_alert(session: Session, *, alert_id: int, addresses: Sequence[str]) -> bool:
    """Whether any of these inboxes was told of the alert (its recipients may ack it)."""
    where = (
        Notification.channel == INBOX,
        Notification.alert_id == alert_id,
        Notification.address.in_(list(addresses)),
    )
    return bool(session.scalar(select(exists().where(*where))))


def inbox(
    session: Session,
    *,
    addresses: Sequence[str],
    everyone: bool = False,
    unread_only: bool = False,
    limit: int = 100,
) -> list[Notification]:
    """Inbox entries for a person (their id, or ``role:x`` entries of their roles), newest
    first; ``everyone``: all inbox entries (an admin's view)."""
    q = select(Notification).where(Notification.channel == INBOX)
    if not everyone:
        q = q.where(Notification.address.in_(list(addresses)))
    if unread_only:
        q = q.where(Notification.read_at.is_(None))
    return list(session.scalars(q.order_by(Notification.id.desc()).limit(limit)))


def inbox_entry(
    session: Session, *, notification_id: int, addresses: Sequence[str], everyone: bool = False
) -> Notification | None:
    """One entry of these inboxes, or None (no such entry, or someone else's)."""
    row = session.get(Notification, notification_id)
    if row is None or row.channel != INBOX or not (everyone or row.address in addresses):
        return None
    return row


def mark_read(
    session: Session,
    *,
    addresses: Sequence[str],
    everyone: bool = False,
    ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> int:
    """Mark inbox entries read (``ids``, or all unread of these addresses); how many."""
    q = update(Notification).where(Notification.channel == INBOX, Notification.read_at.is_(None))
    if not everyone:
        q = q.where(Notification.address.in_(list(addresses)))
    if ids is not None:
        q = q.where(Notification.id.in_(list(ids)))
    result = session.execute(q.values(read_at=now or utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)


class InboxEntry(TypedDict):
    """One entry of a person's inbox as the /inbox screen shows it."""

    id: int
    event: str
    severity: str
    title: str
    body: str
    created_at: str | None
    read: bool
    recipient: str
    order: str | None
    alert_id: int | None
    alert_status: str | None  # open | acked | resolved (None: no alert behind it)
    level: int | None  # the alert's escalation level


def person_inbox(
    session: Session,
    *,
    name: str,
    roles: Sequence[str],
    scope: OrderScope | None,
    limit: int = 50,
) -> tuple[list[InboxEntry], bool]:
    """A person's newest inbox entries that their scope lets them read (as
    ``GET /api/v1/notifications`` reads them), with the state of the alert behind each;
    and whether that is every inbox (an admin). The /inbox screen reads this."""
    addresses, everyone = inbox_addresses(name, roles)
    rows = inbox(session, addresses=addresses, everyone=everyone, limit=limit)
    vis = visible(session, scope)
    rows = [r for r in rows if in_scope(r, vis)]
    alert_ids = sorted({r.alert_id for r in rows if r.alert_id is not None})
    status: dict[int, str] = {}
    level: dict[int, int] = {}
    if alert_ids:
        status = dict(
            session.execute(select(Alert.id, Alert.status).where(Alert.id.in_(alert_ids))).all()
        )
        level = dict(
            session.execute(
                select(AlertEscalation.alert_id, AlertEscalation.level).where(
                    AlertEscalation.alert_id.in_(alert_ids)
                )
            ).all()
        )
    notes: list[InboxEntry] = []
    for r in rows:
        details = r.details if isinstance(r.details, dict) else {}
        order = details.get("order") or details.get("order_id")
        notes.append(
            {
                "id": r.id,
                "event": r.event,
                "severity": r.severity,
                "title": r.title,
                "body": r.body,
                "created_at": iso(r.created_at),
                "read": r.read_at is not None,
                "recipient": r.recipient,
                "order": str(order) if order else None,
                "alert_id": r.alert_id,
                "alert_status": status.get(r.alert_id) if r.alert_id is not None else None,
                "level": level.get(r.alert_id) if r.alert_id is not None else None,
            }
        )
    return notes, everyone


def notification_view(row: Notification) -> dict[str, Any]:
    """An inbox entry as the API shows it."""
    return {
        "id": row.id,
        "event": row.event,
        "severity": row.severity,
        "title": row.title,
        "body": row.body,
        "created_at": row.created_at,
        "read_at": row.read_at,
        "recipient": row.recipient,
        "address": row.address,
        "alert_id": row.alert_id,
        "rule": row.rule,
        "details": row.details,
    }
