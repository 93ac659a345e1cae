"""The system of record on both SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from loopline.models.db import make_engine, make_sessions, migrate, transaction
from loopline.models.events import parse_crm_event
from loopline.models.orders import apply_crm_event
from loopline.models.records import (
    Alert,
    BomLine,
    InboxEvent,
    Line,
    Material,
    Order,
    OutboxEvent,
    PlanRevision,
    PurchaseOrder,
    PurchaseRequest,
    WorkOrder,
)
from tests.factories import order_event, seed_small_factory


@pytest.fixture
def db(any_db_url):
    engine = make_engine(any_db_url)
    migrate(engine)
    migrate(engine)  # idempotent
    sessions = make_sessions(engine)
    with transaction(sessions) as s:
        seed_small_factory(s)
    yield engine, sessions
    engine.dispose()


def test_migration_creates_every_table(db):
    engine, _ = db
    tables = set(inspect(engine).get_table_names())
    assert {
        "site",
        "line",
        "line_rate",
        "product",
        "customer",
        "sales_order",
        "order_line",
        "work_order",
        "plan_revision",
        "inbox_event",
        "outbox_event",
        "alert",
        "audit_entry",
        "dead_letter",
        "material",
        "bom_line",
        "purchase_order",
        "purchase_request",
    } <= tables


def test_order_roundtrip_with_work_orders_and_aware_timestamps(db):
    _, sessions = db
    event = parse_crm_event(order_event(lines=[("P1", 200), ("P2", 30)]))
    with transaction(sessions) as s:
        result = apply_crm_event(
            s, event=event, source="canonical", webhook_id="w1", raw="{}", actor="crm"
        )
    assert result.outcome == "applied"
    with sessions() as s:
        order = s.get(Order, "SO-1001")
        assert [(ln.sku, ln.qty) for ln in order.lines] == [("P1", 200), ("P2", 30)]
        assert [w.id for w in order.work_orders] == ["WO-1001-1", "WO-1001-2"]
        assert order.created_at.tzinfo is not None
        assert s.scalar(select(InboxEvent.outcome)) == "applied"


def test_inbox_webhook_id_is_unique_per_source(db):
    _, sessions = db
    with pytest.raises(IntegrityError), transaction(sessions) as s:
        for _ in range(2):
            s.add(
                InboxEvent(
                    source="canonical",
                    webhook_id="dup",
                    event_type="order.upserted",
                    outcome="applied",
                    raw="{}",
                )
            )
            s.flush()


def test_json_columns_and_timestamps(db):
    _, sessions = db
    at = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    with transaction(sessions) as s:
        s.add(
            OutboxEvent(
                webhook_id="msg_1",
                event_type="order.updated",
                order_id="SO-1",
                payload={"a": [1, 2]},
                next_attempt_at=at,
            )
        )
        s.add(
            Alert(
                key="k",
                kind="line_down",
                entity="line",
                entity_id="L1",
                message="m",
                details={"x": 1},
            )
        )
    with sessions() as s:
        row = s.scalar(select(OutboxEvent))
        assert row.payload == {"a": [1, 2]}
        assert row.next_attempt_at == at
        assert s.scalar(select(Alert)).details == {"x": 1}


def test_work_order_ids_follow_design_naming(db):
    _, sessions = db
    with transaction(sessions) as s:
        apply_crm_event(
            s,
            event=parse_crm_event(order_event("SO-77")),
            source="canonical",
            webhook_id="w",
            raw="{}",
            actor="crm",
        )
    with sessions() as s:
        assert s.scalars(select(WorkOrder.id)).all() == ["WO-77-1"]


def test_migrations_match_the_models(db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import loopline.models.notify_records  # noqa: F401 (its tables join Base.metadata)
    from loopline.models import users  # noqa: F401  # tables outside records.py
    from loopline.models.records import Base

    engine, _ = db
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], "models changed without a migration: run alembic revision --autogenerate"


def test_materials_purchasing_and_line_calendars(db):
    _, sessions = db
    at = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    calendar = {"timezone": "Europe/Berlin", "shifts": [], "holidays": ["2026-12-25"]}
    with transaction(sessions) as s:
        line = s.get(Line, "L1")
        line.calendar, line.changeovers = calendar, {"P1": {"P2": 0.5}}
        s.add(Material(id="M1", name="Steel", unit="kg", on_hand=12.5, lead_time_days=3))
        s.flush()
        s.add(BomLine(sku="P1", material_id="M1", qty_per_unit=0.25))
        s.add(PurchaseOrder(id="PO-1", material_id="M1", qty=100, arrives_at=at))
        rev = PlanRevision(
            plan_start=at, trigger="t", solver="s", jobs=0, total_weighted_tardiness_h=0, solve_ms=1
        )
        s.add(rev)
        s.flush()
        s.add(
            PurchaseRequest(
                material_id="M1",
                qty=40,
                needed_by=at,
                arrives_if_ordered_now=at,
                jobs=["WO-1-1"],
                plan_revision_id=rev.id,
            )
        )
    with sessions() as s:
        line = s.get(Line, "L1")
        assert line.calendar == calendar and line.changeovers == {"P1": {"P2": 0.5}}
        assert s.get(Line, "L2").calendar is None
        assert s.get(PurchaseOrder, "PO-1").status == "open"
        pr = s.scalar(select(PurchaseRequest))
        assert (pr.status, pr.jobs, pr.needed_by) == ("open", ["WO-1-1"], at)
    with pytest.raises(IntegrityError), transaction(sessions) as s:
        s.add(BomLine(sku="P1", material_id="NOPE", qty_per_unit=1))
        s.flush()


def test_work_order_counters_hold_64_bit_checkpoints(db):
    # A 32-bit column overflowed on good >= 2^31 and halted the worker's checkpoint.
    _, sessions = db
    with transaction(sessions) as s:
        apply_crm_event(
            s,
            event=parse_crm_event(order_event("SO-78")),
            source="canonical",
            webhook_id="w78",
            raw="{}",
            actor="crm",
        )
    with transaction(sessions) as s:
        wo = s.get(WorkOrder, "WO-78-1")
        wo.good, wo.scrap = 2**31, 2**53
    with sessions() as s:
        wo = s.get(WorkOrder, "WO-78-1")
        assert (wo.good, wo.scrap) == (2**31, 2**53)
