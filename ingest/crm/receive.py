"""Receiving a CRM webhook: size, Standard Webhooks signature, body, then apply (no HTTP here).

The route maps the outcome: a ``Receipt`` -> 202, ``UnknownSource`` -> 404, ``TooLarge`` -> 413,
``BadSignature`` -> 401, ``BadBody`` -> 422 (DESIGN.md, "CRM → Loopline").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from ingest.crm.mappings import (
    CANONICAL,
    CANONICAL_TYPES,
    MappingError,
    UnknownSource,
    get_mapping,
    source_field,
)
from models.approvals import Gate, GateOutcome, apply_gated
from models.db import transaction
from models.events import OrderCancelled, OrderUpserted, field_errors, parse_crm_event
from models.orders import UnknownProduct
from models.records import DeadLetter

log = logging.getLogger("loopline.ingest.crm")

DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024
# Why smaller: an oversized body is rejected before its signature is checked, so it is
# unauthenticated; keep only enough of it to recognise the sender.
TOO_LARGE_PAYLOAD_BYTES = 4 * 1024
WEBHOOK_ID_MAX_CHARS = 200  # InboxEvent.webhook_id

__all__ = [
    "BadBody",
    "BadSignature",
    "Receipt",
    "ReceiveError",
    "TooLarge",
    "UnknownSource",
    "event_path",
    "inbox_source",
    "receive",
]


@dataclass(frozen=True)
class Receipt:
    """An accepted event's fate: ``applied``, ``stale`` (recorded, ignored), ``duplicate``,
    or ``pending_approval`` (parked as change ``change_id``: it would break a promise)."""

    outcome: GateOutcome
    order_id: str
    version: int
    webhook_id: str
    event_type: str = ""
    changes: dict[str, Any] = field(default_factory=dict)
    change_id: int | None = None
    change_status: str | None = None  # also ``auto_approved`` for an applied change


class ReceiveError(Exception):
    """A webhook that was not accepted."""


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
    gate: Gate | None = None,
) -> Receipt:
    """Verify, validate and apply one CRM webhook in one transaction.

    Raises UnknownSource, TooLarge, BadSignature or BadBody; every rejected body except an
    unauthenticated one (BadSignature) is kept as a dead letter. A caller that stops reading
    at the limit passes what it read as ``body`` and the declared ``content_length``. With a
    ``gate``, a change that would break another order's promise waits for approval
    (models/approvals.py).
    """
    mapping = get_mapping(source)
    size = max(len(body), content_length or 0)
    if size > max_body_bytes:
        exc = TooLarge(max_body_bytes, size)
        _dead_letter(sessions, source, "too_large", str(exc), body[:TOO_LARGE_PAYLOAD_BYTES])
        raise exc
    webhook_id = _verify(body, headers, secret)
    try:
        event = _parse(source, mapping, body, webhook_id)
        with transaction(sessions) as session:
            result = apply_gated(
                session,
                gate=gate,
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
    if result.outcome != "applied":
        log.info(
            "crm %s %s: %s v%s is %s",
            source,
            webhook_id,
            result.order_id,
            result.version,
            result.outcome,
        )
    return Receipt(
        outcome=result.outcome,
        order_id=result.order_id,
        version=result.version,
        webhook_id=webhook_id,
        event_type=event.type,
        changes=result.changes,
        change_id=result.change_id,
        change_status=result.change_status,
    )


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
    cut = payload[:DEAD_LETTER_PAYLOAD_BYTES].decode(errors="replace")
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
