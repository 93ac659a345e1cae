"""Test data: a tiny factory and canonical CRM events."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from sqlalchemy.orm import Session

from loopline import runtime
from loopline.ingest.crm.relay import ConnectorRelay
from loopline.models.approvals import ApprovalPolicy
from loopline.models.loop import LoopConfig
from loopline.models.records import Customer, Line, LineRate, Product, Site
from loopline.models.replan import PlanWindow
from loopline.settings import Settings

RATES = {"L1": {"P1": 100.0, "P2": 50.0}, "L2": {"P1": 50.0}}


def seed_small_factory(session: Session) -> None:
    """Two lines, two products, one customer."""
    session.add(Site(id="s1", name="Test site"))
    session.add_all([Product(sku="P1", name="Product 1"), Product(sku="P2", name="Product 2")])
    session.flush()
    for line_id, rates in RATES.items():
        line = Line(id=line_id, site_id="s1", name=f"Line {line_id}")
        line.rates = [LineRate(sku=s, units_per_hour=r) for s, r in rates.items()]
        session.add(line)
    session.add(Customer(id="C-1", name="Acme", importance=1))


def order_event(
    order_id: str = "SO-1001",
    version: int = 1,
    lines: list[tuple[str, int]] | None = None,
    requested: date | None = None,
    priority: str = "normal",
    event_type: str = "order.upserted",
) -> dict[str, Any]:
    """A canonical CRM event body (DESIGN.md)."""
    if event_type == "order.cancelled":
        return {
            "type": event_type,
            "occurred_at": "2026-11-28T08:00:00Z",
            "order": {"id": order_id, "version": version},
        }
    return {
        "type": event_type,
        "occurred_at": "2026-11-28T08:00:00Z",
        "order": {
            "id": order_id,
            "version": version,
            "customer": {"id": "C-1", "name": "Acme"},
            "lines": [{"sku": s, "qty": q} for s, q in (lines or [("P1", 200)])],
            "requested_date": (requested or date.today() + timedelta(days=5)).isoformat(),
            "priority": priority,
            "sales_rep": "zhang.wei",
        },
    }


def settings(**overrides: Any) -> Settings:
    """Settings as a fresh install has them (no environment, no .env), with overrides."""
    return Settings.model_validate(overrides)


def plan_window(**overrides: Any) -> PlanWindow:
    """The plan window of a fresh install (Settings' defaults); ``overrides`` replace
    PlanWindow fields, e.g. ``frozen_h=0``."""
    return replace(runtime.plan_window(settings()), **overrides)


def approval_policy(**overrides: Any) -> ApprovalPolicy:
    """The auto-approve rules of a fresh install, with PlanWindow-style overrides."""
    return replace(runtime.approval_policy(settings()), **overrides)


def loop_config(**overrides: Any) -> LoopConfig:
    """The worker's config of a fresh install, with LoopConfig field overrides."""
    return replace(runtime.loop_config(settings(), tracking=None), **overrides)


def connector_relay(sessions: Any, **kwargs: Any) -> ConnectorRelay:
    """The CRM feedback relay with a fresh install's retry settings; ``kwargs`` are the
    relay's own (registry, url, secret) and any setting to override (max_attempts...)."""
    base = settings()
    defaults = {
        "max_attempts": base.outbox_max_attempts,
        "backoff_base_s": base.outbox_backoff_base_s,
        "backoff_max_s": base.outbox_backoff_max_s,
        "timeout_s": base.outbox_timeout_s,
    }
    return ConnectorRelay(sessions, **{**defaults, **kwargs})
