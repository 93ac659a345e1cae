"""Applying CRM events: versions, duplicates, changes and cancellation."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from loopline.models.audit import history
from loopline.models.db import transaction
from loopline.models.events import parse_crm_event
from loopline.models.orders import UnknownProduct, apply_crm_event
from loopline.models.records import InboxEvent, Order
from tests.factories import order_event


def _apply(sessions, body, webhook_id):
    with transaction(sessions) as s:
        return apply_crm_event(
            s,
            event=parse_crm_event(body),
            source="canonical",
            webhook_id=webhook_id,
            raw="{}",
            actor="crm",
        )


def test_duplicate_webhook_id_changes_nothing(sessions):
    assert _apply(sessions, order_event(version=1), "w1").outcome == "applied"
    assert (
        _apply(sessions, order_event(version=2, lines=[("P1", 999)]), "w1").outcome == "duplicate"
    )
    with sessions() as s:
        assert s.get(Order, "SO-1001").lines[0].qty == 200
        assert s.scalar(select(func.count()).select_from(InboxEvent)) == 1


def test_older_version_is_recorded_but_not_applied(sessions):
    _apply(sessions, order_event(version=5, lines=[("P1", 300)]), "w1")
    assert _apply(sessions, order_event(version=4, lines=[("P1", 1)]), "w2").outcome == "stale"
    with sessions() as s:
        order = s.get(Order, "SO-1001")
        assert order.version == 5 and order.lines[0].qty == 300
        assert s.scalar(select(InboxEvent.outcome).where(InboxEvent.webhook_id == "w2")) == "stale"
        [entries] = history(s, entity="order", entity_ids=["SO-1001"]).values()
        actions = [h.action for h in entries]
        assert actions == ["order.created", "order.stale_ignored"]


def test_change_updates_lines_and_work_orders_and_is_audited(sessions):
    _apply(sessions, order_event(version=1, lines=[("P1", 100), ("P2", 10)]), "w1")
    result = _apply(sessions, order_event(version=2, lines=[("P1", 150)], priority="rush"), "w2")
    assert result.changes["priority"] == ["normal", "rush"]
    with sessions() as s:
        order = s.get(Order, "SO-1001")
        assert [(w.id, w.qty, w.status) for w in order.work_orders] == [
            ("WO-1001-1", 150, "planned"),
            ("WO-1001-2", 10, "cancelled"),
        ]


def test_cancel(sessions):
    _apply(sessions, order_event(version=1), "w1")
    _apply(sessions, order_event(version=2, event_type="order.cancelled"), "w2")
    with sessions() as s:
        order = s.get(Order, "SO-1001")
        assert order.status == "cancelled"
        assert all(w.status == "cancelled" for w in order.work_orders)


def test_unknown_product_names_the_field(sessions):
    with pytest.raises(UnknownProduct) as err:
        _apply(sessions, order_event(lines=[("P1", 1), ("NOPE", 2)]), "w1")
    assert err.value.field == "order.lines[1].sku"


@pytest.fixture
def pg_or_sqlite(any_sessions):
    return any_sessions


def test_a_cancel_that_comes_first_wins_over_lower_versions(pg_or_sqlite):
    sessions = pg_or_sqlite
    cancel = order_event("SO-77", 5, event_type="order.cancelled")
    assert _apply(sessions, cancel, "c5").outcome == "applied"
    for version in (1, 4, 3):
        later = order_event("SO-77", version, [("P1", version)])
        assert _apply(sessions, later, f"u{version}").outcome == "stale"
    with sessions() as s:
        assert s.get(Order, "SO-77") is None  # never created as open
        assert s.scalar(select(InboxEvent.outcome).where(InboxEvent.webhook_id == "u4")) == (
            "stale"
        )
    # A newer version than the cancel reopens it, as the CRM says.
    assert _apply(sessions, order_event("SO-77", 6, [("P1", 6)]), "u6").outcome == "applied"
    with sessions() as s:
        order = s.get(Order, "SO-77")
        assert (order.version, order.status, order.lines[0].qty) == (6, "open", 6)
