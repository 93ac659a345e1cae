"""Alerts: list, acknowledge, snooze, resolve with a reason."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from loopline.api.auth import ADMIN, DISPLAY, Principal
from loopline.api.deps import LiveDep, PrincipalDep, SessionDep, VisibleDep, WriterDep
from loopline.api.errors import RowId, error_responses
from loopline.api.schemas import AlertView
from loopline.models.alerts import ack_alert, alert_view, list_alerts
from loopline.models.clock import iso, utcnow
from loopline.models.escalation import AlertClosed, escalation_view, resolve, snooze, stop
from loopline.models.notify import inbox_addresses, told_of_alert
from loopline.models.notify_records import AlertEscalation
from loopline.models.records import Alert
from loopline.models.scope import Visible, alert_ok
from loopline.models.watch import mirror_alerts

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=error_responses(401))


class SnoozeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    minutes: float = Field(gt=0, le=7 * 24 * 60, description="how long to hold it")


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000, description="why it is closed")


def _json(view: dict[str, Any]) -> dict[str, Any]:
    return {k: iso(v) if hasattr(v, "tzinfo") else v for k, v in view.items()}


def _view(session: SessionDep, alert: Alert) -> dict[str, Any]:
    esc = session.get(AlertEscalation, alert.id)
    return _json({**alert_view(alert), **escalation_view(esc)})


@router.get("", summary="Active alerts (all=true: resolved too)", response_model=list[AlertView])
def alerts(session: SessionDep, vis: VisibleDep, all: bool = False) -> list[dict[str, Any]]:
    rows = list_alerts(session, include_resolved=all)
    found = session.query(AlertEscalation).filter(
        AlertEscalation.alert_id.in_([a.id for a in rows])
    )
    escs = {e.alert_id: e for e in found}
    views = (_json({**alert_view(a), **escalation_view(escs.get(a.id))}) for a in rows)
    return [v for v in views if alert_ok(v, vis)]


@router.post(
    "/{alert_id}/ack",
    summary="Acknowledge an alert (its escalation stops)",
    response_model=AlertView,
    responses=error_responses(403, 404),
)
def ack(
    alert_id: RowId, session: SessionDep, live: LiveDep, who: PrincipalDep, vis: VisibleDep
) -> dict[str, Any]:
    """The admin, or a person whose inbox was told of the alert (its escalation reached
    them: a line lead, the production manager), acknowledges it."""
    if ADMIN not in who.roles:
        _may_ack(session, who, vis, alert_id)
    with session.begin():
        alert = ack_alert(session, alert_id=alert_id, actor=who.name)
        if alert is None:
            raise HTTPException(404, detail=f"no alert {alert_id}")
        esc = session.get(AlertEscalation, alert.id)
        if esc is not None and esc.stopped_at is None:
            stop(session, esc, reason=f"acknowledged by {who.name}", now=utcnow())
        session.flush()
        view = _view(session, alert)
    # After the commit: a screen never shows an ack that was rolled back (and a sweep that
    # read the alert before it cannot take the ack back: ``not_behind``).
    mirror_alerts(session, live)
    return view


def _may_ack(session: SessionDep, who: Principal, vis: Visible | None, alert_id: int) -> None:
    """403 for a read-only wall screen; 404 for an alert the caller may not see (as for
    none); 403 unless they were told of it."""
    refused = HTTPException(
        403,
        detail="only the admin or a person told of this alert in their inbox may acknowledge it",
    )
    if set(who.roles) <= {DISPLAY}:
        raise refused
    try:
        alert = session.get(Alert, alert_id)
        if alert is None or not alert_ok(alert_view(alert), vis):
            raise HTTPException(404, detail=f"no alert {alert_id}")
        addresses, _ = inbox_addresses(who.name, who.roles)
        told = told_of_alert(session, alert_id=alert_id, addresses=addresses)
    finally:
        session.rollback()  # only read: the route opens its own transaction
    if not told:
        raise refused


@router.post(
    "/{alert_id}/snooze",
    summary="Hold an alert's escalation and notifications for some minutes",
    response_model=AlertView,
    responses=error_responses(403, 404, 409),
)
def snooze_alert(
    alert_id: RowId,
    body: Annotated[SnoozeIn, Body()],
    session: SessionDep,
    who: WriterDep,
) -> dict[str, Any]:
    with session.begin():
        try:
            esc = snooze(
                session,
                alert_id=alert_id,
                minutes=body.minutes,
                actor=who.name,
                now=utcnow(),
            )
        except AlertClosed:
            raise HTTPException(409, detail=f"alert {alert_id} is resolved") from None
        if esc is None:
            raise HTTPException(404, detail=f"no alert {alert_id}")
        alert = session.get(Alert, alert_id)
        assert alert is not None
        return _view(session, alert)


@router.post(
    "/{alert_id}/resolve",
    summary="Close an alert by hand, with the reason (recorded)",
    response_model=AlertView,
    responses=error_responses(403, 404, 409),
)
def resolve_alert(
    alert_id: RowId,
    body: Annotated[ResolveIn, Body()],
    session: SessionDep,
    live: LiveDep,
    who: WriterDep,
) -> dict[str, Any]:
    with session.begin():
        try:
            alert = resolve(
                session,
                alert_id=alert_id,
                reason=body.reason,
                actor=who.name,
                now=utcnow(),
            )
        except AlertClosed:
            raise HTTPException(409, detail=f"alert {alert_id} is resolved already") from None
        if alert is None:
            raise HTTPException(404, detail=f"no alert {alert_id}")
        mirror_alerts(session, live)
        return _view(session, alert)
