"""What flows back to the CRM: each real change of an order's promise, ETA, risk or status.

Live values are checkpointed into SQL here, and an outbox row is written in the same
transaction as the change it reports. ETAs are reported by the day (and with every risk
change), so a line's minute-by-minute progress does not flood the CRM.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models.audit import record
from models.clock import utcnow
from models.live import LiveState
from models.orders import OPEN_STATUSES
from models.outbox import enqueue
from models.purchasing import consume_materials
from models.records import Order

FEEDBACK_EVENT = "order.updated"
# Closed orders stay in the sweep this long, so their final status is reported once.
CLOSED_GRACE = timedelta(days=2)


def reportable(order: Order, live_order: dict[str, Any] | None) -> dict[str, Any]:
    """The part of an order's state the CRM is told about when it changes."""
    lv = live_order or {}
    eta = lv.get("eta") if order.status in OPEN_STATUSES else None
    return {
        "status": order.status,
        "promised_date": order.promised_date.isoformat() if order.promised_date else None,
        "eta_date": eta[:10] if eta else None,
        "risk": lv.get("risk") if order.status in OPEN_STATUSES else None,
    }


def sync_feedback(session: Session, live: LiveState) -> int:
    """Checkpoint live progress into SQL and queue feedback for every changed order."""
    since = utcnow() - CLOSED_GRACE
    orders = list(
        session.scalars(
            select(Order).where(or_(Order.status.in_(OPEN_STATUSES), Order.updated_at >= since))
        )
    )
    live_orders = dict(
        zip([o.id for o in orders], live.get_many("order", [o.id for o in orders]), strict=True)
    )
    wo_ids = [w.id for o in orders for w in o.work_orders]
    live_wos = dict(zip(wo_ids, live.get_many("work_order", wo_ids), strict=True))
    queued = 0
    made: dict[str, float] = defaultdict(float)  # units made since the last sweep, per sku
    for order in orders:
        lv = live_orders.get(order.id)
        _checkpoint(session, order, lv, live_wos, made)
        now_state = reportable(order, lv)
        if {k: order.reported.get(k) for k in now_state} == now_state:
            continue
        payload = {
            "order_id": order.id,
            "version": order.version,
            **now_state,
            "eta": (lv or {}).get("eta") if order.status in OPEN_STATUSES else None,
            "risk_reason": (lv or {}).get("risk_reason"),
            "progress": (lv or {}).get("progress", 1.0 if order.status == "completed" else 0.0),
            "changed": sorted(k for k in now_state if order.reported.get(k) != now_state[k]),
        }
        enqueue(session, event_type=FEEDBACK_EVENT, order_id=order.id, payload=payload)
        order.reported = {**order.reported, **now_state}
        queued += 1
    consume_materials(session, made)
    return queued


def _checkpoint(
    session: Session,
    order: Order,
    lv: dict[str, Any] | None,
    live_wos: dict[str, dict[str, Any] | None],
    made: dict[str, float],
) -> None:
    for wo in order.work_orders:
        lw = live_wos.get(wo.id)
        if not lw or wo.status == "cancelled":
            continue
        good, scrap = int(lw.get("good") or 0), int(lw.get("scrap") or 0)
        if good > wo.good or scrap > wo.scrap:
            made[wo.sku] += max(good, wo.good) + max(scrap, wo.scrap) - wo.good - wo.scrap
            wo.good, wo.scrap = max(good, wo.good), max(scrap, wo.scrap)
        status = lw.get("status")
        if status in ("running", "done") and status != wo.status:
            wo.status = status
    if lv is None or order.status not in OPEN_STATUSES:
        return
    new_status = lv.get("status")
    if new_status in ("in_progress", "completed") and new_status != order.status:
        record(
            session,
            actor="shop-floor",
            action=f"order.{new_status}",
            entity="order",
            entity_id=order.id,
            details={"old": order.status, "new": new_status},
        )
        order.status = new_status
