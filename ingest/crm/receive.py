"""Receiving a CRM webhook: content type, size, Standard Webhooks signature, body, then
record it in the inbox for the worker (no HTTP here; the worker applies it, models/intake.py).

The route maps the outcome: a ``Receipt`` -> 202, ``UnknownSource`` -> 404,
``UnsupportedMediaType`` -> 415, ``TooLarge`` -> 413, ``BadSignature`` -> 401, ``BadBody`` ->
422 (DESIGN.md, "CRM → Loopline").
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from loopline.ingest.crm import soap
from loopline.ingest.crm.auth import BadSignature, Incoming, check_organization, verify
from loopline.ingest.crm.connector import (
    Connector,
    MappingError,
    Registry,
    UnknownSource,
    default_registry,
)
from loopline.ingest.crm.crm_api import TIMEOUT_S, FetchError, fetch_batch, fetch_for
from loopline.models.db import transaction
from loopline.models.events import (
    OrderCancelled,
    OrderUpserted,
    field_errors,
    format_path,
    parse_crm_event,
)
from loopline.models.intake import Receipt as Outcome
from loopline.models.intake import record_received_all
from loopline.models.orders import UnknownProduct
from loopline.models.records import DeadLetter

log = logging.getLogger("loopline.ingest.crm")

CANONICAL = "canonical"
CANONICAL_TYPES = ("order.upserted", "order.cancelled")

DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024
WEBHOOK_ID_MAX_CHARS = 200  # InboxEvent.webhook_id
NUL = "\x00"  # PostgreSQL text cannot hold it: refused at the edge wherever it is
NUL_SHOWN = "\\u0000"  # how a NUL is written in a field path or a dead letter

__all__ = [
    "BadBody",
    "BadSignature",
    "Delivery",
    "FetchFailed",
    "Incoming",
    "Receipt",
    "ReceiveError",
    "TooLarge",
    "UnknownSource",
    "UnsupportedMediaType",
    "event_path",
    "inbox_source",
    "map_record",
    "receive",
    "receive_all",
]


@dataclass(frozen=True)
class Receipt:
    """An accepted webhook: ``accepted`` (recorded; the worker applies it, or parks it for
    approval, soon), ``stale`` (older than the stored version: recorded, ignored) or
    ``duplicate`` (this ``webhook-id`` was received before: nothing changed) or ``ignored``
    (the connector maps this kind of record to nothing)."""

    outcome: Outcome | Literal["ignored"]
    order_id: str
    version: int
    webhook_id: str
    event_type: str = ""


class ReceiveError(Exception):
    """A webhook that was not accepted."""


class UnsupportedMediaType(ReceiveError):
    """A ``Content-Type`` that is not JSON (``application/json`` or ``...+json``)."""

    def __init__(self, content_type: str, expected: str = "application/json") -> None:
        super().__init__(f"Content-Type must be {expected}, not '{content_type[:100]}'")
        self.content_type = content_type


class FetchFailed(ReceiveError):
    """The CRM's API did not answer what the webhook left out (a 502: the CRM retries)."""


class TooLarge(ReceiveError):
    """The body is larger than ``limit`` bytes (``size``: what was declared or read, if known)."""

    def __init__(self, limit: int, size: int | None = None) -> None:
        told = f"body of {size} bytes" if size is not None else "body"
        super().__init__(f"{told} exceeds the limit of {limit} bytes")
        self.limit = limit
        self.size = size


class BadBody(ReceiveError):
    """An authentic body that cannot be accepted; ``errors`` are ``{"field", "message"}``,
    ``reason`` the dead letter's."""

    def __init__(self, errors: list[dict[str, str]], reason: str | None = None) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors
        if reason is None:
            invalid_json = errors[:1] and errors[0]["field"] == "body"
            reason = "invalid_json" if invalid_json else "invalid_body"
        self.reason = reason


def event_path(source: str) -> str:
    """The route a source posts to, used as the dead letter's topic."""
    return "/api/v1/crm/events" if source == CANONICAL else f"/api/v1/crm/{source}/events"


def inbox_source(source: str) -> str:
    """How a source is named in the inbox and dead letters: ``crm:<source>``."""
    return f"crm:{source}"


@dataclass(frozen=True)
class Delivery:
    """What became of one HTTP delivery: a receipt per record it held, in order."""

    connector: Connector
    receipts: list[Receipt]


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
    registry: Registry | None = None,
    incoming: Incoming | None = None,
    client: httpx.Client | None = None,
) -> Receipt:
    """Verify, validate and record a one-record CRM webhook; its receipt (``receive_all``)."""
    delivery = receive_all(
        sessions,
        connector=(registry or default_registry()).get(source),
        incoming=incoming or Incoming.of(body, headers),
        secret=secret,
        max_body_bytes=max_body_bytes,
        actor=actor,
        content_length=content_length,
        client=client,
    )
    return delivery.receipts[0]


def receive_all(
    sessions: sessionmaker[Session],
    *,
    connector: Connector,
    incoming: Incoming,
    secret: str,
    max_body_bytes: int,
    actor: str = "crm",
    content_length: int | None = None,
    client: httpx.Client | None = None,
) -> Delivery:
    """Verify, map, validate and record every record of one delivery in the inbox.

    Raises UnsupportedMediaType, TooLarge, BadSignature, FetchFailed or BadBody. Only an
    authenticated body is ever written: a rejected record (BadBody) is kept as a dead letter
    (the good records of a batch are recorded all the same: a redelivery finds them
    duplicates), an oversized or badly signed delivery is only logged. A caller that stops
    reading at the limit passes what it read as the body and the declared
    ``content_length``. The approval gate and the apply run in the worker
    (``models.intake.apply_received``).
    """
    source = connector.name
    _check_content_type(incoming.headers, connector.format)
    size = max(len(incoming.body), content_length or 0)
    if size > max_body_bytes:
        # Unauthenticated (the signature covers a body we will not read): no database write,
        # so a flood of these costs nothing but this line.
        log.warning("crm %s: refused a body of %d bytes (limit %d)", source, size, max_body_bytes)
        raise TooLarge(max_body_bytes, size)
    signed_id = verify(connector.auth, incoming, secret)
    body = incoming.body
    try:
        doc = decode(connector, body)
    except BadBody as bad:
        _dead_letter(sessions, source, bad.reason, _detail(bad, signed_id or ""), body)
        raise
    if connector.auth.kind == "salesforce":
        check_organization(connector.auth, doc)
    records, prefix = connector.split(doc)
    batched = connector.records is not None
    # Each record is verified, fetched and mapped first; then those mapped are recorded
    # together, in one transaction (a 100-notification SOAP message: one, not 100).
    parsed: list[tuple[int, str, Any, str]] = []  # (index, webhook id, event + ref, raw)
    receipts: dict[int, Receipt] = {}
    errors: list[dict[str, str]] = []
    # The API reads of a delivery's records go out at the same time, on keep-alive
    # connections shared by the process (a 100-notification message in 100 serial reads
    # took longer than Salesforce waits for the Ack).
    http = client if client is not None or connector.fetch is None else _api_client()
    prefetched = _prefetch(connector, records, http)
    for i, record in enumerate(records):
        raw = json.dumps(record, ensure_ascii=False) if batched else body.decode()
        webhook_id = connector.delivery_id(record, dict(incoming.headers), signed_id)
        here = f"{prefix}[{i}]" if batched else ""
        try:
            event, ref = _parse(connector, record, webhook_id, http, prefetched.get(i))
        except BadBody as bad:
            named = [_prefixed(here, e) for e in bad.errors]
            errors += named
            _dead_letter(sessions, source, bad.reason, _detail(BadBody(named), webhook_id), body)
            continue
        except FetchFailed as failed:
            # What came before is recorded all the same (a redelivery finds duplicates).
            _record_parsed(sessions, connector, parsed, receipts, actor, prefix, batched, body)
            _dead_letter(sessions, source, "fetch_failed", str(failed), body)
            raise
        if event is None:
            receipts[i] = Receipt("ignored", "", 0, webhook_id, "")
            continue
        parsed.append((i, webhook_id, (event, ref), raw))
    errors += _record_parsed(sessions, connector, parsed, receipts, actor, prefix, batched, body)
    if errors:
        raise BadBody(errors)
    if not records:
        raise BadBody([{"field": connector.records or "body", "message": "holds no record"}])
    return Delivery(connector, [receipts[i] for i in sorted(receipts)])


def _record_parsed(
    sessions: sessionmaker[Session],
    connector: Connector,
    parsed: list[tuple[int, str, Any, str]],
    receipts: dict[int, Receipt],
    actor: str,
    prefix: str,
    batched: bool,
    body: bytes,
) -> list[dict[str, str]]:
    """Record the mapped events of a delivery in one transaction, their receipts into
    ``receipts``; the errors of those refused (an unknown product: a dead letter each)."""
    source = connector.name
    answers = record_received_all(
        sessions,
        [
            (event, inbox_source(source), webhook_id, raw, actor, ref)
            for _, webhook_id, (event, ref), raw in parsed
        ],
    )
    parsed_now, parsed[:] = list(parsed), []
    errors: list[dict[str, str]] = []
    for (i, webhook_id, (event, _), _), recorded in zip(parsed_now, answers, strict=True):
        if isinstance(recorded, UnknownProduct):
            field = connector.source_field(recorded.field)
            bad = BadBody(
                [{"field": field, "message": f"unknown product '{recorded.sku}'"}],
                "unknown_product",
            )
            named = [_prefixed(f"{prefix}[{i}]" if batched else "", e) for e in bad.errors]
            errors += named
            detail = _detail(BadBody(named), webhook_id)
            _dead_letter(sessions, source, bad.reason, detail, body)
            continue
        if recorded.outcome != "accepted":
            log.info(
                "crm %s %s: %s v%s is %s",
                source,
                webhook_id,
                recorded.order_id,
                recorded.version,
                recorded.outcome,
            )
        receipts[i] = Receipt(
            outcome=recorded.outcome,
            order_id=recorded.order_id,
            version=recorded.version,
            webhook_id=webhook_id,
            event_type=event.type,
        )
    return errors


def _prefixed(here: str, error: dict[str, str]) -> dict[str, str]:
    if not here:
        return error
    field = error["field"]
    joined = here if field == "body" else f"{here}{'' if field.startswith('[') else '.'}{field}"
    return {"field": joined, "message": error["message"]}


def _check_content_type(headers: Mapping[str, str], body_format: str = "json") -> None:
    """A declared ``Content-Type`` must be JSON (XML for SOAP); none at all is taken as it."""
    declared = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    if declared is None:
        return
    media = declared.split(";", 1)[0].strip().lower()
    if body_format == "soap":
        if media not in ("text/xml", "application/xml", "application/soap+xml"):
            raise UnsupportedMediaType(declared, "text/xml")
        return
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


def decode(connector: Connector, body: bytes) -> Any:
    """The delivery's body as data (JSON, or SOAP as dicts); raises BadBody."""
    if connector.format == "soap":
        try:
            doc: Any = soap.parse(body)
        except ValueError as exc:
            raise BadBody([{"field": "body", "message": str(exc)}]) from None
    else:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise BadBody([{"field": "body", "message": f"invalid JSON: {exc}"}]) from None
    if connector.records is None and not isinstance(doc, dict):
        raise BadBody([{"field": "body", "message": "must be a JSON object"}])
    if (where := nul_field(doc)) is not None:
        raise BadBody([{"field": where, "message": "must not contain a NUL character"}])
    return doc


def map_record(
    connector: Connector,
    record: Any,
    client: httpx.Client | None = None,
    *,
    recorded_fetch: bool = False,
    fetched: dict[str, Any] | FetchError | None = None,
) -> tuple[OrderUpserted | OrderCancelled | None, str | None]:
    """One record -> the validated canonical event (None: the connector ignores it) and the
    CRM's record id. Raises BadBody naming the source's own fields, FetchFailed. The receive
    path and ``loopline connectors check`` (and the mapping screen) share this; a check may
    pass a sample holding a recorded ``_fetched`` answer (``recorded_fetch``); the receive
    path may pass what the API answered for it, read beforehand (``fetched``)."""
    if not isinstance(record, dict):
        raise BadBody([{"field": "body", "message": "must be a JSON object"}])
    # A cancel or an ignored record needs nothing from the CRM's API.
    needs_fetch = connector.fields is None or connector.fields.kind.value(record) == "upsert"
    if (
        connector.fetch is not None
        and needs_fetch
        and not (recorded_fetch and "_fetched" in record)
    ):
        try:
            if isinstance(fetched, FetchError):
                raise fetched
            got = fetched if fetched is not None else fetch_for(connector.fetch, record, client)
            record = record | {"_fetched": got}
        except FetchError as exc:
            raise FetchFailed(f"{connector.fetch.kind} API: {exc}") from None
    try:
        mapped = connector.map_record(record)
    except MappingError as exc:
        raise BadBody(exc.errors) from None
    if mapped.kind == "ignore":
        return None, None
    canonical = mapped.body
    if canonical.get("type") not in CANONICAL_TYPES:
        message = f"must be one of {', '.join(CANONICAL_TYPES)}"
        raise BadBody([{"field": connector.source_field("type"), "message": message}])
    try:
        return parse_crm_event(canonical), mapped.ref
    except ValidationError as exc:
        errors = field_errors(exc)
        raise BadBody(
            [{"field": connector.source_field(e["field"]), "message": e["message"]} for e in errors]
        ) from None


def _parse(
    connector: Connector,
    record: Any,
    webhook_id: str,
    client: httpx.Client | None,
    fetched: dict[str, Any] | FetchError | None = None,
) -> tuple[OrderUpserted | OrderCancelled | None, str | None]:
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
    return map_record(connector, record, client, fetched=fetched)


# At most this many API reads at a time, for all deliveries of the process together.
FETCH_CONCURRENCY = 8
_fetch_pool: ThreadPoolExecutor | None = None
_client: httpx.Client | None = None
_shared_lock = threading.Lock()


def _api_client() -> httpx.Client:
    """The process's keep-alive client for connectors' API reads (thread-safe)."""
    global _client
    with _shared_lock:
        if _client is None:
            _client = httpx.Client(
                timeout=TIMEOUT_S,
                limits=httpx.Limits(max_connections=4 * FETCH_CONCURRENCY),
            )
        return _client


def _prefetch(
    connector: Connector, records: list[Any], client: httpx.Client | None
) -> dict[int, dict[str, Any] | FetchError]:
    """What the CRM's API answers for each record that needs a read (by index), read
    concurrently when there are several; a failed read is its FetchError (``map_record``
    raises it in the record's turn). Records it cannot tell about are read in their turn."""
    spec = connector.fetch
    if spec is None:
        return {}
    wanted: list[int] = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            continue
        try:
            if connector.fields is None or connector.fields.kind.value(record) == "upsert":
                wanted.append(i)
        except Exception:  # noqa: BLE001 - map_record names the field in the record's turn
            continue
    if len(wanted) < 2:
        return {}
    try:
        batch = fetch_batch(spec, [records[i] for i in wanted], client)
    except FetchError as exc:  # a batch call failed: each record it was for fails so
        return dict.fromkeys(wanted, exc)
    if batch is not None:
        return dict(zip(wanted, batch, strict=True))

    def read(i: int) -> dict[str, Any] | FetchError:
        try:
            return fetch_for(spec, records[i], client)
        except FetchError as exc:
            return exc

    global _fetch_pool
    with _shared_lock:
        if _fetch_pool is None:
            _fetch_pool = ThreadPoolExecutor(FETCH_CONCURRENCY, thread_name_prefix="crm-fetch")
        pool = _fetch_pool
    return dict(zip(wanted, pool.map(read, wanted), strict=True))


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
