"""CRM intake: a webhook only records its event; the worker applies what was received.

``record_received`` is the request side: one short transaction that inserts the verified,
validated event into the inbox as ``received`` (or ``stale``, or finds it a duplicate).
``apply_received`` is the worker side, run under the loop's duty lock so appliers never
race: per order, the newest received version goes through the approval gate (applied,
auto-approved or parked); older received versions of that order are recorded as stale. Each
order is applied in a transaction of its own, so an inbox row stays ``received`` until what
it changed is committed: a worker that dies mid-apply loses nothing, the next one applies it.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from loopline.models.approvals import Gate, GateResult, apply_gated, impact_of, planned_ends
from loopline.models.audit import record
from loopline.models.db import transaction
from loopline.models.events import OrderCancelled, OrderUpserted, parse_crm_event
from loopline.models.orders import (
    UnknownProduct,
    check_products,
    high_water,
    record_stale,
    work_order_id,
)
from loopline.models.planning import ProblemError
from loopline.models.records import (
    Customer,
    DeadLetter,
    InboxEvent,
    Order,
    OrderLine,
    OrderTombstone,
    PendingChange,
    Product,
    WorkOrder,
)

log = logging.getLogger("loopline.intake")

Receipt = Literal["accepted", "stale", "duplicate"]
RECEIVED = "received"
# Orders applied in one round before the worker replans (together, at one or two preview
# solves, unless they move someone past a promise: then one by one through the gate).
INTAKE_BATCH_ORDERS = 500
# A received event that keeps failing to apply is given up (dead-lettered) after this.
MAX_APPLY_ATTEMPTS = 5


@dataclass(frozen=True)
class Recorded:
    """What the request side did with an event; ``outcome`` is the webhook's answer."""

    outcome: Receipt
    order_id: str
    version: int


def record_received(
    sessions: sessionmaker[Session],
    *,
    event: OrderUpserted | OrderCancelled,
    source: str,
    webhook_id: str,
    raw: str,
    actor: str,
    ref: str | None = None,
) -> Recorded:
    """Insert a verified event into the inbox for the worker, in a short transaction.

    ``ref`` is the CRM's own id of the record (a connector's write-back addresses it), kept
    beside the canonical event.

    Raises UnknownProduct for a SKU the factory does not know (a 422 at the edge). A
    version at or below the order's stored one is recorded as ``stale`` and changes
    nothing; the same ``webhook_id`` again is a ``duplicate`` (the unique key decides, so
    concurrent deliveries cannot both get in). Nothing here locks the order.

    Calls made at the same time (concurrent webhooks in one process) share a transaction
    (``_GroupCommit``); each returns only once its event is committed.
    """
    item = _ToRecord(event, source, webhook_id, raw, actor, ref)
    _group_commit(sessions).record([item])
    return item.outcome()


def record_received_all(
    sessions: sessionmaker[Session],
    events: list[tuple[OrderUpserted | OrderCancelled, str, str, str, str, str | None]],
) -> list[Recorded | UnknownProduct]:
    """``record_received`` for each of the records of one delivery (a SOAP message's
    notifications, a HubSpot batch), in one transaction instead of one each: each item is
    ``(event, source, webhook_id, raw, actor, ref)``, each answer a ``Recorded`` or the
    ``UnknownProduct`` that refused its event, in order. The same outcomes as one call
    each (a webhook id earlier in the delivery makes a duplicate); when the transaction
    fails as a whole the events are written one by one, so one bad row fails only itself.
    """
    items = [_ToRecord(*args) for args in events]
    if not items:
        return []
    _group_commit(sessions).record(items)
    out: list[Recorded | UnknownProduct] = []
    for item in items:
        if isinstance(item.error, UnknownProduct):
            out.append(item.error)
        else:
            out.append(item.outcome())
    return out


def _record_one(sessions: sessionmaker[Session], item: _ToRecord) -> Recorded:
    """``record_received`` of one event in a transaction of its own."""
    event, source, webhook_id, raw, actor, ref = item.args()
    order_id, version = event.order.id, event.order.version
    try:
        with transaction(sessions) as session:
            if isinstance(event, OrderUpserted):
                check_products(session, event)
            high = high_water(session, order_id, session.get(Order, order_id))
            stale = high is not None and version <= high
            session.add(
                InboxEvent(
                    source=source,
                    webhook_id=webhook_id,
                    event_type=event.type,
                    order_id=order_id,
                    order_version=version,
                    outcome="stale" if stale else RECEIVED,
                    raw=raw,
                    event=event.model_dump(mode="json") | ({"ref": ref} if ref else {}),
                )
            )
            session.flush()
            if stale:
                assert high is not None
                record_stale(
                    session,
                    order_id=order_id,
                    version=version,
                    high=high,
                    webhook_id=webhook_id,
                    actor=actor,
                )
    except IntegrityError:  # the unique (source, webhook_id): a redelivery
        return Recorded("duplicate", order_id, version)
    return Recorded("stale" if stale else "accepted", order_id, version)


# At most this many concurrent webhooks' events share one transaction.
GROUP_COMMIT_MAX = 200


class _ToRecord:
    """One ``record_received`` call waiting for its transaction."""

    def __init__(
        self,
        event: OrderUpserted | OrderCancelled,
        source: str,
        webhook_id: str,
        raw: str,
        actor: str,
        ref: str | None,
    ) -> None:
        self.event, self.source, self.webhook_id = event, source, webhook_id
        self.raw, self.actor, self.ref = raw, actor, ref
        self.done = threading.Event()
        self.lead = False  # woken to write the next group, not with a result
        self.result: Recorded | None = None
        self.error: BaseException | None = None

    def args(self) -> tuple[OrderUpserted | OrderCancelled, str, str, str, str, str | None]:
        return self.event, self.source, self.webhook_id, self.raw, self.actor, self.ref

    def outcome(self) -> Recorded:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class _GroupCommit:
    """Group commit for ``record_received``: concurrent calls (webhooks answered in
    parallel threads) are written in one transaction instead of one each.

    Why: on a loaded machine the receive path was its SQL round trips (products, the
    stored order, the tombstone, the insert, the commit, a pool checkout), per event. The
    first caller writes the waiting group (its own event among them); calls arriving
    meanwhile wait for the next group, written by the first of them. A lone call is
    written alone, as before; a call's own events (``record_received_all``: one delivery's)
    always share a transaction. A group that fails as a whole (a row the database refuses)
    is written again event by event, so one bad event fails only its own call.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._lock = threading.Lock()
        self._waiting: list[list[_ToRecord]] = []  # calls, each its events (one delivery's)
        self._writing = False

    def record(self, items: list[_ToRecord]) -> None:
        """Write ``items`` (one call's events: never split between transactions) with the
        calls waiting beside them; each item's result or error is set on return."""
        head = items[0]  # the call is woken through its first item
        with self._lock:
            self._waiting.append(items)
            lead = not self._writing
            self._writing = True
        if not lead:
            head.done.wait()
            if not head.lead:
                return
        with self._lock:
            calls: list[list[_ToRecord]] = []
            size = 0
            while self._waiting and (not calls or size + len(self._waiting[0]) <= GROUP_COMMIT_MAX):
                size += len(self._waiting[0])
                calls.append(self._waiting.pop(0))
        try:
            self._write([it for call in calls for it in call])
        finally:
            with self._lock:
                if self._waiting:  # the next group is written by its first caller
                    self._waiting[0][0].lead = True
                    self._waiting[0][0].done.set()
                else:
                    self._writing = False
            for call in calls:
                if call is not items:
                    call[0].done.set()

    def _write(self, group: list[_ToRecord]) -> None:
        if len(group) > 1:
            try:
                _record_group(self.sessions, group)
                return
            except Exception:  # noqa: BLE001 - each on its own says which one and why
                log.warning("recording %d events together failed; one by one", len(group))
        for item in group:
            item.lead = False
            try:
                item.result = _record_one(self.sessions, item)
            except BaseException as exc:  # noqa: BLE001 - raised in its own caller's thread
                item.error = exc


_groups: weakref.WeakKeyDictionary[sessionmaker[Session], _GroupCommit] = (
    weakref.WeakKeyDictionary()
)
_groups_lock = threading.Lock()


def _group_commit(sessions: sessionmaker[Session]) -> _GroupCommit:
    with _groups_lock:
        group = _groups.get(sessions)
        if group is None:
            group = _groups[sessions] = _GroupCommit(sessions)
        return group


def _record_group(sessions: sessionmaker[Session], group: list[_ToRecord]) -> None:
    """``_record_one`` for each of ``group`` in one transaction (the same outcomes: an
    unknown product fails its own call, a version at or below the stored one is stale, a
    webhook id recorded before, or earlier in the group, a duplicate). Raises when the
    transaction fails (nothing is then written); results are set only after the commit."""
    results: list[tuple[_ToRecord, Recorded | UnknownProduct]] = []
    with transaction(sessions) as session:
        upserts = [it.event for it in group if isinstance(it.event, OrderUpserted)]
        wanted = {line.sku for e in upserts for line in e.order.lines}
        skus = set(session.scalars(select(Product.sku).where(Product.sku.in_(wanted))))
        order_ids = {it.event.order.id for it in group}
        tombstones = select(OrderTombstone.order_id, OrderTombstone.version).where(
            OrderTombstone.order_id.in_(order_ids)
        )
        high: dict[str, int] = {k: v for k, v in session.execute(tombstones)}
        # The stored order's version wins over a tombstone (``high_water``).
        stored_orders = select(Order.id, Order.version).where(Order.id.in_(order_ids))
        high |= {k: v for k, v in session.execute(stored_orders)}
        keys = {(it.source, it.webhook_id) for it in group}
        recorded = select(InboxEvent.source, InboxEvent.webhook_id).where(
            InboxEvent.webhook_id.in_({w for _, w in keys})
        )
        seen = {(src, w) for src, w in session.execute(recorded)}
        stale_rows: list[tuple[_ToRecord, int]] = []
        for it in group:
            event = it.event
            order_id, version = event.order.id, event.order.version
            if isinstance(event, OrderUpserted):
                bad = next(
                    (i for i, ln in enumerate(event.order.lines) if ln.sku not in skus), None
                )
                if bad is not None:
                    sku = event.order.lines[bad].sku
                    results.append((it, UnknownProduct(f"order.lines[{bad}].sku", sku)))
                    continue
            if (it.source, it.webhook_id) in seen:
                results.append((it, Recorded("duplicate", order_id, version)))
                continue
            seen.add((it.source, it.webhook_id))
            stored = high.get(order_id)
            stale = stored is not None and version <= stored
            session.add(
                InboxEvent(
                    source=it.source,
                    webhook_id=it.webhook_id,
                    event_type=event.type,
                    order_id=order_id,
                    order_version=version,
                    outcome="stale" if stale else RECEIVED,
                    raw=it.raw,
                    event=event.model_dump(mode="json") | ({"ref": it.ref} if it.ref else {}),
                )
            )
            if stale:
                assert stored is not None
                stale_rows.append((it, stored))
            results.append((it, Recorded("stale" if stale else "accepted", order_id, version)))
        session.flush()
        for it, stored in stale_rows:
            record_stale(
                session,
                order_id=it.event.order.id,
                version=it.event.order.version,
                high=stored,
                webhook_id=it.webhook_id,
                actor=it.actor,
            )
    for it, outcome in results:
        it.lead = False
        if isinstance(outcome, UnknownProduct):
            it.error = outcome
        else:
            it.result = outcome


def has_received(session: Session) -> bool:
    """Whether any received event waits for the worker."""
    return bool(session.scalar(select(exists().where(InboxEvent.outcome == RECEIVED))))


@dataclass
class Intake:
    """What one round of ``apply_received`` did."""

    applied: list[GateResult] = field(default_factory=list)
    parked: list[GateResult] = field(default_factory=list)
    stale: int = 0
    failed: int = 0
    more: bool = False  # orders were left for the next round

    @property
    def changes(self) -> list[GateResult]:
        """The results that parked or auto-approved a change (screens hear of those)."""
        return [r for r in self.applied + self.parked if r.change_id is not None]

    def merged(self, later: Intake) -> Intake:
        """This round and a ``later`` one as one (``more`` is the later round's)."""
        return Intake(
            applied=self.applied + later.applied,
            parked=self.parked + later.parked,
            stale=self.stale + later.stale,
            failed=self.failed + later.failed,
            more=later.more,
        )

    def triggers(self) -> list[str]:
        """How the replan names what the intake applied."""
        return [f"crm {r.order_id} v{r.version}" for r in self.applied]


def apply_received(
    sessions: sessionmaker[Session],
    *,
    gate: Gate | None,
    actor: str = "crm",
    max_orders: int = INTAKE_BATCH_ORDERS,
    on_change: Callable[[GateResult], None] | None = None,
) -> Intake:
    """Apply received CRM events, oldest order first, each order's newest version.

    Call it where no other applier runs at the same time (the loop's duty lock). An order
    whose apply fails is left ``received`` for the next round (the others go on); after
    ``MAX_APPLY_ATTEMPTS`` it is given up as ``failed`` with a dead letter. ``on_change``
    hears each parked or auto-approved change after its commit.
    """
    with sessions() as session:
        rows = session.execute(
            select(InboxEvent.id, InboxEvent.order_id, InboxEvent.order_version)
            .where(InboxEvent.outcome == RECEIVED)
            .order_by(InboxEvent.id)
        ).all()
    by_order: dict[str, list[tuple[int, int]]] = {}
    for row_id, order_id, version in rows:
        by_order.setdefault(order_id or "", []).append((version or 0, row_id))
    more = len(by_order) > max_orders
    winners: list[_Winner] = []
    for order_id, received in list(by_order.items())[:max_orders]:
        # The newest version wins; among equal versions the first to arrive.
        received.sort(key=lambda vr: (-vr[0], vr[1]))
        (version, winner), older = received[0], [row_id for _, row_id in received[1:]]
        winners.append(_Winner(order_id, version, winner, older))
    if gate is not None and len(winners) > 1:
        together = _apply_together(sessions, winners, gate, actor)
        if together is not None:
            together.more = more
            return together
    intake = Intake(more=more)
    for order_id, version, winner, older in winners:
        try:
            with transaction(sessions) as session:
                intake.stale += _mark_superseded(session, older, order_id, version, actor)
                result = _apply_one(session, winner, gate, actor)
        except UnknownProduct as exc:
            _give_up(sessions, winner, "rejected", "unknown_product", str(exc))
            intake.failed += 1
            continue
        except Exception as exc:  # one bad order must not stop the others
            log.exception("could not apply CRM event %s (%s v%s)", winner, order_id, version)
            if _count_attempt(sessions, winner) >= MAX_APPLY_ATTEMPTS:
                _give_up(sessions, winner, "failed", "apply_failed", repr(exc)[:2000])
            intake.failed += 1
            continue
        if result is None:
            continue
        if result.outcome == "applied":
            intake.applied.append(result)
        elif result.outcome == "pending_approval":
            intake.parked.append(result)
        else:
            intake.stale += 1
        if on_change is not None and result.change_id is not None:
            on_change(result)
    return intake


class _Winner(NamedTuple):
    """An order's newest received version in a round, and its older received rows."""

    order_id: str
    version: int
    inbox_id: int
    older: list[int]


class _GateNeeded(Exception):
    """The round, applied together, moves someone past a promise: gate it order by order."""


def _apply_together(
    sessions: sessionmaker[Session], winners: list[_Winner], gate: Gate, actor: str
) -> Intake | None:
    """Apply a round's newest versions in one transaction when, all applied, they push no
    other order past its promise (None: nothing was written; gate them one by one).

    Why: the gate costs a whole-factory preview solve per event. A burst of changes that
    slips nobody, the common case, then costs one or two solves instead of one per order.
    """
    try:
        with transaction(sessions) as session:
            savepoint = session.begin_nested()
            intake = _apply_all(session, winners, actor)
            changed = {r.order_id for r in intake.applied}
            if not changed:
                savepoint.commit()
                return intake
            session.flush()
            now = gate.now()
            after = planned_ends(session, gate.live, now, gate.window)
            if not _slipped(session, changed, before={}, after=after):
                savepoint.commit()
                return intake
            # Someone ends past a promise: is it the round's doing, or late anyway?
            savepoint.rollback()
            session.expunge_all()  # see apply_gated: rows the savepoint made may linger
            before = planned_ends(session, gate.live, now, gate.window)
            if _slipped(session, changed, before=before, after=after):
                raise _GateNeeded
            return _apply_all(session, winners, actor)
    except _GateNeeded:
        return None
    except (ProblemError, UnknownProduct):
        return None  # the one-by-one path says which order and why
    except Exception:
        log.exception("applying %d orders together failed; one by one instead", len(winners))
        return None


def _apply_all(session: Session, winners: list[_Winner], actor: str) -> Intake:
    """Apply each winner without the gate, in the caller's transaction.

    The round's rows are read and locked in a few queries first (``_Batch``); an event
    that creates an order nothing is known of goes the short way (``_create``, no query of
    its own, flushed with the others), any other through ``apply_crm_event`` as before.
    """
    intake = Intake()
    batch = _Batch.load(session, winners)
    for w in winners:
        intake.stale += _mark_superseded(session, w.older, w.order_id, w.version, actor)
        inbox = batch.inbox.get(w.inbox_id)
        event = batch.events.get(w.inbox_id)
        if inbox is None:  # another applier got to it first
            continue
        if event is not None and batch.creates(event):
            result: GateResult | None = _create(session, batch, inbox, event, actor)
        else:
            batch.insert_created(session)  # what it reads (a customer, say) is then there
            result = _apply_one(session, w.inbox_id, None, actor)
        if result is None:
            continue
        if result.outcome == "applied":
            intake.applied.append(result)
        else:
            intake.stale += 1
    batch.insert_created(session)
    return intake


@dataclass
class _Batch:
    """What a round's events need to know, read (and the inbox rows locked) up front."""

    inbox: dict[int, InboxEvent]  # the round's rows still received, locked
    events: dict[int, OrderUpserted | OrderCancelled]  # their canonical events
    known: set[str]  # order ids stored, tombstoned or with a pending change
    skus: set[str]  # the products the factory knows (of those the events name)
    customers: dict[str, Customer]
    # Rows of the orders ``_create`` made, not yet inserted (``insert_created``).
    new_customers: dict[str, str] = field(default_factory=dict)  # id -> name
    new_orders: list[dict[str, Any]] = field(default_factory=list)
    new_lines: list[dict[str, Any]] = field(default_factory=list)
    new_work_orders: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, session: Session, winners: list[_Winner]) -> _Batch:
        ids = [w.inbox_id for w in winners]
        rows = session.scalars(
            select(InboxEvent)
            .where(InboxEvent.id.in_(ids), InboxEvent.outcome == RECEIVED)
            .order_by(InboxEvent.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).all()
        inbox = {r.id: r for r in rows}
        events: dict[int, OrderUpserted | OrderCancelled] = {}
        for r in rows:
            try:
                events[r.id] = parse_crm_event(
                    r.event if r.event is not None else json.loads(r.raw)
                )
            except Exception:  # noqa: BLE001 - the one-by-one path says what is wrong
                continue
        order_ids = [w.order_id for w in winners]
        known = set(session.scalars(select(Order.id).where(Order.id.in_(order_ids))))
        known |= set(
            session.scalars(
                select(OrderTombstone.order_id).where(OrderTombstone.order_id.in_(order_ids))
            )
        )
        known |= set(
            session.scalars(
                select(PendingChange.order_id).where(
                    PendingChange.order_id.in_(order_ids), PendingChange.status == "pending"
                )
            )
        )
        upserts = [e for e in events.values() if isinstance(e, OrderUpserted)]
        wanted = {line.sku for e in upserts for line in e.order.lines}
        skus = set(session.scalars(select(Product.sku).where(Product.sku.in_(wanted))))
        customer_ids = {e.order.customer.id for e in upserts}
        customers = {
            c.id: c for c in session.scalars(select(Customer).where(Customer.id.in_(customer_ids)))
        }
        return cls(inbox, events, known, skus, customers)

    def insert_created(self, session: Session) -> None:
        """Insert the created orders' customers, orders, lines and work orders, a statement
        per table (ORM bulk INSERT: the columns' defaults apply as for one ``add`` each).

        Why: the unit of work spent most of a round of new orders on their objects'
        relationship bookkeeping (a line and a work order collection each)."""
        if self.new_customers:
            rows = [{"id": k, "name": v} for k, v in self.new_customers.items()]
            session.execute(insert(Customer), rows)
        if self.new_orders:
            session.execute(insert(Order), self.new_orders)
            session.execute(insert(OrderLine), self.new_lines)
            session.execute(insert(WorkOrder), self.new_work_orders)
        self.new_customers, self.new_orders = {}, []
        self.new_lines, self.new_work_orders = [], []

    def creates(self, event: OrderUpserted | OrderCancelled) -> bool:
        """Whether the event simply creates an order of which nothing is known yet."""
        return (
            isinstance(event, OrderUpserted)
            and event.order.id not in self.known
            and event.order.status is None
            and all(line.sku in self.skus for line in event.order.lines)
        )


def _create(
    session: Session,
    batch: _Batch,
    inbox: InboxEvent,
    event: OrderUpserted | OrderCancelled,
    actor: str,
) -> GateResult:
    """What ``apply_crm_event`` does for an order created (``_Batch.creates``), without a
    query of its own: the customer, the order, its lines, a work order per line (rows for
    ``_Batch.insert_created``), the audit entry and the inbox row's outcome."""
    assert isinstance(event, OrderUpserted)
    o = event.order
    customer = batch.customers.get(o.customer.id)
    if customer is None:
        batch.new_customers[o.customer.id] = o.customer.name
    elif customer.name != o.customer.name:
        customer.name = o.customer.name
    lines = [(i + 1, line.sku, line.qty) for i, line in enumerate(o.lines)]
    batch.new_orders.append(
        {
            "id": o.id,
            "customer_id": o.customer.id,
            "version": o.version,
            "status": "open",
            "priority": o.priority,
            "requested_date": o.requested_date,
            "sales_rep": o.sales_rep,
            "reported": {},
        }
    )
    batch.new_lines.extend(
        {"order_id": o.id, "line_no": n, "sku": s, "qty": q} for n, s, q in lines
    )
    batch.new_work_orders.extend(
        {"id": work_order_id(o.id, n), "order_id": o.id, "line_no": n, "sku": s, "qty": q}
        for n, s, q in lines
    )
    batch.known.add(o.id)
    inbox.outcome = "applied"
    changes: dict[str, Any] = {"created": True, "lines": [[s, q] for _, s, q in lines]}
    record(
        session,
        actor=actor,
        action="order.created",
        entity="order",
        entity_id=o.id,
        details={"version": o.version, "webhook_id": inbox.webhook_id, "changes": changes},
    )
    return GateResult("applied", o.id, o.version, changes)


def _slipped(
    session: Session,
    changed: set[str],
    *,
    before: dict[str, datetime],
    after: dict[str, datetime],
) -> bool:
    """Whether an order outside ``changed`` ends past its promise (moved by the change when
    ``before`` is given, see ``impact_of``)."""
    return any(
        i["order_id"] not in changed
        for i in impact_of(session, order_id="", before=before, after=after)
    )


def _apply_one(session: Session, inbox_id: int, gate: Gate | None, actor: str) -> GateResult | None:
    """Apply one received event (None: another applier got to it first)."""
    # Why the row lock: should two appliers ever overlap (a duty lock that expired), the
    # second waits here and then finds the event no longer received.
    inbox = session.get(InboxEvent, inbox_id, with_for_update=True, populate_existing=True)
    if inbox is None or inbox.outcome != RECEIVED:
        return None
    # Rows recorded before the canonical event was kept carry only their raw body.
    event = parse_crm_event(inbox.event if inbox.event is not None else json.loads(inbox.raw))
    return apply_gated(
        session,
        gate=gate,
        event=event,
        source=inbox.source,
        webhook_id=inbox.webhook_id,
        raw=inbox.raw,
        actor=actor,
        inbox_id=inbox_id,
    )


def _mark_superseded(
    session: Session, row_ids: list[int], order_id: str, newest: int, actor: str
) -> int:
    """Older received versions of an order are stale once a newer one is received."""
    if not row_ids:
        return 0
    older = session.execute(
        select(InboxEvent.webhook_id, InboxEvent.order_version).where(InboxEvent.id.in_(row_ids))
    ).all()
    session.execute(update(InboxEvent).where(InboxEvent.id.in_(row_ids)).values(outcome="stale"))
    for webhook_id, version in older:
        record_stale(
            session,
            order_id=order_id,
            version=version or 0,
            high=newest,
            webhook_id=webhook_id,
            actor=actor,
        )
    return len(row_ids)


def _count_attempt(sessions: sessionmaker[Session], inbox_id: int) -> int:
    with transaction(sessions) as session:
        session.execute(
            update(InboxEvent)
            .where(InboxEvent.id == inbox_id)
            .values(attempts=InboxEvent.attempts + 1)
        )
        attempts = session.scalar(select(InboxEvent.attempts).where(InboxEvent.id == inbox_id))
        return int(attempts or 0)


def _give_up(
    sessions: sessionmaker[Session], inbox_id: int, outcome: str, reason: str, detail: str
) -> None:
    """Stop retrying a received event: mark it and keep it as a dead letter."""
    with transaction(sessions) as session:
        inbox = session.get(InboxEvent, inbox_id)
        if inbox is None:
            return
        inbox.outcome = outcome
        session.add(
            DeadLetter(
                source=inbox.source,
                topic="inbox",
                reason=reason,
                detail=json.dumps(
                    {"webhook_id": inbox.webhook_id, "inbox_id": inbox_id, "error": detail},
                    ensure_ascii=False,
                ),
                payload=inbox.raw,
            )
        )
    log.error("CRM event %s given up (%s): %s", inbox_id, reason, detail)
