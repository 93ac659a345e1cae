"""CRM webhooks: signed order events in (DESIGN.md, "CRM → Loopline").

The request only verifies, validates and records the event (202); a worker applies it,
through the approval gate, and replans (models/intake.py).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from loopline.api.context import ApiContext
from loopline.api.deps import ContextDep
from loopline.api.errors import FieldError, error_body, error_responses
from loopline.ingest.crm.mappings import UnknownSource
from loopline.ingest.crm.receive import (
    BadBody,
    BadSignature,
    Receipt,
    TooLarge,
    UnsupportedMediaType,
    receive,
)
from loopline.models.loop import request_replan

log = logging.getLogger("loopline.api.crm")

router = APIRouter(prefix="/crm", tags=["crm"], responses=error_responses(401, 404, 413, 415, 422))


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


def _receive_and_wake(
    ctx: ApiContext, source: str, headers: dict[str, str], body: bytes, declared: int | None
) -> Receipt:
    """Record the event, then wake a worker to apply it (in a worker thread: SQL blocks)."""
    receipt = receive(
        ctx.sessions,
        source=source,
        headers=headers,
        body=body,
        secret=ctx.crm_secret,
        max_body_bytes=ctx.max_body_bytes,
        content_length=declared,
    )
    if receipt.outcome == "accepted":
        try:
            request_replan(ctx.live.redis, f"crm {receipt.order_id} v{receipt.version}")
        except RedisError:  # recorded all the same: the worker also looks in the inbox
            log.warning("could not wake a worker for %s; it will poll", receipt.webhook_id)
    return receipt


async def _handle(request: Request, ctx: ContextDep, source: str) -> JSONResponse:
    body, declared = await _read_limited(request, ctx.max_body_bytes)
    try:
        receipt = await run_in_threadpool(
            _receive_and_wake, ctx, source, dict(request.headers), body, declared
        )
    except UnsupportedMediaType as exc:
        return JSONResponse(error_body(str(exc)), status_code=415)
    except TooLarge:
        return JSONResponse(
            error_body(f"body larger than {ctx.max_body_bytes} bytes"), status_code=413
        )
    except BadSignature as exc:
        return JSONResponse(error_body(f"signature: {exc}"), status_code=401)
    except BadBody as exc:
        fields = [
            FieldError(field=e["field"], message=e["message"], location="body") for e in exc.errors
        ]
        return JSONResponse(error_body(fields), status_code=422)
    except UnknownSource:
        return JSONResponse(error_body(f"unknown CRM source '{source}'"), status_code=404)
    answer = {
        "outcome": receipt.outcome,
        "order_id": receipt.order_id,
        "version": receipt.version,
        "webhook_id": receipt.webhook_id,
        "event_type": receipt.event_type,
    }
    return JSONResponse(answer, status_code=202)


@router.post("/events", status_code=202, summary="Receive a signed canonical CRM event")
async def crm_events(request: Request, ctx: ContextDep) -> JSONResponse:
    return await _handle(request, ctx, "canonical")


@router.post("/{source}/events", status_code=202, summary="Receive a signed event from a CRM")
async def crm_source_events(source: str, request: Request, ctx: ContextDep) -> JSONResponse:
    return await _handle(request, ctx, source)
