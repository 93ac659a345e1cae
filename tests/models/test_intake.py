"""CRM intake: events recorded by the webhook wait in the inbox until the worker applied
them; nothing accepted is lost when applying fails or the worker dies (SQLite and
PostgreSQL)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

import loopline.models.intake as intake_module
from loopline.models.db import transaction
from loopline.models.events import parse_crm_event
from loopline.models.intake import MAX_APPLY_ATTEMPTS, apply_received, record_received
from loopline.models.records import DeadLetter, InboxEvent, Order, Product
from tests.factories import approval_policy, order_event, plan_window


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


# -- a round applied together -------------------------------------------------------------


def _gate(live):
    from loopline.models.approvals import Gate
    from tests.models.test_approvals import NOW

    return Gate(live, lambda: NOW, approval_policy(), plan_window(promise_policy="earliest"))


@pytest.fixture
def promised(sessions, live):
    """SO-A and SO-V promised (test_approvals' victim), SO-A running on L1."""
    from loopline.models.replan import replan
    from tests.models.test_approvals import NOW, seed_victim, start_running

    seed_victim(lambda body, webhook_id: _record(sessions, body, webhook_id))
    apply_received(sessions, gate=None)
    replan(sessions, live, now=NOW, trigger="test", window=plan_window(promise_policy="earliest"))
    start_running(live)
    with sessions() as s:
        assert s.get(Order, "SO-V").promised_date is not None


def _count_previews(monkeypatch):
    calls = []
    real = intake_module.planned_ends
    monkeypatch.setattr(
        intake_module, "planned_ends", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    import loopline.models.approvals as approvals_module

    real_gate = approvals_module.planned_ends
    monkeypatch.setattr(
        approvals_module, "planned_ends", lambda *a, **k: calls.append(1) or real_gate(*a, **k)
    )
    return calls


def test_a_burst_that_slips_nobody_costs_one_preview_not_one_per_order(
    sessions, live, promised, monkeypatch
):
    from tests.models.test_approvals import DAY1

    for n in range(6):
        _record(sessions, order_event(f"SO-N{n}", 1, [("P1", 20)], DAY1), f"n{n}")
    previews = _count_previews(monkeypatch)
    done = apply_received(sessions, gate=_gate(live))
    assert sorted(r.order_id for r in done.applied) == [f"SO-N{n}" for n in range(6)]
    assert done.parked == [] and len(previews) == 1  # was 6, one per order
    with sessions() as s:
        assert all(s.get(Order, f"SO-N{n}") is not None for n in range(6))


def test_a_round_with_a_promise_breaker_parks_it_and_applies_the_rest(
    sessions, live, promised, monkeypatch
):
    from loopline.models.records import PendingChange
    from tests.models.test_approvals import BIG, DAY1

    _record(sessions, order_event("SO-N1", 1, [("P1", 20)], DAY1), "n1")
    _record(sessions, order_event("SO-H", 1, [("P2", BIG)], DAY1, priority="high"), "h1")
    _record(sessions, order_event("SO-N2", 1, [("P1", 20)], DAY1), "n2")
    done = apply_received(sessions, gate=_gate(live))
    assert sorted(r.order_id for r in done.applied) == ["SO-N1", "SO-N2"]
    assert [r.order_id for r in done.parked] == ["SO-H"]
    with sessions() as s:
        assert s.get(Order, "SO-H") is None
        [change] = s.scalars(select(PendingChange))
        assert change.order_id == "SO-H" and change.impact[0]["order_id"] == "SO-V"
    outcomes = _outcomes(sessions)
    assert (outcomes["n1"], outcomes["n2"], outcomes["h1"]) == ("applied", "applied", "pending")


def _written(sessions, prefix):
    """What applying wrote for the orders ``SO-<prefix>*``, with the prefix taken out."""
    from loopline.models.records import AuditEntry, WorkOrder

    def plain(value):
        text = json.dumps(value, default=str)
        return json.loads(text.replace(f"SO-{prefix}", "SO-?").replace(f"WO-{prefix}", "WO-?"))

    with sessions() as s:
        like = f"SO-{prefix}%"
        orders = [
            (o.id, o.customer_id, o.version, o.status, o.priority, o.requested_date, o.sales_rep)
            + ([(ln.line_no, ln.sku, ln.qty) for ln in o.lines],)
            for o in s.scalars(select(Order).where(Order.id.like(like)).order_by(Order.id))
        ]
        wos = s.execute(
            select(WorkOrder.id, WorkOrder.line_no, WorkOrder.sku, WorkOrder.qty, WorkOrder.status)
            .where(WorkOrder.order_id.like(like))
            .order_by(WorkOrder.id)
        ).all()
        audit = [
            (a.actor, a.action, a.entity_id, {**a.details, "webhook_id": "-"})
            for a in s.scalars(
                select(AuditEntry).where(AuditEntry.entity_id.like(like)).order_by(AuditEntry.id)
            )
        ]
        inbox = s.execute(
            select(InboxEvent.order_id, InboxEvent.order_version, InboxEvent.outcome)
            .where(InboxEvent.order_id.like(like))
            .order_by(InboxEvent.id)
        ).all()
    return plain([orders, [list(w) for w in wos], audit, [list(i) for i in inbox]])


def test_a_round_applied_together_writes_what_one_by_one_writes(sessions, live, monkeypatch):
    # Why: a round applied together creates new orders without a query of their own; it
    # must leave exactly what the order-by-order path leaves, beside events it cannot take
    # that way (an update, a cancel never created, a superseded version).
    def events(p):
        return [
            (order_event(f"SO-{p}1", 1, [("P1", 10)]), "1"),
            (order_event(f"SO-{p}2", 3, [("P1", 5), ("P2", 7)], priority="high"), "2"),
            (order_event(f"SO-{p}3", 1, [("P2", 1)]), "3a"),
            (order_event(f"SO-{p}3", 2, [("P2", 2)]), "3b"),
            (order_event(f"SO-{p}4", 2, event_type="order.cancelled"), "4"),
            (order_event(f"SO-{p}0", 2, [("P1", 99)]), "0b"),  # an update (v1 applied below)
        ]

    created: list[int] = []
    real_create = intake_module._create
    monkeypatch.setattr(intake_module, "_create", lambda *a: created.append(1) or real_create(*a))
    for p, together in (("A", False), ("B", True)):
        _record(sessions, order_event(f"SO-{p}0", 1, [("P1", 1)]), f"{p}0a")
        apply_received(sessions, gate=None)
        for body, webhook_id in events(p):
            assert _record(sessions, body, f"{p}{webhook_id}") == "accepted"
        previews = _count_previews(monkeypatch)
        created.clear()
        done = apply_received(sessions, gate=_gate(live) if together else None)
        assert len(previews) == (1 if together else 0)
        assert len(created) == (3 if together else 0)  # SO-?1..3 the short way
        assert sorted(r.order_id for r in done.applied) == [f"SO-{p}{n}" for n in range(5)]
        assert done.stale == 1 and done.failed == 0
    assert _written(sessions, "B") == _written(sessions, "A")
    with sessions() as s:
        assert s.get(Order, "SO-B2").work_orders[1].id == "WO-B2-2"


def test_an_update_naming_a_customer_created_earlier_in_the_round_is_applied_with_it(
    sessions, live, caplog
):
    # The round's new orders are inserted together; an update applied the long way after
    # one of them must find the customer that order brought, not create it a second time.
    _record(sessions, order_event("SO-X0", 1, [("P1", 1)]), "x0a")
    apply_received(sessions, gate=None)
    new_customer = order_event("SO-X1", 1, [("P1", 10)])
    new_customer["order"]["customer"] = {"id": "C-NEW", "name": "Newco"}
    update = order_event("SO-X0", 2, [("P1", 2)])
    update["order"]["customer"] = {"id": "C-NEW", "name": "Newco"}
    assert _record(sessions, new_customer, "x1") == "accepted"
    assert _record(sessions, update, "x0b") == "accepted"
    with caplog.at_level("WARNING", logger="loopline.intake"):
        done = apply_received(sessions, gate=_gate(live))
    assert "one by one instead" not in caplog.text  # applied together
    assert sorted(r.order_id for r in done.applied) == ["SO-X0", "SO-X1"]
    with sessions() as s:
        assert s.get(Order, "SO-X0").customer_id == s.get(Order, "SO-X1").customer_id == "C-NEW"
        assert s.get(Order, "SO-X1").customer.name == "Newco"


def test_concurrent_webhooks_are_recorded_in_one_transaction_with_the_same_outcomes(
    sessions, monkeypatch
):
    # Why: the receive path records events of webhooks answered at the same time together
    # (group commit); duplicates, stale versions and unknown products must come out as
    # they do one at a time, each in its own caller.
    import threading

    from loopline.models.orders import UnknownProduct

    _record(sessions, order_event("SO-S", 3, [("P1", 1)]), "s3")
    apply_received(sessions, gate=None)
    real_one, real_group = intake_module._record_one, intake_module._record_group
    groups: list[int] = []
    first = threading.Event()

    def slow_one(sessions_, item):  # the first call holds the pen while the others queue
        if not first.is_set():
            first.set()
            threading.Event().wait(0.5)
        return real_one(sessions_, item)

    monkeypatch.setattr(intake_module, "_record_one", slow_one)
    monkeypatch.setattr(
        intake_module, "_record_group", lambda s, g: groups.append(len(g)) or real_group(s, g)
    )
    calls = [
        (order_event("SO-G0", 1, [("P1", 5)]), "g0"),
        (order_event("SO-G1", 1, [("P1", 5)]), "g1"),
        (order_event("SO-G1", 1, [("P1", 5)]), "g1"),  # the same delivery twice at once
        (order_event("SO-S", 2, [("P1", 5)]), "s2"),  # below the stored version 3
        (order_event("SO-G2", 1, [("NOPE", 5)]), "g2"),
        (order_event("SO-G3", 2, event_type="order.cancelled"), "g3"),
        (order_event("SO-G0", 2, [("P1", 6)]), "g0b"),
        (order_event("SO-S", 3, [("P1", 5)]), "s3"),  # recorded before
    ]
    answers: dict[int, object] = {}

    def call(n):
        body, webhook_id = calls[n]
        try:
            answers[n] = _record(sessions, body, webhook_id)
        except UnknownProduct as exc:
            answers[n] = exc.field

    threads = [threading.Thread(target=call, args=(0,))]
    threads[0].start()
    assert first.wait(5)
    threads += [threading.Thread(target=call, args=(n,)) for n in range(1, len(calls))]
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(10)
    assert groups and groups[0] == len(calls) - 1  # all but the first in one transaction
    assert answers[0] == "accepted" and answers[5] == answers[6] == "accepted"
    assert sorted([answers[1], answers[2]]) == ["accepted", "duplicate"]
    assert answers[3] == "stale" and answers[7] == "duplicate"
    assert answers[4] == "order.lines[0].sku"
    assert _outcomes(sessions) == {
        "s3": "applied",
        "g0": "received",
        "g1": "received",
        "s2": "stale",
        "g3": "received",
        "g0b": "received",
    }
    with sessions() as s:
        from loopline.models.records import AuditEntry

        assert s.scalar(
            select(AuditEntry.details).where(AuditEntry.action == "order.stale_ignored")
        ) == {"version": 2, "stored_version": 3, "webhook_id": "s2"}
    done = apply_received(sessions, gate=None)
    assert sorted((r.order_id, r.version) for r in done.applied) == [
        ("SO-G0", 2),
        ("SO-G1", 1),
        ("SO-G3", 2),
    ]
