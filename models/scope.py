"""Data scope: what a person limited to some customers' orders (a sales rep) may see.

Everything that names an order or a work order outside the scope is left out or blanked:
orders, their work orders, lines' current job and queue, plan rows, alerts about them,
pending changes, quote slips, and the live changes of all of these. Factory facts that
name no order (lines' states and rates, materials) stay visible. Unknown kinds of live
change are left out for a scoped person: a new entity must say how it is scoped first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from loopline.models.live import Change, LiveState
from loopline.models.records import Order, WorkOrder
from loopline.models.users import OrderScope

# What a scoped person is shown instead of a plan trigger (it may name anyone's order).
HIDDEN_TRIGGER = "replan"
# Order-naming keys in alert details and plan rows.
ORDER_KEYS = ("order", "order_id")
JOB_KEYS = ("job", "work_order")


@dataclass(frozen=True)
class Visible:
    """The ids of the orders and work orders in a person's scope."""

    orders: frozenset[str]
    work_orders: frozenset[str]

    def row_ok(self, row: dict[str, Any]) -> bool:
        """Whether a row naming an order or job (plan row, alert details) is in scope."""
        for key in ORDER_KEYS:
            if row.get(key) is not None and row[key] not in self.orders:
                return False
        for key in JOB_KEYS:
            if row.get(key) is not None and row[key] not in self.work_orders:
                return False
        return True


def visible(session: Session, scope: OrderScope | None) -> Visible | None:
    """The orders and work orders ``scope`` lets one see (None: no scope, everything)."""
    if scope is None:
        return None
    orders = frozenset(session.scalars(select(Order.id).where(scope.clause())))
    wos = frozenset(
        session.scalars(
            select(WorkOrder.id).join(Order, WorkOrder.order_id == Order.id).where(scope.clause())
        )
    )
    return Visible(orders, wos)


def alert_ok(alert: dict[str, Any], vis: Visible | None) -> bool:
    """Whether an alert (its view) is one the person may see."""
    if vis is None:
        return True
    entity, entity_id = alert.get("entity"), alert.get("entity_id")
    if entity == "order" and entity_id not in vis.orders:
        return False
    if entity == "work_order" and entity_id not in vis.work_orders:
        return False
    details = alert.get("details")
    return not isinstance(details, dict) or vis.row_ok(details)


def scoped_line(line: dict[str, Any], vis: Visible | None) -> dict[str, Any]:
    """A line's view (or live fields) without the jobs of orders out of scope."""
    if vis is None:
        return line
    out = dict(line)
    if "work_order" in out and out["work_order"] not in vis.work_orders:
        out["work_order"] = None
        if "eta" in out:
            out["eta"] = None
    if isinstance(out.get("queue"), list):
        out["queue"] = [w for w in out["queue"] if w in vis.work_orders]
    return out


def scoped_plan(plan: dict[str, Any], vis: Visible | None) -> dict[str, Any]:
    """A plan revision's view with only the rows of orders in scope."""
    if vis is None:
        return plan
    out = dict(plan)
    out["trigger"] = HIDDEN_TRIGGER
    out["assignments"] = [a for a in plan.get("assignments") or [] if vis.row_ok(a)]
    diff = dict(plan.get("diff") or {})
    for key in ("moved", "late", "at_risk"):
        diff[key] = [r for r in diff.get(key) or [] if isinstance(r, dict) and vis.row_ok(r)]
    for key in ("added", "removed"):
        diff[key] = [j for j in diff.get(key) or [] if j in vis.work_orders]
    if "trigger" in diff:
        diff["trigger"] = HIDDEN_TRIGGER
    out["diff"] = diff
    return out


def scoped_slips(slips: Iterable[dict[str, Any]], vis: Visible | None) -> list[dict[str, Any]]:
    """A quote's slipping orders: those out of scope keep their numbers but not their names."""
    if vis is None:
        return list(slips)
    return [
        s
        if s.get("order_id") in vis.orders
        else {**s, "order_id": None, "work_order": None, "promised_date": None}
        for s in slips
    ]


class LiveScope:
    """Filters a stream of live changes to a person's scope.

    An order or work order not seen before is looked up by its key (a new order, or a
    replan's new work orders) and remembered as in or out of scope; everything is read
    again every ``max_age_s`` anyway (an order moved to another customer).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        scope: OrderScope,
        *,
        max_age_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._scope = scope
        self._max_age_s = max_age_s
        self._clock = clock
        self._orders: set[str] = set()
        self._wos: set[str] = set()
        self._read_at: float | None = None
        self._out: set[tuple[str, str]] = set()  # (entity, id) known to be out of scope

    def refresh(self) -> Visible:
        """Read the visible ids now."""
        with self._sessions() as session:
            vis = visible(session, self._scope)
        assert vis is not None
        self._orders, self._wos = set(vis.orders), set(vis.work_orders)
        self._read_at = self._clock()
        self._out.clear()
        return vis

    def _lookup(self, entity: str, ident: str) -> None:
        """Decide one order or work order not seen yet (one primary-key read)."""
        with self._sessions() as session:
            if entity == "order":
                order = session.get(Order, ident)
            else:
                wo = session.get(WorkOrder, ident)
                order = session.get(Order, wo.order_id) if wo is not None else None
        if order is not None and self._scope.allows_order(order):
            (self._orders if entity == "order" else self._wos).add(ident)
            if entity == "work_order":
                self._orders.add(order.id)
        else:
            if len(self._out) > 100_000:  # a bound, not a policy
                self._out.clear()
            self._out.add((entity, ident))

    def _current(self, entity: str, ident: str | None) -> Visible:
        if self._read_at is None or self._clock() - self._read_at >= self._max_age_s:
            self.refresh()
        if ident is not None and entity in ("order", "work_order"):
            known = self._orders if entity == "order" else self._wos
            if ident not in known and (entity, ident) not in self._out:
                self._lookup(entity, ident)
        return Visible(frozenset(self._orders), frozenset(self._wos))

    def filter(self, change: Change) -> Change | None:
        """The change as the person may see it, or None when it is none of theirs."""
        entity = change.entity
        if entity == "order":
            return change if change.id in self._current("order", change.id).orders else None
        if entity == "work_order":
            order_id = change.new.get("order_id") or change.old.get("order_id")
            vis = self._current("work_order", change.id)
            ok = change.id in vis.work_orders or (order_id is not None and order_id in vis.orders)
            return change if ok else None
        if entity == "line":
            job = change.new.get("work_order") or change.old.get("work_order")
            vis = self._current("work_order", job)
            return replace(
                change, old=scoped_line(change.old, vis), new=scoped_line(change.new, vis)
            )
        if entity == "alert":
            vis = self._current("alert", None)
            view = change.new or change.old
            return change if alert_ok(view, vis) else None
        if entity == "change":
            order_id = change.new.get("order_id") or change.old.get("order_id")
            vis = self._current("order", order_id)
            return change if order_id in vis.orders else None
        if entity == "plan":
            new = {k: v for k, v in change.new.items() if k != "trigger"}
            return replace(change, new=new)
        return None


@dataclass(frozen=True)
class Acting:
    """Who the current request of a screen acts for: the name the audit records, their
    roles, and their scope (None: every order)."""

    name: str
    roles: tuple[str, ...] = ()
    scope: OrderScope | None = None


# Set by the pages' sign-in check (api/auth.py) for each page request, Dash callback and
# websocket; read by the screens (their live state below, the admin screen's checks).
_acting: ContextVar[Acting | None] = ContextVar("loopline_acting", default=None)


def acting() -> Acting | None:
    """Who the current request acts for (None: outside a signed-in request)."""
    return _acting.get()


def acting_scope() -> OrderScope | None:
    """The scope of whoever the current request acts for (None: no limit)."""
    who = _acting.get()
    return who.scope if who is not None else None


def act_as(who: Acting | None) -> Token[Acting | None]:
    """Make ``who`` the current request's person (undo with ``stop_acting``)."""
    return _acting.set(who)


def stop_acting(token: Token[Acting | None]) -> None:
    """Undo :func:`act_as`."""
    _acting.reset(token)


class ScopedLive:
    """The live state as the current request's person may see it: reads of orders, work
    orders, lines and alerts are filtered to :func:`acting_scope`; everything else (and
    every write) goes to the live state unchanged. The screens read through this."""

    def __init__(
        self, live: LiveState, sessions: sessionmaker[Session], *, cache_s: float = 2.0
    ) -> None:
        self._live = live
        self._sessions = sessions
        self._cache_s = cache_s
        self._cache: dict[OrderScope, tuple[Visible, float]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._live, name)

    def _visible(self) -> Visible | None:
        scope = acting_scope()
        if scope is None:
            return None
        hit = self._cache.get(scope)
        if hit is not None and time.monotonic() - hit[1] < self._cache_s:
            return hit[0]
        with self._sessions() as session:
            vis = visible(session, scope)
        assert vis is not None
        if len(self._cache) > 1000:
            self._cache.clear()
        self._cache[scope] = (vis, time.monotonic())
        return vis

    def _shown(
        self, entity: str, doc: dict[str, Any] | None, vis: Visible | None
    ) -> dict[str, Any] | None:
        if doc is None or vis is None:
            return doc
        ident = str(doc.get("id", ""))
        if entity == "order":
            return doc if ident in vis.orders else None
        if entity == "work_order":
            return doc if ident in vis.work_orders else None
        if entity == "line":
            return scoped_line(doc, vis)
        if entity == "alert":
            return doc if alert_ok(doc, vis) else None
        return doc

    def get(self, entity: str, entity_id: str) -> dict[str, Any] | None:
        """``LiveState.get``, scoped."""
        return self._shown(entity, self._live.get(entity, entity_id), self._visible())

    def get_many(self, entity: str, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """``LiveState.get_many``, scoped (an entry out of scope reads as missing)."""
        vis = self._visible()
        return [self._shown(entity, d, vis) for d in self._live.get_many(entity, ids)]

    def all(self, entity: str) -> list[dict[str, Any]]:
        """``LiveState.all``, scoped."""
        vis = self._visible()
        shown = (self._shown(entity, d, vis) for d in self._live.all(entity))
        return [d for d in shown if d is not None]

    def ids(self, entity: str) -> list[str]:
        """``LiveState.ids``, scoped."""
        vis = self._visible()
        found = self._live.ids(entity)
        if vis is None or entity not in ("order", "work_order"):
            return found
        keep = vis.orders if entity == "order" else vis.work_orders
        return [i for i in found if i in keep]


def visible_orders(session: Session, scope: OrderScope) -> frozenset[str]:
    """The ids of the orders ``scope`` may see."""
    seen = visible(session, scope)
    return seen.orders if seen is not None else frozenset()
