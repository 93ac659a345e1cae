"""CRM webhooks: signed order events in (DESIGN.md, "CRM → Loopline").

The request only verifies, validates and records the event (202); a worker applies it,
through the approval gate, and replans (models/intake.py).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from loopline.api.context import ApiContext
from loopline.api.deps import ContextDep
from loopline.api.errors import FieldError, error_body, error_responses
from loopline.ingest.crm import soap
from loopline.ingest.crm.auth import BadSignature, Incoming
from loopline.ingest.crm.connector import Connector, UnknownSource, default_registry
from loopline.ingest.crm.receive import (
    BadBody,
    Delivery,
    FetchFailed,
    Receipt,
    TooLarge,
    UnsupportedMediaType,
    receive_all,
)
from loopline.models.loop import request_replan

log = logging.getLogger("loopline.api.crm")

router = APIRouter(
    prefix="/crm", tags=["crm"], responses=error_responses(401, 404, 413, 415, 422, 502)
)


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
    ctx: ApiContext, connector: Connector, incoming: Incoming, declared: int | None
) -> Delivery:
    """Record the events, then wake a worker to apply them (in a worker thread: SQL blocks)."""
    delivery = receive_all(
        ctx.sessions,
        connector=connector,
        incoming=incoming,
        secret=ctx.crm_secret,
        max_body_bytes=ctx.max_body_bytes,
        content_length=declared,
    )
    accepted = [r for r in delivery.receipts if r.outcome == "accepted"]
    if accepted:
        try:
            first = accepted[0]
            request_replan(ctx.live.redis, f"crm {first.order_id} v{first.version}")
        except RedisError:  # recorded all the same: the worker also looks in the inbox
            log.warning("could not wake a worker for %s; it will poll", first.webhook_id)
    return delivery


def _answer(receipt: Receipt) -> dict[str, object]:
    return {
        "outcome": receipt.outcome,
        "order_id": receipt.order_id,
        "version": receipt.version,
        "webhook_id": receipt.webhook_id,
        "event_type": receipt.event_type,
    }


async def _handle(request: Request, ctx: ContextDep, source: str) -> Response:
    registry = ctx.connectors or default_registry()
    try:
        connector = registry.get(source)
    except UnknownSource:
        return JSONResponse(error_body(f"unknown CRM source '{source}'"), status_code=404)
    body, declared = await _read_limited(request, ctx.max_body_bytes)
    incoming = Incoming.of(
        body,
        dict(request.headers),
        method=request.method,
        url=str(request.url),
        query=dict(request.query_params),
        client_ip=request.client.host if request.client else None,
    )
    try:
        delivery = await run_in_threadpool(_receive_and_wake, ctx, connector, incoming, declared)
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
    except FetchFailed as exc:
        # The CRM keeps the event and retries; the body is also kept as a dead letter.
        return JSONResponse(error_body(f"fetch: {exc}"), status_code=502)
    if connector.response == "soap_ack":
        return Response(soap.ack(), status_code=200, media_type="text/xml")
    if connector.records is None:
        return JSONResponse(_answer(delivery.receipts[0]), status_code=202)
    return JSONResponse({"events": [_answer(r) for r in delivery.receipts]}, status_code=202)


@router.post("/events", status_code=202, summary="Receive a signed canonical CRM event")
async def crm_events(request: Request, ctx: ContextDep) -> Response:
    return await _handle(request, ctx, "canonical")


@router.post("/{source}/events", status_code=202, summary="Receive a signed event from a CRM")
async def crm_source_events(source: str, request: Request, ctx: ContextDep) -> Response:
    return await _handle(request, ctx, source)
