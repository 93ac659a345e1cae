"""Reconciliation: the CRM's open orders against Loopline's, repairing missed webhooks.

Webhooks get lost (Odoo never retries). For a connector whose file has a ``reconcile``
section (its CRM has a read API: Odoo JSON-RPC, HubSpot's CRM search, Salesforce's REST query,
Jiandaoyun's data list), ``reconcile`` reads the CRM's open orders, and the CRM's state of
every order Loopline holds open from that source, in the webhook's shape; maps them with the
connector's own fields and puts each one Loopline lacks, holds at an older version with other
content, or holds open while the CRM has cancelled or deleted it, into the inbox (the worker
applies it as usual). Each repair is an audit entry (``order.repaired``, actor ``reconcile``).

``loopline reconcile --source X`` runs it once; the worker runs a ``Reconciler`` that pulls
every source in ``LOOPLINE_RECONCILE_SOURCES`` each ``LOOPLINE_RECONCILE_EVERY_S``. A CRM
that cannot be read is logged and tried again the next period; its state is kept in Redis
(``/healthz`` shows it) and after ``alert_after`` failed periods in a row an IT alert opens
(closed by the next good read).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from loopline.ingest.crm.connector import Connector
from loopline.ingest.crm.crm_api import FetchError, base_url, read_open, read_orders
from loopline.ingest.crm.receive import BadBody, FetchFailed, inbox_source, map_record
from loopline.models.alerts import open_alert, resolve_alert
from loopline.models.audit import record
from loopline.models.clock import utcnow
from loopline.models.db import transaction
from loopline.models.events import CancelledOrderIn, OrderCancelled, OrderUpserted
from loopline.models.intake import record_received
from loopline.models.orders import OPEN_STATUSES, UnknownProduct
from loopline.models.records import InboxEvent, Order

log = logging.getLogger("loopline.ingest.crm.reconcile")

STATUS_KEY = "loopline:reconcile"  # Redis hash: source -> its last run (JSON)


@dataclass
class Reconciled:
    """What one run found: orders checked, repaired (id -> why), and records it could not map."""

    checked: int = 0
    repaired: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Held:
    version: int
    content: tuple[Any, ...]


def _content(order: Order) -> tuple[Any, ...]:
    return (
        order.customer_id,
        [(ln.sku, ln.qty) for ln in order.lines],
        order.requested_date,
        order.priority,
        order.sales_rep,
    )


def _event_content(event: OrderUpserted) -> tuple[Any, ...]:
    o = event.order
    return (
        o.customer.id,
        [(ln.sku, ln.qty) for ln in o.lines],
        o.requested_date,
        o.priority,
        o.sales_rep,
    )


def _held(session: Session, source: str) -> dict[str, _Held]:
    """Loopline's open orders that came from ``source``: their versions and content."""
    ids = select(InboxEvent.order_id).where(InboxEvent.source == source).distinct()
    orders = session.scalars(
        select(Order).where(Order.status.in_(OPEN_STATUSES), Order.id.in_(ids))
    )
    return {o.id: _Held(o.version, _content(o)) for o in orders}


def reconcile(
    sessions: sessionmaker[Session],
    connector: Connector,
    *,
    client: httpx.Client | None = None,
    unchanged: dict[str, int] | None = None,
) -> Reconciled:
    """Compare and repair once; raises FetchError when the CRM cannot be read.

    ``unchanged`` (kept between runs by the periodic pull) remembers the CRM versions found
    to change nothing Loopline keeps, so they are not fetched again each period.
    """
    api, spec = connector.read_api, connector.reconcile
    if api is None or spec is None:
        raise ValueError(
            f"connector {connector.name} names no CRM API to read (no reconcile section)"
        )
    source = inbox_source(connector.name)
    own = client is None
    http = client or httpx.Client(timeout=10.0)
    result = Reconciled()
    try:
        with sessions() as session:
            held = _held(session, source)
        crm = read_open(api, spec, http)
        seen = {str(r.get("_order_id")) for r in crm}
        missing = [order_id for order_id in held if order_id not in seen]
        gone: list[str] = []
        if missing:  # open here, not open there: read their state (cancelled, most likely)
            more, gone = read_orders(api, spec, missing, http)
            crm += more
        for raw in crm:
            result.checked += 1
            _repair(sessions, connector, raw, held, result, http, unchanged)
        for order_id in gone:  # the CRM has no such record any more: deleted there
            result.checked += 1
            now_ms = int(utcnow().timestamp() * 1000)
            event = OrderCancelled(
                type="order.cancelled",
                occurred_at=utcnow(),
                order=CancelledOrderIn(
                    id=order_id, version=max(now_ms, held[order_id].version + 1)
                ),
            )
            _record(sessions, connector, event, None, "deleted in the CRM", result)
    finally:
        if own:
            http.close()
    return result


def _repair(
    sessions: sessionmaker[Session],
    connector: Connector,
    raw: dict[str, Any],
    held: dict[str, _Held],
    result: Reconciled,
    http: httpx.Client,
    unchanged: dict[str, int] | None = None,
) -> None:
    label = str(raw.get("_order_id") or raw.get("name") or raw.get("_id"))
    f = connector.fields
    assert f is not None  # the schema requires fields with reconcile
    order_id = str(f.order_id.value(raw))
    have = held.get(order_id)
    version = f.version.value(raw)
    if have is not None and isinstance(version, int) and have.version >= version:
        return  # known at this version: nothing to read from the CRM
    if have is not None and unchanged is not None and unchanged.get(order_id) == version:
        return  # read at this version before: it changed nothing Loopline keeps
    try:
        event, ref = map_record(connector, raw, http)
    except (BadBody, FetchFailed) as exc:
        result.failed[label] = str(exc)
        return
    if event is None:
        return
    if event.type == "order.cancelled" and have is None:
        return  # cancelled there, not held here: nothing to repair
    if have is not None and have.version >= event.order.version:
        return
    if (
        have is not None
        and isinstance(event, OrderUpserted)
        and _event_content(event) == have.content
    ):
        # Changed there, but nothing Loopline keeps (e.g. Loopline's own write-back).
        if unchanged is not None:
            unchanged[event.order.id] = event.order.version
        return
    why = "missing" if have is None else f"v{have.version} -> v{event.order.version}"
    if event.type == "order.cancelled":
        why = f"cancelled in the CRM ({why})"
    _record(sessions, connector, event, ref, why, result, label=label)


def _record(
    sessions: sessionmaker[Session],
    connector: Connector,
    event: OrderUpserted | OrderCancelled,
    ref: str | None,
    why: str,
    result: Reconciled,
    *,
    label: str | None = None,
) -> None:
    order_id, version = event.order.id, event.order.version
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
        result.failed[label or order_id] = f"unknown product '{exc.sku}'"
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


# --- the periodic pull ---------------------------------------------------------------------


def alert_key(source: str) -> str:
    return f"crm_read:{source}"[:120]


class Reconciler:
    """The worker's periodic pull: every ``every_s``, each connector once, in a thread.

    A CRM that cannot be read is logged and tried again the next period; each run's outcome
    is kept in Redis (``STATUS_KEY``) for ``/healthz``; ``alert_after`` failed periods in a row
    open an IT alert, a good read closes it.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        connectors: list[Connector],
        *,
        every_s: float,
        alert_after: int,
        status: redis.Redis | None = None,
    ) -> None:
        self.sessions, self.connectors = sessions, connectors
        self.every_s, self.alert_after = every_s, alert_after
        self.status = status
        self.failures: dict[str, int] = {c.name: 0 for c in connectors}
        self.unchanged: dict[str, dict[str, int]] = {c.name: {} for c in connectors}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        names = ", ".join(c.name for c in self.connectors)
        log.info("reconcile: %s every %.0f s", names, self.every_s)
        self._thread = threading.Thread(target=self._run, name="reconcile", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.every_s)

    def run_once(self) -> dict[str, Reconciled | str]:
        """Pull each source once; a source's answer, or why it could not be read."""
        out: dict[str, Reconciled | str] = {}
        for connector in self.connectors:
            if self._stop.is_set():
                break
            out[connector.name] = self._one(connector)
        return out

    def _one(self, connector: Connector) -> Reconciled | str:
        name = connector.name
        try:
            result = reconcile(self.sessions, connector, unchanged=self.unchanged[name])
        except FetchError as exc:
            self.failures[name] += 1
            log.warning(
                "reconcile %s: the CRM cannot be read (%s); %d period(s) in a row, "
                "next try in %.0f s",
                name,
                exc,
                self.failures[name],
                self.every_s,
            )
            self._note(name, {"ok": False, "error": str(exc)[:300]})
            if self.failures[name] >= self.alert_after:
                self._alert(connector, str(exc))
            return str(exc)
        except Exception as exc:  # the database, say: keep pulling the other sources
            log.exception("reconcile %s failed", name)
            self._note(name, {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]})
            return f"{type(exc).__name__}: {exc}"
        if self.failures[name]:
            log.info("reconcile %s: the CRM can be read again", name)
            with transaction(self.sessions) as session:
                resolve_alert(session, key=alert_key(name))
        self.failures[name] = 0
        log.info(
            "reconcile %s: %d checked, %d repaired, %d not mappable",
            name,
            result.checked,
            len(result.repaired),
            len(result.failed),
        )
        self._note(
            name,
            {
                "ok": True,
                "checked": result.checked,
                "repaired": len(result.repaired),
                "failed": len(result.failed),
            },
        )
        return result

    def _note(self, name: str, state: dict[str, Any]) -> None:
        if self.status is None:
            return
        state = {
            "at": utcnow().isoformat(),
            "failures": self.failures.get(name, 0),
            "every_s": self.every_s,
            **state,
        }
        try:
            self.status.hset(STATUS_KEY, name, json.dumps(state))
        except redis.RedisError as exc:
            log.warning("reconcile %s: cannot note the run in Redis (%s)", name, exc)

    def _alert(self, connector: Connector, error: str) -> None:
        api = connector.read_api
        try:
            where = base_url(api) if api is not None else connector.name
        except FetchError:
            where = connector.name
        periods = self.failures[connector.name]
        with transaction(self.sessions) as session:
            open_alert(
                session,
                key=alert_key(connector.name),
                kind="crm_unreachable",
                entity="crm",
                entity_id=connector.name[:80],
                severity="warning",
                role="it",
                message=(
                    f"Reconciliation cannot read the {connector.title} API at {where}: "
                    f"{periods} periods in a row; missed webhooks are not repaired meanwhile. "
                    f"Last error: {error[:200]}"
                ),
                details={"url": where, "source": connector.name, "failed_periods": periods},
            )


def read_status(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """Each reconciled source's last run, as the Reconciler noted it."""
    raw = client.hgetall(STATUS_KEY) or {}
    out = {}
    for k, v in raw.items():
        key = k.decode() if isinstance(k, bytes) else str(k)
        try:
            out[key] = json.loads(v)
        except ValueError:
            continue
    return out
