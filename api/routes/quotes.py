"""Quotes: the earliest date the factory can promise, and which orders would slip."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopline.api.auth import PRODUCTION_MANAGER, SALES, Principal
from loopline.api.deps import ContextDep, SessionDep, require_roles
from loopline.api.errors import FieldError, error_body, error_responses
from loopline.api.schemas import QuoteView
from loopline.models.events import Name, Priority, format_path
from loopline.models.quotes import QuoteAsk, UnknownSku, make_quote
from loopline.models.scope import scoped_slips, visible

router = APIRouter(prefix="/quotes", tags=["quotes"], responses=error_responses(401, 403))

QuoterDep = Annotated[Principal, Depends(require_roles(SALES, PRODUCTION_MANAGER))]


class QuoteIn(BaseModel):
    """``{"sku", "qty", "requested_date", "priority"}`` (DESIGN.md, REST)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    sku: Name
    qty: float = Field(gt=0, le=10_000_000)
    requested_date: date
    priority: Priority = "normal"


def _unprocessable(errors: list[dict[str, str]]) -> JSONResponse:
    detail = [FieldError(**e, location="body") for e in errors]
    return JSONResponse(error_body(detail), status_code=422)


@router.post(
    "",
    summary="Quote a possible order: earliest promise, and the orders that would slip if it "
    "went first",
    response_model=QuoteView,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": QuoteIn.model_json_schema()}},
        }
    },
)
def quotes(
    ctx: ContextDep,
    session: SessionDep,
    who: QuoterDep,
    payload: Annotated[Any, Body(include_in_schema=False)] = None,
) -> dict[str, Any] | JSONResponse:
    # Validated here rather than by FastAPI so a 422 names fields like the CRM webhook does.
    if not isinstance(payload, dict):
        return _unprocessable([{"field": "body", "message": "must be a JSON object"}])
    try:
        body = QuoteIn.model_validate(payload)
    except ValidationError as exc:
        return _unprocessable(
            [{"field": format_path(list(e["loc"])), "message": e["msg"]} for e in exc.errors()]
        )
    ask = QuoteAsk(body.sku, body.qty, body.requested_date, body.priority)
    try:
        with session.begin():
            answer = make_quote(
                session,
                ctx.live,
                ask=ask,
                now=ctx.clock.now(),
                actor=who.name,
                window=ctx.plan_window,
            )
            vis = visible(session, who.scope)
    except UnknownSku as exc:
        return _unprocessable([{"field": "sku", "message": exc.reason}])
    # A rep learns how much other orders would slip, never whose they are.
    prioritized = answer["prioritized"]
    return {
        **answer,
        "prioritized": {**prioritized, "slips": scoped_slips(prioritized["slips"], vis)},
    }
