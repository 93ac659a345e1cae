"""Pending changes: CRM order changes that would break a promise, and their approval."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from loopline.api.auth import PRODUCTION_MANAGER, Principal
from loopline.api.deps import LiveDep, SessionDep, VisibleDep, require_roles
from loopline.api.errors import RowId, error_body, error_responses
from loopline.api.schemas import ChangeView
from loopline.models.approvals import (
    AlreadyDecided,
    ChangeStatus,
    Decision,
    announce_change,
    approve,
    change_view,
    get_change,
    list_changes,
    reject,
)
from loopline.models.loop import request_replan

router = APIRouter(prefix="/changes", tags=["changes"], responses=error_responses(401))

DeciderDep = Annotated[Principal, Depends(require_roles(PRODUCTION_MANAGER))]


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000)


DecisionBody = Annotated[DecisionIn | None, Body()]


@router.get(
    "",
    summary="Changes waiting for approval first, then decided ones, newest first",
    response_model=list[ChangeView],
)
def changes(
    session: SessionDep,
    vis: VisibleDep,
    status: ChangeStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    found = list_changes(session, status=status, limit=limit)
    return [change_view(c) for c in found if vis is None or c.order_id in vis.orders]


@router.get(
    "/{change_id}",
    summary="One change with its impact",
    response_model=ChangeView,
    responses=error_responses(404),
)
def change(change_id: RowId, session: SessionDep, vis: VisibleDep) -> dict[str, Any]:
    found = get_change(session, change_id=change_id)
    if found is None or (vis is not None and found.order_id not in vis.orders):
        raise HTTPException(404, detail=f"no change {change_id}")
    return change_view(found)


def _decide(
    decide: Callable[..., Decision | None],
    session: Session,
    change_id: int,
    who: Principal,
    body: DecisionIn | None,
) -> Decision:
    """Run ``approve`` or ``reject`` in a transaction; 404 unknown, 409 already decided."""
    with session.begin():
        try:
            decision = decide(
                session, change_id=change_id, actor=who.name, note=body.note if body else None
            )
        except AlreadyDecided as exc:
            raise HTTPException(409, detail=str(exc)) from None
        if decision is None:
            raise HTTPException(404, detail=f"no change {change_id}")
        return decision


@router.post(
    "/{change_id}/approve",
    summary="Apply a pending change (production manager); 409 if decided or superseded",
    response_model=ChangeView,
    responses=error_responses(403, 404, 409),
)
def approve_change(
    change_id: RowId,
    session: SessionDep,
    live: LiveDep,
    who: DeciderDep,
    body: DecisionBody = None,
) -> dict[str, Any] | JSONResponse:
    decision = _decide(approve, session, change_id, who, body)
    view = change_view(decision.change)
    announce_change(live, change_id, view["order_id"], view["status"])
    if decision.outcome == "superseded":
        detail = f"change {change_id} is superseded: {decision.change.note}"
        return JSONResponse(error_body(detail, change=view), status_code=409)
    request_replan(live.redis, f"change {change_id} approved ({view['order_id']})")
    return view


@router.post(
    "/{change_id}/reject",
    summary="Turn a pending change down (production manager); the order stays as it was",
    response_model=ChangeView,
    responses=error_responses(403, 404, 409),
)
def reject_change(
    change_id: RowId, session: SessionDep, live: LiveDep, who: DeciderDep, body: DecisionBody = None
) -> dict[str, Any]:
    view = change_view(_decide(reject, session, change_id, who, body).change)
    announce_change(live, change_id, view["order_id"], view["status"])
    return view
