"""Read models: orders, lines and the plan as the API shows them (SQL joined with live state)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from loopline.models.audit import history
from loopline.models.clock import iso
from loopline.models.live import LiveState
from loopline.models.records import Customer, Line, Order, PlanRevision
from loopline.models.users import OrderScope

FINISHED = ("completed", "delivered")  # made (and shipped): nothing left at risk


def order_view(
    order: Order,
    live_order: dict[str, Any] | None,
    live_wos: dict[str, dict[str, Any] | None],
    history_rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """One order: what was asked, what we promised, where it stands, and how it got there."""
    lv = live_order or {}
    open_ = order.status in ("open", "in_progress")
    wos = []
    for wo in order.work_orders:
        lw = live_wos.get(wo.id) or {}
        wos.append(
            {
                "id": wo.id,
                "line": lw.get("line") or wo.line_id,
                "product": wo.sku,
                "qty": wo.qty,
                "good": max(int(lw.get("good") or 0), wo.good),
                "scrap": max(int(lw.get("scrap") or 0), wo.scrap),
                "status": lw.get("status") if lw and wo.status != "cancelled" else wo.status,
                "planned_start": iso(wo.planned_start),
                "planned_end": iso(wo.planned_end),
                "eta": lw.get("eta"),
            }
        )
    return {
        "id": order.id,
        "version": order.version,
        "customer": {"id": order.customer_id, "name": order.customer.name},
        "status": lv.get("status", order.status) if open_ else order.status,
        "priority": order.priority,
        "lines": [{"sku": ln.sku, "qty": ln.qty} for ln in order.lines],
        "requested_date": order.requested_date.isoformat(),
        "promised_date": order.promised_date.isoformat() if order.promised_date else None,
        "eta": lv.get("eta") if open_ else None,
        "progress": lv.get("progress", 1.0 if order.status in FINISHED else 0.0),
        "risk": {
            "level": lv.get("risk", "on_track")
            if open_
            else ("done" if order.status in FINISHED else None),
            "reason": lv.get("risk_reason") if open_ else None,
        },
        "sales_rep": order.sales_rep,
        "work_orders": wos,
        "history": history_rows,
    }


def _histories(session: Session, order_ids: list[str], limit: int) -> dict[str, list[Any]]:
    entries = history(session, entity="order", entity_ids=order_ids, limit=limit)
    return {
        order_id: [
            {"at": iso(h.at), "actor": h.actor, "action": h.action, "details": h.details}
            for h in rows
        ]
        for order_id, rows in entries.items()
    }


def get_order(
    session: Session, live: LiveState, *, order_id: str, scope: OrderScope | None = None
) -> dict[str, Any] | None:
    """The full view of one order, or None when there is no such order (or it is out of
    ``scope``)."""
    order = session.get(Order, order_id)
    if order is None or (scope is not None and not scope.allows_order(order)):
        return None
    wo_ids = [w.id for w in order.work_orders]
    live_wos = dict(zip(wo_ids, live.get_many("work_order", wo_ids), strict=True))
    return order_view(
        order,
        live.get("order", order_id),
        live_wos,
        _histories(session, [order_id], 200).get(order_id, []),
    )


def list_orders(
    session: Session,
    live: LiveState,
    *,
    status: str | None = None,
    customer: str | None = None,
    limit: int = 500,
    history_limit: int = 20,
    scope: OrderScope | None = None,
) -> list[dict[str, Any]]:
    """Orders by id, filtered by status or by a customer id or name substring (and to
    ``scope`` when given)."""
    q = select(Order).order_by(Order.id).limit(limit)
    if scope is not None:
        q = q.where(scope.clause())
    if status:
        q = q.where(Order.status == status)
    if customer:
        needle = f"%{customer.lower()}%"
        q = q.join(Customer).where(
            or_(func.lower(Customer.id).like(needle), func.lower(Customer.name).like(needle))
        )
    orders = list(session.scalars(q))
    live_orders = live.get_many("order", [o.id for o in orders])
    wo_ids = [w.id for o in orders for w in o.work_orders]
    live_wos = dict(zip(wo_ids, live.get_many("work_order", wo_ids), strict=True))
    histories = _histories(session, [o.id for o in orders], history_limit)
    return [
        order_view(o, lv, live_wos, histories.get(o.id, []))
        for o, lv in zip(orders, live_orders, strict=True)
    ]


def list_lines(session: Session, live: LiveState) -> list[dict[str, Any]]:
    """Every line: where it is, what it can make at what rate, and its live state."""
    lines = list(session.scalars(select(Line).order_by(Line.id)))
    out = []
    for ln, lv in zip(lines, live.get_many("line", [ln.id for ln in lines]), strict=True):
        lv = lv or {}
        out.append(
            {
                "id": ln.id,
                "name": ln.name,
                "site": ln.site_id,
                "state": lv.get("state", "unavailable"),
                "reason": lv.get("reason"),
                "since": lv.get("since"),
                "last_seen": lv.get("last_seen"),
                "work_order": lv.get("work_order"),
                "rate_uph": lv.get("rate_uph"),
                "eta": lv.get("eta"),
                "queue": lv.get("queue", []),
                "rates": {r.sku: r.units_per_hour for r in ln.rates},
            }
        )
    return out


def current_plan(session: Session) -> dict[str, Any] | None:
    """The newest plan revision with its assignments and its diff to the one before."""
    rev = session.scalar(select(PlanRevision).order_by(PlanRevision.id.desc()).limit(1))
    if rev is None:
        return None
    return {
        "revision": rev.id,
        "created_at": iso(rev.created_at),
        "plan_start": iso(rev.plan_start),
        "trigger": rev.trigger,
        "solver": rev.solver,
        "solve_ms": rev.solve_ms,
        "total_weighted_tardiness_h": rev.total_weighted_tardiness_h,
        "assignments": rev.assignments,
        "diff": rev.diff,
    }
