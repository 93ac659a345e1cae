"""Receiving a CRM webhook: content type, size, Standard Webhooks signature, body, then
record it in the inbox for the worker (no HTTP here; the worker applies it, models/intake.py).

The route maps the outcome: a ``Receipt`` -> 202, ``UnknownSource`` -> 404,
``UnsupportedMediaType`` -> 415, ``TooLarge`` -> 413, ``BadSignature`` -> 401, ``BadBody`` ->
422 (DESIGN.md, "CRM → Loopline").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from loopline.ingest.crm.mappings import (
    CANONICAL,
    CANONICAL_TYPES,
    MappingError,
    UnknownSource,
    get_mapping,
    source_field,
)
from loopline.models.db import transaction
from loopline.models.events import (
    OrderCancelled,
    OrderUpserted,
    field_errors,
    format_path,
    parse_crm_event,
)
from loopline.models.intake import Receipt as Outcome
from loopline.models.intake import record_received
from loopline.models.orders import UnknownProduct
from loopline.models.records import DeadLetter

log = logging.getLogger("loopline.ingest.crm")

DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024
WEBHOOK_ID_MAX_CHARS = 200  # InboxEvent.webhook_id
NUL = "\x00"  # PostgreSQL text cannot hold it: refused at the edge wherever it is
NUL_SHOWN = "\\u0000"  # how a NUL is written in a field path or a dead letter

__all__ = [
    "BadBody",
    "BadSignature",
    "Receipt",
    "ReceiveError",
    "TooLarge",
    "UnknownSource",
    "UnsupportedMediaType",
    "event_path",
    "inbox_source",
    "receive",
]


@dataclass(frozen=True)
class Receipt:
    """An accepted webhook: ``accepted`` (recorded; the worker applies it, or parks it for
    approval, soon), ``stale`` (older than the stored version: recorded, ignored) or
    ``duplicate`` (this ``webhook-id`` was received before: nothing changed)."""

    outcome: Outcome
    order_id: str
    version: int
    webhook_id: str
    event_type: str = ""


class ReceiveError(Exception):
    """A webhook that was not accepted."""


class UnsupportedMediaType(ReceiveError):
    """A ``Content-Type`` that is not JSON (``application/json`` or ``...+json``)."""

    def __init__(self, content_type: str) -> None:
        super().__init__(f"Content-Type must be application/json, not '{content_type[:100]}'")
        self.content_type = content_type


class TooLarge(ReceiveError):
    """The body is larger than ``limit`` bytes (``size``: what was declared or read, if known)."""

    def __init__(self, limit: int, size: int | None = None) -> None:
        told = f"body of {size} bytes" if size is not None else "body"
        super().__init__(f"{told} exceeds the limit of {limit} bytes")
        self.limit = limit
        self.size = size


class BadSignature(ReceiveError):
    """Missing or wrong Standard Webhooks headers, a wrong signature, or a stale timestamp."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BadBody(ReceiveError):
    """An authentic body that cannot be accepted; ``errors`` are ``{"field", "message"}``."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


def event_path(source: str) -> str:
    """The route a source posts to, used as the dead letter's topic."""
    return "/api/v1/crm/events" if source == CANONICAL else f"/api/v1/crm/{source}/events"


def inbox_source(source: str) -> str:
    """How a source is named in the inbox and dead letters: ``crm:<source>``."""
    return f"crm:{source}"


def receive(
    sessions: sessionmaker[Session],
    *,
    source: str,
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    max_body_bytes: int,
    actor: str = "crm",
    content_length: int | None = None,
) -> Receipt:
    """Verify, validate and record one CRM webhook in the inbox, in one short transaction.

    Raises UnknownSource, UnsupportedMediaType, TooLarge, BadSignature or BadBody. Only an
    authenticated body is ever written: a rejected one (BadBody) is kept as a dead letter,
    an oversized or badly signed one is only logged. A caller that stops reading at the
    limit passes what it read as ``body`` and the declared ``content_length``. The approval
    gate and the apply run in the worker (``models.intake.apply_received``).
    """
    mapping = get_mapping(source)
    _check_content_type(headers)
    size = max(len(body), content_length or 0)
    if size > max_body_bytes:
        # Unauthenticated (the signature covers a body we will not read): no database write,
        # so a flood of these costs nothing but this line.
        log.warning("crm %s: refused a body of %d bytes (limit %d)", source, size, max_body_bytes)
        raise TooLarge(max_body_bytes, size)
    webhook_id = _verify(body, headers, secret)
    try:
        event = _parse(source, mapping, body, webhook_id)
        recorded = record_received(
            sessions,
            event=event,
            source=inbox_source(source),
            webhook_id=webhook_id,
            raw=body.decode(),
            actor=actor,
        )
    except UnknownProduct as exc:
        bad = BadBody(
            [{"field": source_field(source, exc.field), "message": f"unknown product '{exc.sku}'"}]
        )
        _dead_letter(sessions, source, "unknown_product", _detail(bad, webhook_id), body)
        raise bad from exc
    except BadBody as bad:
        reason = (
            "invalid_json"
            if bad.errors[:1] and bad.errors[0]["field"] == "body"
            else "invalid_body"
        )
        _dead_letter(sessions, source, reason, _detail(bad, webhook_id), body)
        raise
    if recorded.outcome != "accepted":
        log.info(
            "crm %s %s: %s v%s is %s",
            source,
            webhook_id,
            recorded.order_id,
            recorded.version,
            recorded.outcome,
        )
    return Receipt(
        outcome=recorded.outcome,
        order_id=recorded.order_id,
        version=recorded.version,
        webhook_id=webhook_id,
        event_type=event.type,
    )


def _check_content_type(headers: Mapping[str, str]) -> None:
    """A declared ``Content-Type`` must be JSON; none at all is taken as JSON."""
    declared = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    if declared is None:
        return
    media = declared.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise UnsupportedMediaType(declared)


def nul_field(data: Any, path: list[str | int] | None = None) -> str | None:
    """The path of the first key or string holding a NUL character in decoded JSON, or None."""
    path = path or []
    if isinstance(data, str):
        return (format_path(path) or "body") if NUL in data else None
    if isinstance(data, dict):
        for key, value in data.items():
            here = [*path, str(key).replace(NUL, NUL_SHOWN)]
            if NUL in str(key):
                return format_path(here)
            if (found := nul_field(value, here)) is not None:
                return found
    elif isinstance(data, list):
        for i, value in enumerate(data):
            if (found := nul_field(value, [*path, i])) is not None:
                return found
    return None


def _verify(body: bytes, headers: Mapping[str, str], secret: str) -> str:
    """Check the Standard Webhooks signature over the raw body; the verified ``webhook-id``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        text = body.decode()
    except UnicodeDecodeError:
        # The library signs text; a body that is not UTF-8 cannot be checked (nor be JSON).
        raise BadSignature("body is not UTF-8, so its signature cannot be checked") from None
    try:
        Webhook(secret).verify(text, lowered, json_parse=False)
    except WebhookVerificationError as exc:
        raise BadSignature(str(exc)) from None
    except ValueError:  # a malformed webhook-signature header (no "v1,<base64>")
        raise BadSignature("Malformed webhook-signature header") from None
    return lowered["webhook-id"]


def _parse(
    source: str, mapping: Any, body: bytes, webhook_id: str
) -> OrderUpserted | OrderCancelled:
    if NUL in webhook_id:
        message = "must not contain a NUL character"
        raise BadBody([{"field": "headers.webhook-id", "message": message}])
    if len(webhook_id) > WEBHOOK_ID_MAX_CHARS:
        raise BadBody(
            [
                {
                    "field": "headers.webhook-id",
                    "message": f"longer than {WEBHOOK_ID_MAX_CHARS} characters",
                }
            ]
        )
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadBody([{"field": "body", "message": f"invalid JSON: {exc}"}]) from None
    if not isinstance(data, dict):
        raise BadBody([{"field": "body", "message": "must be a JSON object"}])
    if (where := nul_field(data)) is not None:
        raise BadBody([{"field": where, "message": "must not contain a NUL character"}])
    try:
        canonical = mapping(data)
    except MappingError as exc:
        raise BadBody(exc.errors) from None
    if canonical.get("type") not in CANONICAL_TYPES:
        message = f"must be one of {', '.join(CANONICAL_TYPES)}"
        raise BadBody([{"field": source_field(source, "type"), "message": message}])
    try:
        return parse_crm_event(canonical)
    except ValidationError as exc:
        errors = field_errors(exc)
        raise BadBody(
            [{"field": source_field(source, e["field"]), "message": e["message"]} for e in errors]
        ) from None


def _detail(bad: BadBody, webhook_id: str) -> str:
    return json.dumps({"webhook_id": webhook_id, "errors": bad.errors}, ensure_ascii=False)


def _dead_letter(
    sessions: sessionmaker[Session], source: str, reason: str, detail: str, payload: bytes
) -> None:
    """Keep a rejected body; a failure here is logged and never hides the rejection itself."""
    cut = payload[:DEAD_LETTER_PAYLOAD_BYTES].decode(errors="replace").replace(NUL, NUL_SHOWN)
    detail = detail.replace(NUL, NUL_SHOWN)
    try:
        with transaction(sessions) as session:
            session.add(
                DeadLetter(
                    source=inbox_source(source),
                    topic=event_path(source),
                    reason=reason,
                    detail=detail,
                    payload=cut,
                )
            )
    except Exception:
        log.exception("could not dead-letter a rejected CRM body (%s, %s)", source, reason)
