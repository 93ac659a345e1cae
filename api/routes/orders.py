"""Orders: where each customer order stands."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query

from loopline.api.deps import LiveDep, PrincipalDep, SessionDep
from loopline.api.errors import error_responses
from loopline.api.schemas import OrderView
from loopline.models.views import get_order, list_orders

router = APIRouter(prefix="/orders", tags=["orders"], responses=error_responses(401))


@router.get("", summary="List orders", response_model=list[OrderView])
def orders(
    session: SessionDep,
    live: LiveDep,
    who: PrincipalDep,
    status: str | None = None,
    customer: str | None = None,
    limit: int = Query(500, ge=1, le=5000),
) -> list[dict[str, Any]]:
    return list_orders(
        session, live, status=status, customer=customer, limit=limit, scope=who.scope
    )


@router.get(
    "/{order_id}",
    summary="One order with its work orders and history",
    response_model=OrderView,
    responses=error_responses(404),
)
def order(order_id: str, session: SessionDep, live: LiveDep, who: PrincipalDep) -> dict[str, Any]:
    # Out of the caller's scope answers as if it did not exist (404, never 403).
    view = get_order(session, live, order_id=order_id, scope=who.scope)
    if view is None:
        raise HTTPException(404, detail=f"no order '{order_id}'")
    return view
