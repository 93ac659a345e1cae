"""Purchasing: the purchase requests the plan raises, and material stock with its BOMs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from loopline.api.auth import PRODUCTION_MANAGER, PURCHASING, Principal
from loopline.api.deps import PrincipalDep, SessionDep, require_roles
from loopline.api.errors import error_responses
from loopline.api.schemas import MaterialsView, PurchaseRequestView
from loopline.models.purchasing import materials_view, open_purchase_requests

router = APIRouter(tags=["purchasing"], responses=error_responses(401))

# Purchasing buys, the production manager plans around it; admin is always let in.
BuyerDep = Annotated[Principal, Depends(require_roles(PURCHASING, PRODUCTION_MANAGER))]


@router.get(
    "/purchase-requests",
    summary="Open purchase requests: material short for the plan, needed by when",
    response_model=list[PurchaseRequestView],
    responses=error_responses(403),
)
def purchase_requests(session: SessionDep, _: BuyerDep) -> list[dict[str, Any]]:
    return open_purchase_requests(session)


@router.get(
    "/materials",
    summary="Materials: stock, on order, and the BOM per product",
    response_model=MaterialsView,
)
def materials(session: SessionDep, _: PrincipalDep) -> dict[str, Any]:
    return materials_view(session)
