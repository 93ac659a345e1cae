"""The plan and approvals screen's read model: what it shows, read from SQL in one session.

Plain functions returning plain data (no Dash): the page formats and draws it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from sqlalchemy import select

from loopline.models.approvals import change_view, list_changes
from loopline.models.live import LiveState
from loopline.models.purchasing import open_purchase_requests
from loopline.models.records import Customer, Order
from loopline.models.views import current_plan, order_view

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

DECIDED_SHOWN = 5  # decided changes listed under the pending ones


class PlanChanges(TypedDict):
    """Pending changes (oldest first) and the latest decided ones."""

    pending: list[dict[str, Any]]
    decided: list[dict[str, Any]]


class PlanPage(TypedDict):
    """Everything the plan page shows, by section."""

    changes: PlanChanges
    requests: Any
    plan: dict[str, Any] | None


STORED_FIELDS = ("version", "priority", "requested_date", "lines", "customer", "promised_date")


def _stored_orders(session: Session, order_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What changes would change: the orders as stored now, in one query (a new order is
    missing)."""
    if not order_ids:
        return {}
    orders = session.scalars(select(Order).where(Order.id.in_(order_ids)))
    return {
        o.id: {k: view.get(k) for k in STORED_FIELDS}
        for o in orders
        for view in (order_view(o, None, {}, []),)
    }


def read_plan_page(sessions: sessionmaker[Session] | None, live: LiveState) -> PlanPage | None:
    """Pending changes (each with the stored order it would change and the customers its
    impact hits), the changes decided lately, open purchase requests and the newest plan
    revision; None when there is no database behind the screens."""
    if sessions is None:
        return None
    with sessions() as session:
        changes = [change_view(c) for c in list_changes(session)]
        # Oldest first: a change that arrives joins the end of the list, so the ones a
        # manager is reading do not move under the cursor.
        pending = [c for c in reversed(changes) if c["status"] == "pending"]
        decided = [c for c in changes if c["status"] != "pending"][:DECIDED_SHOWN]
        stored = _stored_orders(session, list(dict.fromkeys(c["order_id"] for c in pending)))
        hit = sorted({str(i["order_id"]) for c in pending for i in c.get("impact") or []})
        # From SQL: the live model has no record of an order that is not being made.
        customer = dict(
            session.execute(
                select(Order.id, Customer.name)
                .join(Customer, Order.customer_id == Customer.id)
                .where(Order.id.in_(hit))
            ).all()
        )
        requests = open_purchase_requests(session)
        plan = current_plan(session)
        current_assignments = (plan or {}).get("assignments") or []
    for c in pending:
        c["current"] = stored.get(c["order_id"])
        c["impact"] = [{**i, "customer": customer.get(i["order_id"])} for i in c["impact"] or []]
    if plan is not None:
        # The assignments are the Gantt's business (and long); here only their number.
        plan = {k: v for k, v in plan.items() if k != "assignments"}
        plan["jobs"] = len(current_assignments)
    return {
        "changes": {"pending": pending, "decided": decided},
        "requests": requests,
        "plan": plan,
    }
