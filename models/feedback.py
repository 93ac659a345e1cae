"""What flows back to the CRM: each real change of an order's promise, ETA, risk or status.

Live values are checkpointed into SQL here, and an outbox row is written in the same
transaction as the change it reports. ETAs are reported by the day (and with every risk
change), so a line's minute-by-minute progress does not flood the CRM.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, lazyload

from loopline.models.audit import record
from loopline.models.clock import utcnow
from loopline.models.live import LiveState
from loopline.models.orders import OPEN_STATUSES
from loopline.models.outbox import enqueue
from loopline.models.purchasing import consume_materials
from loopline.models.quarantine import Findings, count_problem
from loopline.models.records import Order

FEEDBACK_EVENT = "order.updated"
FEEDBACK_STEP = "feedback"  # checkpointing live counters into SQL, and the feedback
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


def sync_feedback(
    session: Session,
    live: LiveState,
    *,
    findings: Findings | None = None,
    isolate: bool = False,
    track: Callable[[str], str] | None = None,
) -> int:
    """Checkpoint live progress into SQL and queue feedback for every changed order.

    An order with a work order whose live counters are not believable is left out (named
    in ``findings``); with ``isolate`` each order also gets its own savepoint, so one whose
    data SQL refuses is left out alone (``run_isolated`` retries a failed sweep so).
    ``track`` makes the customer tracking link sent with each promised order.
    """
    findings = findings if findings is not None else Findings()
    since = utcnow() - CLOSED_GRACE
    orders = list(
        session.scalars(
            select(Order)
            .where(or_(Order.status.in_(OPEN_STATUSES), Order.updated_at >= since))
            .options(lazyload(Order.lines))  # not reported: no object per order line
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
        order_made: dict[str, float] = defaultdict(float)
        sent = False
        with findings.unit(session, FEEDBACK_STEP, "order", order.id, isolate=isolate):
            sent = _sync_order(
                session, order, live_orders.get(order.id), live_wos, order_made, findings, track
            )
        if findings.is_flagged(FEEDBACK_STEP, "order", order.id):
            continue
        queued += sent
        for sku, n in order_made.items():
            made[sku] += n
    consume_materials(session, made)
    findings.finished(FEEDBACK_STEP)
    return queued


def _sync_order(
    session: Session,
    order: Order,
    lv: dict[str, Any] | None,
    live_wos: dict[str, dict[str, Any] | None],
    made: dict[str, float],
    findings: Findings,
    track: Callable[[str], str] | None = None,
) -> bool:
    """Checkpoint one order and queue its feedback if it changed; whether it was queued."""
    bad = [
        (wo, why)
        for wo in order.work_orders
        if wo.status != "cancelled" and (why := count_problem(live_wos.get(wo.id) or {}, wo.qty))
    ]
    for wo, why in bad:  # left out whole: its feedback would report what was not checkpointed
        findings.flag(FEEDBACK_STEP, "work_order", wo.id, why, order=order.id)
    if bad:
        return False
    _checkpoint(session, order, lv, live_wos, made)
    now_state = reportable(order, lv)
    if {k: order.reported.get(k) for k in now_state} == now_state:
        return False
    payload = {
        "order_id": order.id,
        "version": order.version,
        **now_state,
        "eta": (lv or {}).get("eta") if order.status in OPEN_STATUSES else None,
        "risk_reason": (lv or {}).get("risk_reason"),
        "progress": (lv or {}).get(
            "progress", 1.0 if order.status in ("completed", "delivered") else 0.0
        ),
        "changed": sorted(k for k in now_state if order.reported.get(k) != now_state[k]),
    }
    if track is not None and order.promised_date is not None:
        payload["tracking_url"] = track(order.id)
    enqueue(session, event_type=FEEDBACK_EVENT, order_id=order.id, payload=payload)
    order.reported = {**order.reported, **now_state}
    return True


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
