"""Escalation: an alert nobody acknowledges goes up its chain (line lead -> production
manager -> plant manager), each step recorded in the audit log; it stops on ack or resolve.

Level 0 is told when the alert opens; each ``ack_within_min`` (of the policy for its
severity) without an acknowledgement tells the next level. A snooze holds the next step
(and the rules' notifications of that alert) until it ends. Resolving asks for a reason.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopline.models.alerts import ACTIVE
from loopline.models.audit import record
from loopline.models.notify import alert_event, fan_out
from loopline.models.notify_records import AlertEscalation
from loopline.models.notify_rules import Directory, EscalationPolicy, NotifyConfig
from loopline.models.records import Alert

ACTOR = "escalation"


class AlertClosed(Exception):
    """The alert is resolved already: nothing to snooze or resolve."""


def escalate(
    session: Session,
    config: NotifyConfig,
    directory: Directory,
    *,
    now: datetime,
    wall_now: datetime,
) -> int:
    """One round: start, advance or stop every alert's escalation; how many steps taken.

    ``now`` compares with the alerts' times (wall-clock time, like every record);
    ``wall_now`` dates messages.
    """
    steps = 0
    alerts = list(session.scalars(select(Alert).where(Alert.status.in_(ACTIVE))))
    states = {
        e.alert_id: e
        for e in session.scalars(
            select(AlertEscalation).where(AlertEscalation.alert_id.in_([a.id for a in alerts]))
        )
    }
    for alert in alerts:
        esc = states.get(alert.id)
        if alert.status == "acked":
            if esc is not None and esc.stopped_at is None:
                stop(session, esc, reason=f"acknowledged by {alert.acked_by}", now=now)
            continue
        found = _policy(config, alert)
        if found is None:
            continue
        name, policy = found
        if esc is None:
            esc = AlertEscalation(alert_id=alert.id, policy=name, level=0)
            session.add(esc)
            _step(session, config, directory, alert, esc, policy, 0, now=now, wall_now=wall_now)
            steps += 1
            continue
        if esc.stopped_at is not None or esc.next_at is None or now < esc.next_at:
            continue
        if esc.snoozed_until is not None and now < esc.snoozed_until:
            continue
        level = esc.level + 1
        _step(session, config, directory, alert, esc, policy, level, now=now, wall_now=wall_now)
        steps += 1
    closed = session.scalars(
        select(AlertEscalation)
        .join(Alert, Alert.id == AlertEscalation.alert_id)
        .where(AlertEscalation.stopped_at.is_(None), Alert.status == "resolved")
    )
    for esc in closed:
        stop(session, esc, reason="resolved", now=now)
    session.flush()
    return steps


def _policy(config: NotifyConfig, alert: Alert) -> tuple[str, EscalationPolicy] | None:
    for i, pol in enumerate(config.escalation):
        if pol.matches(severity=alert.severity, kind=alert.kind, role=alert.role):
            return f"escalation[{i}]:{pol.severity}", pol
    return None


def _step(
    session: Session,
    config: NotifyConfig,
    directory: Directory,
    alert: Alert,
    esc: AlertEscalation,
    policy: EscalationPolicy,
    level: int,
    *,
    now: datetime,
    wall_now: datetime,
) -> None:
    """Tell ``level`` of the chain and schedule the next one."""
    to = policy.levels[level]
    esc.level = level
    more = level + 1 < len(policy.levels)
    # From its opening for level 0, from now for the next ones: a level always has its
    # full time to acknowledge (an alert older than the policy does not leap to the top).
    start = alert.opened_at if level == 0 else now
    esc.next_at = start + timedelta(minutes=policy.ack_within_min) if more else None
    if esc.next_at is not None and esc.next_at < now:
        esc.next_at = now + timedelta(minutes=policy.ack_within_min)
    event = alert_event(alert, now=now, prefix=f"esc{level}:")
    # Level 0 is the first notice: whoever a rule told of this alert on the same channel
    # already knows (the condition's key, over the alert's life). Higher levels always tell.
    dedupe_min = 0.0
    if level == 0:
        event = replace(event, dedupe_key=alert.key)
        dedupe_min = max((now - alert.opened_at).total_seconds() / 60, 0.0) + 1.0
    else:
        minutes = round((now - alert.opened_at).total_seconds() / 60)
        event = replace(event, escalated=(level, minutes))
    rows = fan_out(
        session,
        config,
        directory,
        event,
        rule=f"escalation:{level}",
        to=to,
        via=policy.via,
        quiet=policy.quiet_hours,
        dedupe_min=dedupe_min,
        now=wall_now,
    )
    record(
        session,
        actor=ACTOR,
        action="alert.escalated",
        entity="alert",
        entity_id=str(alert.id),
        details={
            "key": alert.key,
            "level": level,
            "to": list(to),
            "notifications": len(rows),
            "next_at": esc.next_at.isoformat() if esc.next_at else None,
            "policy": esc.policy,
        },
    )


def stop(session: Session, esc: AlertEscalation, *, reason: str, now: datetime) -> None:
    """End an alert's escalation (recorded)."""
    esc.stopped_at, esc.stop_reason, esc.next_at = now, reason[:200], None
    record(
        session,
        actor=ACTOR,
        action="alert.escalation_stopped",
        entity="alert",
        entity_id=str(esc.alert_id),
        details={"level": esc.level, "reason": reason},
    )


def _state(session: Session, alert: Alert) -> AlertEscalation:
    esc = session.get(AlertEscalation, alert.id)
    if esc is None:
        esc = AlertEscalation(alert_id=alert.id, policy="", level=0)
        session.add(esc)
    return esc


def snooze(
    session: Session, *, alert_id: int, minutes: float, actor: str, now: datetime
) -> AlertEscalation | None:
    """Hold an alert's escalation and notifications for ``minutes``; None: no such alert."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        return None
    if alert.status not in ACTIVE:
        raise AlertClosed(alert_id)
    esc = _state(session, alert)
    esc.snoozed_until = now + timedelta(minutes=minutes)
    esc.snoozed_by = actor[:100]
    if esc.next_at is not None and esc.next_at < esc.snoozed_until:
        esc.next_at = esc.snoozed_until
    record(
        session,
        actor=actor[:100],
        action="alert.snoozed",
        entity="alert",
        entity_id=str(alert.id),
        details={"key": alert.key, "minutes": minutes, "until": esc.snoozed_until.isoformat()},
    )
    session.flush()
    return esc


def resolve(
    session: Session, *, alert_id: int, reason: str, actor: str, now: datetime
) -> Alert | None:
    """Close an alert by hand, saying why (recorded; its escalation stops)."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        return None
    if alert.status not in ACTIVE:
        raise AlertClosed(alert_id)
    alert.status, alert.resolved_at = "resolved", now
    esc = _state(session, alert)
    esc.resolved_by, esc.resolve_reason = actor[:100], reason
    record(
        session,
        actor=actor[:100],
        action="alert.resolved",
        entity="alert",
        entity_id=str(alert.id),
        details={"key": alert.key, "reason": reason},
    )
    if esc.stopped_at is None:
        stop(session, esc, reason=f"resolved by {actor}", now=now)
    session.flush()
    return alert


def escalation_view(esc: AlertEscalation | None) -> dict[str, Any]:
    """An alert's escalation fields as the API adds them to the alert."""
    if esc is None:
        return {
            "escalation_level": None,
            "escalate_at": None,
            "snoozed_until": None,
            "resolved_by": None,
            "resolve_reason": None,
        }
    return {
        "escalation_level": esc.level,
        "escalate_at": esc.next_at,
        "snoozed_until": esc.snoozed_until,
        "resolved_by": esc.resolved_by,
        "resolve_reason": esc.resolve_reason,
    }
