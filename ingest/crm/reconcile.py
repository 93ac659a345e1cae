"""Reconciliation: the CRM's open orders against Loopline's, repairing missed webhooks.

Webhooks get lost (Odoo never retries). For a connector whose CRM has a read API, ``reconcile``
reads the CRM's open orders, and the CRM's state of every order Loopline holds open from that
source, maps them like webhook records and puts each one Loopline lacks or holds at an older
version into the inbox (the worker applies it as usual). Each repair is an audit entry.
``loopline reconcile --source X`` runs it once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from loopline.ingest.crm.connector import Connector
from loopline.ingest.crm.crm_api import list_records
from loopline.ingest.crm.receive import BadBody, FetchFailed, inbox_source, map_record
from loopline.models.audit import record
from loopline.models.db import transaction
from loopline.models.intake import record_received
from loopline.models.orders import OPEN_STATUSES, UnknownProduct
from loopline.models.records import InboxEvent, Order

log = logging.getLogger("loopline.ingest.crm.reconcile")


@dataclass
class Reconciled:
    """What one run found: orders checked, repaired (id -> why), and records it could not map."""

    checked: int = 0
    repaired: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _held(session: Session, source: str) -> dict[str, int]:
    """Loopline's open orders that came from ``source``, with their versions."""
    ids = select(InboxEvent.order_id).where(InboxEvent.source == source).distinct()
    rows = session.execute(
        select(Order.id, Order.version).where(Order.status.in_(OPEN_STATUSES), Order.id.in_(ids))
    )
    return {order_id: version for order_id, version in rows}


def reconcile(
    sessions: sessionmaker[Session], connector: Connector, *, client: httpx.Client | None = None
) -> Reconciled:
    """Compare and repair once; raises FetchError when the CRM cannot be read."""
    api = connector.fetch or connector.writeback
    if api is None:
        raise ValueError(f"connector {connector.name} names no CRM API to read")
    source = inbox_source(connector.name)
    own = client is None
    http = client or httpx.Client(timeout=10.0)
    result = Reconciled()
    try:
        with sessions() as session:
            held = _held(session, source)
        crm = list_records(api, open_only=True, names=None, client=http)
        seen = {str(r.get("name")) for r in crm}
        missing = [order_id for order_id in held if order_id not in seen]
        if missing:  # open here, not open there: read their state (cancelled, most likely)
            crm += list_records(api, open_only=False, names=missing, client=http)
        for raw in crm:
            result.checked += 1
            _repair(sessions, connector, raw, held, result, http)
    finally:
        if own:
            http.close()
    return result


def _repair(
    sessions: sessionmaker[Session],
    connector: Connector,
    raw: dict[str, object],
    held: dict[str, int],
    result: Reconciled,
    http: httpx.Client,
) -> None:
    label = str(raw.get("name") or raw.get("_id"))
    try:
        event, ref = map_record(connector, raw, http)
    except (BadBody, FetchFailed) as exc:
        result.failed[label] = str(exc)
        return
    if event is None:
        return
    order_id, version = event.order.id, event.order.version
    have = held.get(order_id)
    if event.type == "order.cancelled" and have is None:
        return  # cancelled there, not held here: nothing to repair
    if have is not None and have >= version:
        return
    why = "missing" if have is None else f"v{have} -> v{version}"
    try:
        recorded = record_received(
            sessions,
            event=event,
            source=inbox_source(connector.name),
            webhook_id=f"reconcile:{order_id}:{version}"[:200],
            raw=event.model_dump_json(),
            actor="reconcile",
            ref=ref,
        )
    except UnknownProduct as exc:
        result.failed[label] = f"unknown product '{exc.sku}'"
        return
    if recorded.outcome != "accepted":
        return  # a webhook got there meanwhile, or an earlier run
    with transaction(sessions) as session:
        record(
            session,
            actor="reconcile",
            action="order.repaired",
            entity="order",
            entity_id=order_id,
            details={"source": connector.name, "event": event.type, "why": why},
        )
    log.info("reconcile %s: %s %s (%s)", connector.name, event.type, order_id, why)
    result.repaired[order_id] = why
