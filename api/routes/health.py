"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import ContextDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Is the service up and can it reach its stores?")
def healthz(ctx: ContextDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with ctx.sessions() as session:
            session.execute(text("select 1"))
        checks["database"] = "ok"
    except Exception as exc:  # report, don't raise: this is the health endpoint
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        ctx.live.redis.ping()
        checks["live_state"] = "ok"
    except Exception as exc:
        checks["live_state"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "degraded", **checks}, status_code=200 if ok else 503
    )
