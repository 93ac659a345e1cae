"""Alert rules v0, evaluated over the live state: lines down too long, lines gone silent,
orders whose ETA is past their promise. Conditions that stop holding resolve themselves."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopline.models.alerts import Condition, alert_view, not_behind, open_alert, resolve_alert
from loopline.models.clock import iso, parse_ts
from loopline.models.live import LiveState, Update
from loopline.models.quarantine import Findings
from loopline.models.records import Alert

RULE_KINDS = ("line_down", "line_unavailable", "order_at_risk")
# Informational alerts (a sequence gap) close by themselves after this long.
INFO_TTL = timedelta(minutes=15)
ALERTS_STEP = "alerts"
STALE_STEP = "staleness"


def mark_stale_lines(
    live: LiveState,
    *,
    wall_now: datetime,
    stale_after_s: float,
    findings: Findings | None = None,
) -> list[str]:
    """Lines that stopped reporting become ``unavailable`` (a state, not an old number)."""
    findings = findings if findings is not None else Findings()
    stale: list[str] = []
    updates = []
    for line in live.all("line"):
        line_id = str(line.get("id"))
        with findings.guard(STALE_STEP, "line", line_id):
            if line.get("state") == "unavailable":
                continue
            seen = parse_ts(line.get("last_seen"))
            if seen is None or (wall_now - seen).total_seconds() > stale_after_s:
                stale.append(line_id)
                updates.append(
                    Update("line", line_id, {"state": "unavailable", "reason": "no report"})
                )
    live.apply(updates)
    findings.finished(STALE_STEP)
    return stale


def conditions(
    live: LiveState, *, now: datetime, down_after_s: float, findings: Findings | None = None
) -> list[Condition]:
    """Every alert condition that holds right now (a line or order whose live state cannot
    be read is named in ``findings`` instead)."""
    findings = findings if findings is not None else Findings()
    out: list[Condition] = []
    for line in live.all("line"):
        with findings.guard(ALERTS_STEP, "line", line.get("id")):
            out += _line_conditions(line, now=now, down_after_s=down_after_s)
    for order in live.all("order"):
        with findings.guard(ALERTS_STEP, "order", order.get("id")):
            out += _order_conditions(order)
    return out


def _line_conditions(
    line: dict[str, Any], *, now: datetime, down_after_s: float
) -> list[Condition]:
    out: list[Condition] = []
    state, line_id = line.get("state"), line["id"]
    since = parse_ts(line.get("since"))
    if state == "down" and since is not None:
        down_s = (now - since).total_seconds()
        if down_s >= down_after_s:
            reason = line.get("reason") or "no reason given"
            minutes = round(down_s / 60)
            out.append(
                Condition(
                    key=f"line_down:{line_id}",
                    kind="line_down",
                    entity="line",
                    entity_id=line_id,
                    severity="critical",
                    message=f"Line {line_id} down for {minutes} min: {reason}",
                    details={"line": line_id, "minutes": minutes, "reason": reason},
                )
            )
    elif state == "unavailable" and line.get("reported_state") is not None:
        out.append(
            Condition(
                key=f"line_unavailable:{line_id}",
                kind="line_unavailable",
                entity="line",
                entity_id=line_id,
                severity="warning",
                message=f"Line {line_id} stopped reporting",
                role="it",
                details={"line": line_id},
            )
        )
    return out


def _order_conditions(order: dict[str, Any]) -> list[Condition]:
    out: list[Condition] = []
    if order.get("risk") == "at_risk":
        out.append(
            Condition(
                key=f"order_at_risk:{order['id']}",
                kind="order_at_risk",
                entity="order",
                entity_id=order["id"],
                severity="warning",
                role="sales",
                message=f"Order {order['id']} ({order.get('customer')}) at risk: "
                f"{order.get('risk_reason') or ''}".strip(),
                details={
                    "order": order["id"],
                    "customer": order.get("customer"),
                    "eta": order.get("eta"),
                    "promised": order.get("promised_date"),
                    "cause": order.get("risk_cause"),
                },
            )
        )
    return out


def evaluate_alerts(
    session: Session,
    live: LiveState,
    *,
    now: datetime,
    wall_now: datetime,
    down_after_s: float,
    findings: Findings | None = None,
    isolate: bool = False,
) -> None:
    """Open alerts for conditions that hold, resolve those that no longer do, mirror to live.

    A line or order whose conditions cannot be evaluated keeps its alerts as they are and
    is named in ``findings``; with ``isolate`` each alert is written in its own savepoint.
    """
    findings = findings if findings is not None else Findings()
    holding = {
        c.key: c for c in conditions(live, now=now, down_after_s=down_after_s, findings=findings)
    }
    active = list(session.scalars(select(Alert).where(Alert.status.in_(("open", "acked")))))
    for alert in active:
        if findings.is_flagged(ALERTS_STEP, alert.entity, alert.entity_id):
            continue  # not evaluated this time: nothing is known to have changed
        if (
            alert.kind in RULE_KINDS
            and alert.key not in holding
            or alert.severity == "info"
            and wall_now - alert.opened_at > INFO_TTL
        ):
            resolve_alert(session, key=alert.key, now=wall_now)
    for c in holding.values():
        with findings.unit(session, ALERTS_STEP, c.entity, c.entity_id, isolate=isolate):
            open_alert(
                session,
                key=c.key,
                kind=c.kind,
                entity=c.entity,
                entity_id=c.entity_id,
                severity=c.severity,
                message=c.message,
                role=c.role,
                at=wall_now,  # a record's time is wall-clock time (the screens convert)
                details=c.details,
            )
    session.flush()
    findings.finished(ALERTS_STEP)
    mirror_alerts(session, live)


def mirror_alerts(session: Session, live: LiveState) -> None:
    """Put the active alerts into live state and take the others out."""
    active = list(session.scalars(select(Alert).where(Alert.status.in_(("open", "acked")))))
    fresh = not_behind(active, live.get_many("alert", [str(a.id) for a in active]))
    live.apply(
        Update(
            "alert",
            str(a.id),
            {k: (iso(v) if isinstance(v, datetime) else v) for k, v in alert_view(a).items()},
        )
        for a in fresh
    )
    live.remove("alert", set(live.ids("alert")) - {str(a.id) for a in active})
