"""What the read routes answer, as typed models, so the OpenAPI document tells the truth.

The read models in ``loopline.models`` build plain dicts (they are also what the live stream
and the screens read); FastAPI checks each answer against these models (``response_model``),
and ``extra="forbid"`` makes a key added to a view without adding it here fail the API tests
instead of vanishing from the answer or from the documentation.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerRef(_View):
    id: str
    name: str


class OrderLineView(_View):
    sku: str
    qty: int


class RiskView(_View):
    level: str | None = Field(
        description="on_track, at_risk or late while open; done when completed; else null"
    )
    reason: str | None


class WorkOrderView(_View):
    id: str
    line: str | None
    product: str
    qty: int
    good: int
    scrap: int
    status: str
    planned_start: str | None = Field(description="ISO 8601, UTC")
    planned_end: str | None = Field(description="ISO 8601, UTC")
    eta: str | None = Field(description="ISO 8601, UTC; null before the line reports")


class HistoryEntry(_View):
    at: str | None = Field(description="ISO 8601, UTC")
    actor: str
    action: str
    details: Any


class OrderView(_View):
    id: str
    version: int
    customer: CustomerRef
    status: str
    priority: str
    lines: list[OrderLineView]
    requested_date: str = Field(description="YYYY-MM-DD")
    promised_date: str | None = Field(description="YYYY-MM-DD; null until planned")
    eta: str | None = Field(description="ISO 8601, UTC; null when not open")
    progress: float = Field(ge=0.0, le=1.0)
    risk: RiskView
    sales_rep: str | None
    work_orders: list[WorkOrderView]
    history: list[HistoryEntry] = Field(description="newest first")


class LineView(_View):
    id: str
    name: str
    site: str
    state: str = Field(description="running, idle, setup, down or unavailable")
    reason: str | None
    since: str | None
    last_seen: str | None
    work_order: str | None
    rate_uph: float | None
    eta: str | None
    queue: list[Any]
    rates: dict[str, float] = Field(description="units per hour by product SKU")


class PlanView(_View):
    revision: int
    created_at: str | None
    plan_start: str | None
    trigger: str
    solver: str
    solve_ms: float
    total_weighted_tardiness_h: float
    assignments: Any
    diff: Any


class AlertView(_View):
    id: str
    key: str
    kind: str
    severity: str
    message: str
    entity: str | None
    entity_id: str | None
    role: str | None
    status: str
    opened_at: str | None
    acked_at: str | None
    acked_by: str | None
    resolved_at: str | None
    details: Any
    # Escalation (models/escalation.py); null for an alert no policy escalates.
    escalation_level: int | None = None
    escalate_at: str | None = Field(default=None, description="ISO 8601; next level due")
    snoozed_until: str | None = Field(default=None, description="ISO 8601")
    resolved_by: str | None = None
    resolve_reason: str | None = None


class NotificationView(_View):
    id: int
    event: str
    severity: str
    title: str
    body: str
    created_at: str | None = Field(description="ISO 8601, UTC")
    read_at: str | None = Field(description="ISO 8601, UTC; null while unread")
    recipient: str = Field(description="as the rule named it: role:x, person:y or an address")
    address: str = Field(description="the person's id (or role:x when nobody holds the role)")
    alert_id: int | None
    rule: str
    details: Any
