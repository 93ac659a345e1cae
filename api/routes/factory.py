"""Lines and the plan."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from loopline.api.deps import LiveDep, SessionDep, VisibleDep
from loopline.api.errors import error_responses
from loopline.api.schemas import LineView, PlanView
from loopline.models.scope import scoped_line, scoped_plan
from loopline.models.views import current_plan, list_lines

router = APIRouter(tags=["factory"], responses=error_responses(401))


@router.get(
    "/lines",
    summary="Lines with live state and rates per product SKU",
    response_model=list[LineView],
)
def lines(session: SessionDep, live: LiveDep, vis: VisibleDep) -> list[dict[str, Any]]:
    return [scoped_line(line, vis) for line in list_lines(session, live)]


@router.get(
    "/plan",
    summary="The current plan revision",
    response_model=PlanView,
    responses=error_responses(404),
)
def plan(session: SessionDep, vis: VisibleDep) -> dict[str, Any]:
    view = current_plan(session)
    if view is None:
        raise HTTPException(404, detail="no plan yet")
    return scoped_plan(view, vis)
