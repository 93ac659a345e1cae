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


class ImpactEntry(_View):
    """An order whose promise a change would break."""

    order_id: str
    promised_date: str = Field(description="YYYY-MM-DD")
    planned_end_before: str | None = Field(description="ISO 8601, UTC")
    planned_end_after: str | None = Field(description="ISO 8601, UTC")
    slip_h: float = Field(description="hours past the end of the promised day")
    delay_h: float | None = Field(description="how much later than in the current plan")


class ChangeView(_View):
    id: int
    order_id: str
    version: int
    status: str = Field(description="pending, approved, rejected or superseded")
    impact: list[ImpactEntry]
    event: dict[str, Any] = Field(description="the canonical CRM event that waits")
    source: str
    webhook_id: str | None
    created_at: str | None = Field(description="ISO 8601, UTC")
    decided_at: str | None = Field(description="ISO 8601, UTC")
    decided_by: str | None
    note: str | None


class QuoteSlip(_View):
    order_id: str | None
    work_order: str
    slip_h: float
    old_end: str | None = Field(description="ISO 8601, UTC")
    new_end: str | None = Field(description="ISO 8601, UTC")
    promised_date: str | None = Field(description="YYYY-MM-DD")
    breaks_promise: bool


class QuotePlacement(_View):
    date: str = Field(description="YYYY-MM-DD: the date that would be promised")
    start: str | None = Field(description="ISO 8601, UTC")
    end: str | None = Field(description="ISO 8601, UTC")
    line: str | None
    meets_requested: bool


class PrioritizedPlacement(QuotePlacement):
    slips: list[QuoteSlip] = Field(description="the orders that would finish later")


class QuoteView(_View):
    sku: str
    qty: int
    requested_date: str = Field(description="YYYY-MM-DD")
    priority: str
    earliest: QuotePlacement = Field(description="moving nobody")
    prioritized: PrioritizedPlacement = Field(description="going first")


class WaitingJob(_View):
    job: str
    order: str | None


class PurchaseRequestView(_View):
    id: int
    material: str
    name: str
    unit: str
    qty: float
    needed_by: str | None = Field(description="ISO 8601, UTC")
    arrives_if_ordered_now: str | None = Field(description="ISO 8601, UTC")
    late_by_h: float
    jobs: list[WaitingJob]
    orders: list[str]
    plan_revision: int | None
    created_at: str | None = Field(description="ISO 8601, UTC")


class PurchaseOrderRef(_View):
    id: str
    qty: float
    arrives: str | None = Field(description="ISO 8601, UTC")


class MaterialView(_View):
    id: str
    name: str
    unit: str
    on_hand: float
    lead_time_days: float
    on_order: float
    purchase_orders: list[PurchaseOrderRef]
    used_in: dict[str, float] = Field(description="quantity per unit, by product SKU")
    short: bool


class MaterialsView(_View):
    materials: list[MaterialView]
    bom: dict[str, dict[str, float]] = Field(description="material quantity per unit, by SKU")
