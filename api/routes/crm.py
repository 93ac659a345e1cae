"""CRM webhooks: signed order events in (DESIGN.md, "CRM → Loopline")."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep
from ingest.crm.mappings import UnknownSource
from ingest.crm.receive import BadBody, BadSignature, TooLarge, receive
from models.approvals import Gate, announce_change
from models.loop import request_replan

router = APIRouter(prefix="/crm", tags=["crm"])


async def _read_limited(request: Request, limit: int) -> tuple[bytes, int | None]:
    """The raw body, stopping just past ``limit`` (an oversized body is never read whole),
    and the declared Content-Length."""
    header = request.headers.get("content-length", "")
    declared = int(header) if header.isdigit() else None
    body = bytearray()
    if declared is not None and declared > limit:
        return b"", declared
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            break
    return bytes(body), declared


async def _handle(request: Request, ctx: ContextDep, source: str) -> JSONResponse:
    body, declared = await _read_limited(request, ctx.max_body_bytes)
    try:
        # In a worker thread: applying may solve a preview plan (the approval gate).
        receipt = await run_in_threadpool(
            receive,
            ctx.sessions,
            source=source,
            headers=dict(request.headers),
            body=body,
            secret=ctx.crm_secret,
            max_body_bytes=ctx.max_body_bytes,
            content_length=declared,
            gate=Gate(ctx.live, ctx.clock.now, ctx.approval_policy, ctx.plan_window),
        )
    except TooLarge:
        return JSONResponse(
            {"detail": f"body larger than {ctx.max_body_bytes} bytes"}, status_code=413
        )
    except BadSignature as exc:
        return JSONResponse({"detail": f"signature: {exc}"}, status_code=401)
    except BadBody as exc:
        return JSONResponse({"detail": exc.errors}, status_code=422)
    except UnknownSource:
        return JSONResponse({"detail": f"unknown CRM source '{source}'"}, status_code=404)
    if receipt.outcome == "applied":
        request_replan(ctx.live.redis, f"crm {receipt.order_id} v{receipt.version}")
    answer: dict[str, object] = {
        "outcome": receipt.outcome,
        "order_id": receipt.order_id,
        "version": receipt.version,
        "webhook_id": receipt.webhook_id,
    }
    if receipt.change_id is not None:  # parked for approval, or auto-approved
        answer.update(change_id=receipt.change_id, change_status=receipt.change_status)
        announce_change(
            ctx.live, receipt.change_id, receipt.order_id, receipt.change_status or "pending"
        )
    return JSONResponse(answer, status_code=202)


@router.post("/events", status_code=202, summary="Receive a signed canonical CRM event")
async def crm_events(request: Request, ctx: ContextDep) -> JSONResponse:
    return await _handle(request, ctx, "canonical")


@router.post("/{source}/events", status_code=202, summary="Receive a signed event from a CRM")
async def crm_source_events(source: str, request: Request, ctx: ContextDep) -> JSONResponse:
    return await _handle(request, ctx, source)
