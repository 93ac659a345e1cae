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
    order_id: str | None = Field(description="null: an order the caller may not see")
    work_order: str | None = Field(description="null: an order the caller may not see")
    slip_h: float
    old_end: str | None = Field(description="ISO 8601, UTC")
    new_end: str | None = Field(description="ISO 8601, UTC")
    promised_date: str | None = Field(description="YYYY-MM-DD")
    breaks_promise: bool


class QuotePlacement(_View):
    date: str = Field(description="YYYY-MM-DD: the date that would be promised")
    rule: str = Field(description="which promise rule chose the date (LOOPLINE_PROMISE_POLICY)")
    finish_date: str = Field(description="YYYY-MM-DD: the day the last unit is planned to end")
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


class TaskView(_View):
    """A sales rep's follow-up task after a delivery (models/followup.py)."""

    id: int
    order_id: str
    customer: str | None
    kind: str = Field(description="delivery_confirmation or satisfaction")
    assignee: str | None = Field(description="the order's sales rep")
    status: str = Field(description="open or done")
    created_at: str | None
    due_at: str | None
    done_at: str | None
    done_by: str | None
    score: int | None = Field(description="satisfaction 0-100, once done")
    note: str | None
    delivered_at: str | None


class DeliveryView(_View):
    order_id: str
    status: str
    delivered_at: str | None = Field(description="ISO 8601, UTC")
    source: str = Field(description="crm, api or demo")
    recorded_by: str
    new: bool = Field(description="false when the order was delivered already")
    tasks: list[TaskView]


class KpiPoint(_View):
    week: str = Field(description="the Monday of the ISO week, YYYY-MM-DD (UTC)")
    value: float | None = Field(description="null: nothing to measure that week")
    count: int = Field(description="how many orders, scores, materials or alerts it measured")


class KpiView(_View):
    key: str = Field(
        description="on_time_delivery, lead_time_avg, lead_time_p90, promise_reliability, "
        "promise_slip, inventory_turns, satisfaction or open_alerts"
    )
    value: float | None = Field(description="over the whole period; null: nothing measured")
    count: int
    unit: str = Field(description="pct, days, turns, score (0-100) or alerts")
    better: str = Field(description="higher or lower")
    trend: list[KpiPoint]


class LineKpiView(_View):
    line: str
    name: str
    availability: float | None = Field(description="percent of the period")
    performance: float | None = Field(description="percent; null until measured")
    quality: float | None = Field(description="percent good of good and scrap")
    oee: float | None = Field(description="percent; null until the OEE source measures it")
    shifts: int = Field(
        description="stored shifts (models/oee.py) the figures are summed over; 0: no shift "
        "stored in the period, so availability and quality come from the records"
    )
    trend: list[KpiPoint] = Field(
        description="weekly values of the report's oee.measure; count: the week's stored shifts"
    )


class OeeView(_View):
    measure: str = Field(description="oee, or availability while OEE is not measured")
    source: str = Field(description="shifts: the stored OEE per line and shift")
    lines: list[LineKpiView]


class AlertAgeView(_View):
    bucket: str = Field(description="lt_1h, 1h_8h, 8h_24h, 1d_7d or gt_7d")
    count: int
    critical: int


class KpiReportView(_View):
    """The managers' KPIs over a period of weeks (models/kpi.py says how each is computed)."""

    generated_at: str
    period_weeks: int
    start: str
    end: str
    weeks: list[str]
    kpis: list[KpiView]
    oee: OeeView
    alerts_by_age: list[AlertAgeView]


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
