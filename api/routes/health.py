"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from loopline.api.deps import ContextDep
from loopline.api.errors import RETRY_AFTER_S
from loopline.ingest.crm.reconcile import read_status

router = APIRouter(tags=["health"])


class CrmRead(BaseModel):
    """One reconciled CRM's last pull (ingest/crm/reconcile.py)."""

    ok: bool
    at: str = Field(description="when it ran (ISO 8601, UTC)")
    failures: int = Field(description="pulls in a row that could not read the CRM")
    error: str | None = None
    checked: int | None = None
    repaired: int | None = None


class Health(BaseModel):
    """Whether the service can reach its stores, and which cannot be reached."""

    status: Literal["ok", "degraded"]
    database: str = Field(description='"ok" or "error: <exception type>"')
    live_state: str = Field(description='Redis: "ok" or "error: <exception type>"')
    down: list[Literal["database", "redis"]] = Field(description="the stores that are down")
    crm_reads: dict[str, CrmRead] = Field(
        default_factory=dict,
        description="The worker's reconciliation pulls by connector: each one's last run "
        "(a CRM that cannot be read does not make Loopline degraded; it is retried each period)",
    )


@router.get(
    "/healthz",
    summary="Is the service up and can it reach its stores?",
    response_model=Health,
    responses={503: {"model": Health, "description": "A store is down (named in `down`)"}},
)
def healthz(ctx: ContextDep) -> JSONResponse:
    checks: dict[str, str] = {}
    down: list[str] = []
    try:
        with ctx.sessions() as session:
            session.execute(text("select 1"))
        checks["database"] = "ok"
    except Exception as exc:  # report, don't raise: this is the health endpoint
        checks["database"] = f"error: {type(exc).__name__}"
        down.append("database")
    try:
        ctx.live.redis.ping()
        checks["live_state"] = "ok"
    except Exception as exc:
        checks["live_state"] = f"error: {type(exc).__name__}"
        down.append("redis")
    reads: dict[str, dict[str, object]] = {}
    if "redis" not in down:
        try:
            reads = {
                name: CrmRead.model_validate(state, strict=False).model_dump()
                for name, state in read_status(ctx.live.redis).items()
            }
        except Exception:  # a half-written status is not worth failing the health check
            reads = {}
    body = {"status": "degraded" if down else "ok", **checks, "down": down, "crm_reads": reads}
    if down:
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
    return JSONResponse(body)
