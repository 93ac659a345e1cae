"""CRM intake: events recorded by the webhook wait in the inbox until the worker applied
them; nothing accepted is lost when applying fails or the worker dies (SQLite and
PostgreSQL)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

import models.intake as intake_module
from models.db import transaction
from models.events import parse_crm_event
from models.intake import MAX_APPLY_ATTEMPTS, apply_received, record_received
from models.records import DeadLetter, InboxEvent, Order, Product
from tests.factories import order_event


@pytest.fixture
def sessions(any_sessions):
    return any_sessions


def _record(sessions, body, webhook_id):
    return record_received(
        sessions,
        event=parse_crm_event(body),
        source="crm:canonical",
        webhook_id=webhook_id,
        raw=json.dumps(body),
        actor="crm",
    ).outcome


def _outcomes(sessions):
    with sessions() as s:
        return dict(s.execute(select(InboxEvent.webhook_id, InboxEvent.outcome)).all())


def test_recorded_events_wait_until_the_worker_applies_the_newest(sessions):
    assert _record(sessions, order_event("SO-1", 2, [("P1", 20)]), "w2") == "accepted"
    assert _record(sessions, order_event("SO-1", 1, [("P1", 10)]), "w1") == "accepted"
    assert _record(sessions, order_event("SO-1", 2, [("P1", 20)]), "w2") == "duplicate"
    with sessions() as s:
        assert s.get(Order, "SO-1") is None  # the request path applies nothing
    done = apply_received(sessions, gate=None)
    assert [(r.order_id, r.version) for r in done.applied] == [("SO-1", 2)] and done.stale == 1
    assert _outcomes(sessions) == {"w1": "stale", "w2": "applied"}
    with sessions() as s:
        assert s.get(Order, "SO-1").lines[0].qty == 20
    # Now stored at 2: an older version is stale at once, on the request path.
    assert _record(sessions, order_event("SO-1", 1, [("P1", 10)]), "w1b") == "stale"


def test_a_worker_that_fails_mid_apply_loses_nothing(sessions, monkeypatch):
    _record(sessions, order_event("SO-1", 1, [("P1", 10)]), "a1")
    _record(sessions, order_event("SO-2", 1, [("P2", 10)]), "b1")
    real = intake_module.apply_gated

    def dies_on_so1(session, **kw):
        result = real(session, **kw)  # the order is written, then the worker dies
        if kw["event"].order.id == "SO-1":
            raise RuntimeError("killed")
        return result

    monkeypatch.setattr(intake_module, "apply_gated", dies_on_so1)
    done = apply_received(sessions, gate=None)
    assert done.failed == 1 and [r.order_id for r in done.applied] == ["SO-2"]
    assert _outcomes(sessions) == {"a1": "received", "b1": "applied"}
    with sessions() as s:
        assert s.get(Order, "SO-1") is None  # rolled back with its inbox row
    monkeypatch.setattr(intake_module, "apply_gated", real)
    assert [r.order_id for r in apply_received(sessions, gate=None).applied] == ["SO-1"]
    assert _outcomes(sessions) == {"a1": "applied", "b1": "applied"}


def test_an_event_that_never_applies_is_given_up_as_a_dead_letter(sessions, monkeypatch):
    _record(sessions, order_event("SO-1", 1, [("P1", 10)]), "a1")

    def broken(session, **kw):
        raise RuntimeError("a bug")

    monkeypatch.setattr(intake_module, "apply_gated", broken)
    for _ in range(MAX_APPLY_ATTEMPTS):
        apply_received(sessions, gate=None)
    assert _outcomes(sessions) == {"a1": "failed"}
    with sessions() as s:
        [dead] = s.scalars(select(DeadLetter)).all()
        assert dead.reason == "apply_failed" and "a1" in dead.detail


def test_a_product_gone_before_the_apply_rejects_the_event(sessions):
    with transaction(sessions) as s:
        s.add(Product(sku="P9", name="Soon gone"))
    _record(sessions, order_event("SO-1", 1, [("P9", 10)]), "a1")
    with transaction(sessions) as s:
        s.delete(s.get(Product, "P9"))
    apply_received(sessions, gate=None)
    assert _outcomes(sessions) == {"a1": "rejected"}
    with sessions() as s:
        assert s.scalar(select(DeadLetter.reason)) == "unknown_product"
