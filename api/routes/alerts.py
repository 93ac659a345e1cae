"""Alerts: list and acknowledge."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from loopline.api.deps import LiveDep, SessionDep, VisibleDep, WriterDep
from loopline.api.errors import RowId, error_responses
from loopline.api.schemas import AlertView
from loopline.models.alerts import ack_alert, alert_view, list_alerts
from loopline.models.clock import iso
from loopline.models.scope import alert_ok
from loopline.models.watch import mirror_alerts

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=error_responses(401))


def _json(view: dict[str, Any]) -> dict[str, Any]:
    return {k: iso(v) if hasattr(v, "tzinfo") else v for k, v in view.items()}


@router.get("", summary="Active alerts (all=true: resolved too)", response_model=list[AlertView])
def alerts(session: SessionDep, vis: VisibleDep, all: bool = False) -> list[dict[str, Any]]:
    views = (alert_view(a) for a in list_alerts(session, include_resolved=all))
    return [_json(v) for v in views if alert_ok(v, vis)]


@router.post(
    "/{alert_id}/ack",
    summary="Acknowledge an alert",
    response_model=AlertView,
    responses=error_responses(403, 404),
)
def ack(alert_id: RowId, session: SessionDep, live: LiveDep, who: WriterDep) -> dict[str, Any]:
    with session.begin():
        alert = ack_alert(session, alert_id=alert_id, actor=who.name)
        if alert is None:
            raise HTTPException(404, detail=f"no alert {alert_id}")
        session.flush()
        mirror_alerts(session, live)
        return _json(alert_view(alert))
