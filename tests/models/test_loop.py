"""Replan, promises, rebuild from SQL, alert rules and CRM feedback, on SQLite + real Redis."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from redis.lock import Lock
from sqlalchemy import select

from loopline.models.alerts import list_alerts
from loopline.models.clock import Clock
from loopline.models.db import transaction
from loopline.models.events import parse_crm_event
from loopline.models.feedback import sync_feedback
from loopline.models.live import Update
from loopline.models.loop import (
    DUTY_LOCK,
    DUTY_LOCK_TTL_S,
    WORKER_ID,
    KeptLock,
    Loop,
    request_replan,
    summarize_triggers,
)
from loopline.models.orders import apply_crm_event
from loopline.models.records import BomLine, Material, Order, OutboxEvent, PlanRevision
from loopline.models.replan import build_problem, replan, sync_live
from loopline.models.watch import evaluate_alerts, mark_stale_lines
from tests.factories import loop_config, order_event, plan_window

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def sessions(any_sessions):
    """These tests run on SQLite and on PostgreSQL."""
    return any_sessions


def _order(sessions, order_id, version=1, lines=None, days=5, webhook=None, **kw):
    body = order_event(order_id, version, lines, (NOW + timedelta(days=days)).date(), **kw)
    with transaction(sessions) as s:
        apply_crm_event(
            s,
            event=parse_crm_event(body),
            source="canonical",
            webhook_id=webhook or f"{order_id}-{version}",
            raw="{}",
            actor="crm",
        )


def test_replan_assigns_promises_and_records_a_revision(sessions, live):
    _order(sessions, "SO-1", lines=[("P1", 200)])
    _order(sessions, "SO-2", lines=[("P2", 100)])
    outcome = replan(
        sessions, live, now=NOW, trigger="test", window=plan_window(promise_policy="earliest")
    )
    assert outcome.jobs == 2 and set(outcome.promised) == {"SO-1", "SO-2"}
    with sessions() as s:
        rev = s.scalar(select(PlanRevision))
        assert rev.trigger == "test" and rev.diff["added"] == ["WO-1-1", "WO-2-1"]
        # P2 only on L1 at 50/h: 2 h; P1 goes to L2 at 50/h or L1 after it.
        assert s.get(Order, "SO-2").promised_date == NOW.date()
    assert live.get("line", "L1")["queue"]
    assert live.get("order", "SO-1")["eta"]
    # A second plan keeps the promise of an unchanged order and diffs against the first.
    again = replan(
        sessions,
        live,
        now=NOW + timedelta(minutes=1),
        trigger="again",
        window=plan_window(promise_policy="earliest"),
    )
    assert again.promised == {}


def test_changed_order_gets_a_new_promise(sessions, live):
    _order(sessions, "SO-1", lines=[("P1", 100)])
    replan(sessions, live, now=NOW, trigger="t", window=plan_window(promise_policy="earliest"))
    _order(sessions, "SO-1", version=2, lines=[("P1", 3000)])
    outcome = replan(
        sessions, live, now=NOW, trigger="t2", window=plan_window(promise_policy="earliest")
    )
    assert "SO-1" in outcome.promised
    assert outcome.promised["SO-1"] > NOW.date().isoformat()


def test_running_work_is_pinned_to_its_line(sessions, live):
    _order(sessions, "SO-1", lines=[("P1", 100)])
    replan(sessions, live, now=NOW, trigger="t", window=plan_window(promise_policy="earliest"))
    live.apply([Update("work_order", "WO-1-1", {"status": "running", "line": "L2", "good": 40})])
    with sessions() as s:
        problem, _ = build_problem(s, live, NOW, plan_window(promise_policy="earliest"))
    [job] = problem.jobs
    assert (job.pinned_line, job.qty) == ("L2", 60.0)


def test_rebuild_restores_live_state_from_sql(sessions, live):
    _order(sessions, "SO-1", lines=[("P1", 100)])
    replan(sessions, live, now=NOW, trigger="t", window=plan_window(promise_policy="earliest"))
    before = live.get("order", "SO-1")
    live.redis.flushdb()
    with sessions() as s:
        sync_live(s, live, now=NOW, rebuild=True)
    after = live.get("order", "SO-1")
    assert after["promised_date"] == before["promised_date"]
    assert after["work_orders"] == ["WO-1-1"]
    assert live.ids("line") == ["L1", "L2"]


def _live_view(live):
    return {e: {i: live.get(e, i) for i in live.ids(e)} for e in ("line", "work_order", "order")}


def test_a_sync_of_changes_only_leaves_the_live_state_a_full_sync_would(sessions, live):
    window = plan_window(promise_policy="earliest")
    for n in (1, 2, 3):
        _order(sessions, f"SO-{n}", lines=[("P1", 100 * n), ("P2", 50)])
    replan(sessions, live, now=NOW, trigger="t", window=window)
    # Changed, new, cancelled, and one the live state lost: each is brought over.
    _order(sessions, "SO-2", version=2, lines=[("P1", 400)], priority="rush")
    _order(sessions, "SO-4", lines=[("P2", 80)])
    _order(sessions, "SO-3", version=2, event_type="order.cancelled")
    live.remove("work_order", ["WO-1-2"])
    replan(sessions, live, now=NOW, trigger="t", window=window, full_sync=False)
    changes_only = _live_view(live)
    assert changes_only["order"]["SO-2"]["priority"] == "rush"
    assert "SO-3" not in changes_only["order"] and "WO-3-1" not in changes_only["work_order"]
    assert changes_only["work_order"]["WO-1-2"]["order_id"] == "SO-1"
    with sessions() as s:
        sync_live(s, live, now=NOW)
    assert _live_view(live) == changes_only


def test_a_sync_of_changes_only_does_not_rewrite_unchanged_orders(sessions, live):
    window = plan_window(promise_policy="earliest")
    _order(sessions, "SO-1", lines=[("P1", 100)])
    replan(sessions, live, now=NOW, trigger="t", window=window)
    # Someone else's write to a field the sync owns: a full sync puts SQL's value back,
    # a sync of changes only leaves it (nothing in SQL changed) until the order changes.
    live.apply([Update("order", "SO-1", {"sales_note": "x", "priority": "tampered"})])
    with sessions() as s:
        sync_live(s, live, now=NOW, full=False)
    assert live.get("order", "SO-1")["priority"] == "tampered"
    _order(sessions, "SO-1", version=2, lines=[("P1", 120)])
    with sessions() as s:
        sync_live(s, live, now=NOW, full=False)
    assert live.get("order", "SO-1")["priority"] == "normal"
    assert live.get("work_order", "WO-1-1")["qty"] == 120
    live.apply([Update("order", "SO-1", {"priority": "tampered"})])
    with sessions() as s:
        sync_live(s, live, now=NOW)
    assert live.get("order", "SO-1")["priority"] == "normal"


def test_alert_rules_open_and_resolve(sessions, live):
    _order(sessions, "SO-1", lines=[("P1", 100)], days=0)
    replan(sessions, live, now=NOW, trigger="t", window=plan_window(promise_policy="earliest"))
    live.apply(
        [
            Update(
                "line",
                "L1",
                {
                    "state": "down",
                    "reason": "jam",
                    "since": "2026-12-01T07:00:00Z",
                    "last_seen": "2026-12-01T08:00:00Z",
                    "reported_state": "down",
                },
            )
        ]
    )
    with transaction(sessions) as s:
        evaluate_alerts(s, live, now=NOW, wall_now=NOW, down_after_s=300)
    with sessions() as s:
        kinds = {a.kind: a for a in list_alerts(s)}
    assert "line_down" in kinds and "jam" in kinds["line_down"].message
    assert {a["kind"] for a in live.all("alert")} >= {"line_down"}
    live.apply([Update("line", "L1", {"state": "running", "reason": None})])
    with transaction(sessions) as s:
        evaluate_alerts(s, live, now=NOW, wall_now=NOW, down_after_s=300)
    with sessions() as s:
        assert "line_down" not in {a.kind for a in list_alerts(s)}
    assert "line_down" not in {a["kind"] for a in live.all("alert")}


def test_silent_line_becomes_unavailable(live):
    live.apply([Update("line", "L1", {"state": "running", "last_seen": "2026-12-01T07:00:00Z"})])
    assert mark_stale_lines(live, wall_now=NOW, stale_after_s=120) == ["L1"]
    assert live.get("line", "L1")["state"] == "unavailable"


def test_feedback_is_queued_once_per_real_change(sessions, live):
    _order(sessions, "SO-1", lines=[("P1", 100)])
    replan(
        sessions, live, now=NOW, trigger="t", window=plan_window(promise_policy="earliest")
    )  # queues the first promise
    with transaction(sessions) as s:
        assert sync_feedback(s, live) == 0  # nothing new
    live.apply([Update("order", "SO-1", {"risk": "at_risk", "risk_reason": "x"})])
    with transaction(sessions) as s:
        assert sync_feedback(s, live) == 1
    with sessions() as s:
        rows = s.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()
    assert [r.payload["changed"] for r in rows][-1] == ["risk"]
    assert rows[0].payload["promised_date"]


def test_reported_progress_takes_its_material_out_of_stock(sessions, live):
    _order(sessions, "SO-1", lines=[("P1", 100)])
    with transaction(sessions) as s:
        s.add(Material(id="STEEL", name="Steel", on_hand=500.0, lead_time_days=3))
        s.flush()
        s.add(BomLine(sku="P1", material_id="STEEL", qty_per_unit=2.0))
    replan(sessions, live, now=NOW, trigger="t", window=plan_window(promise_policy="earliest"))
    live.apply([Update("work_order", "WO-1-1", {"good": 30, "scrap": 5, "status": "running"})])
    with transaction(sessions) as s:
        sync_feedback(s, live)
    with sessions() as s:
        assert s.get(Material, "STEEL").on_hand == 500.0 - 2.0 * 35
    # The same report again takes nothing more; only what is new counts.
    live.apply([Update("work_order", "WO-1-1", {"good": 40, "scrap": 5})])
    with transaction(sessions) as s:
        sync_feedback(s, live)
        sync_feedback(s, live)
    with sessions() as s:
        assert s.get(Material, "STEEL").on_hand == 500.0 - 2.0 * 45


def test_loop_debounces_a_burst_into_one_replan(sessions, live):
    _order(sessions, "SO-1")
    loop = Loop(
        sessions,
        live,
        Clock(),
        loop_config(window=plan_window(promise_policy="earliest"), replan_debounce_ms=100),
    )
    for i in range(5):
        request_replan(live.redis, f"crm SO-{i}")
    triggers = loop.take_replan_requests(wait_s=1)
    assert len(triggers) == 5
    assert loop.take_replan_requests(wait_s=0.1) == []
    assert summarize_triggers(triggers).startswith("5 changes")


def test_only_one_worker_at_a_time_does_the_duties(sessions, live):
    _order(sessions, "SO-1")
    first = Loop(
        sessions, live, Clock(), loop_config(window=plan_window(promise_policy="earliest"))
    )
    second = Loop(
        sessions, live, Clock(), loop_config(window=plan_window(promise_policy="earliest"))
    )
    held = live.redis.lock(DUTY_LOCK, timeout=30)
    assert held.acquire(blocking=False)
    assert second.tick() is False  # another worker is busy: skip, never race
    held.release()
    assert first.tick() is True and second.tick() is True


def test_the_duty_lock_is_short_renewed_while_held_and_names_its_worker(live):
    assert DUTY_LOCK_TTL_S <= 10.0  # a dead worker stalls the others this long at most
    lock = KeptLock(live.redis, "ll:lock:test", timeout=0.5, renew_s=0.1)
    assert lock.acquire(blocking=False)
    time.sleep(1.5)  # three TTLs: only renewal keeps it
    assert lock.owned() and live.redis.get("ll:lock:test").startswith(WORKER_ID + ":")
    other = KeptLock(live.redis, "ll:lock:test", timeout=0.5)
    assert not other.acquire(blocking=False)
    lock.release()
    assert live.redis.get("ll:lock:test") is None
    # A holder that dies (no keeper) loses it within the TTL.
    dead = Lock(live.redis, "ll:lock:test", timeout=0.5)
    assert dead.acquire(blocking=False)
    assert other.acquire(blocking=True, blocking_timeout=3)
    other.release()


def _run_until_promised(loop, sessions, order_id: str, timeout_s: float = 10.0) -> None:
    """Run the loop's threads until ``order_id`` has a promise (or the time is up)."""

    def promised():
        with sessions() as s:
            return s.get(Order, order_id).promised_date is not None

    loop.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not promised():
            time.sleep(0.05)
    finally:
        loop.stop()


def test_a_failed_replan_keeps_its_requests_and_retries(sessions, live, monkeypatch):
    import loopline.models.loop as loop_module

    _order(sessions, "SO-1")
    calls = []

    def flaky(*args, **kwargs):
        calls.append(kwargs["trigger"])
        if len(calls) == 1:
            raise RuntimeError("the database went away")
        return replan(*args, **kwargs)

    monkeypatch.setattr(loop_module, "replan", flaky)
    monkeypatch.setattr(loop_module, "REPLAN_RETRY_BASE_S", 0.05)
    loop = Loop(
        sessions,
        live,
        Clock(),
        loop_config(window=plan_window(promise_policy="earliest"), replan_debounce_ms=10),
    )
    request_replan(live.redis, "crm SO-1 v1")
    _run_until_promised(loop, sessions, "SO-1")
    with sessions() as s:
        assert s.get(Order, "SO-1").promised_date is not None  # promised without a new event
    assert len(calls) >= 2 and "crm SO-1 v1" in calls[1]
    assert live.redis.llen(loop_module.REPLAN_QUEUE) == 0


def test_a_request_taken_by_a_worker_that_died_is_replanned_by_the_next(sessions, live):
    import loopline.models.loop as loop_module

    _order(sessions, "SO-1")
    dead = Loop(
        sessions,
        live,
        Clock(),
        loop_config(window=plan_window(promise_policy="earliest"), replan_debounce_ms=10),
    )
    request_replan(live.redis, "crm SO-1 v1")
    assert dead.take_replan_requests(wait_s=1) == ["crm SO-1 v1"]  # then killed -9
    loop = Loop(
        sessions,
        live,
        Clock(),
        loop_config(window=plan_window(promise_policy="earliest"), replan_debounce_ms=10),
    )
    _run_until_promised(loop, sessions, "SO-1")
    with sessions() as s:
        assert s.get(Order, "SO-1").promised_date is not None
    assert live.redis.llen(loop_module.REPLAN_QUEUE) == 0


def _received(sessions, order_id: str) -> None:
    """A new order's CRM event, recorded in the inbox as a webhook does (not yet applied)."""
    import json

    from loopline.models.intake import record_received

    body = order_event(order_id, 1, [("P1", 10)], (NOW + timedelta(days=3)).date())
    record_received(
        sessions,
        event=parse_crm_event(body),
        source="crm:canonical",
        webhook_id=f"w-{order_id}",
        raw=json.dumps(body),
        actor="crm",
    )


def test_a_replan_that_fails_after_the_intake_applied_asks_again(sessions, live, monkeypatch):
    import loopline.models.loop as loop_module

    # Recorded by a webhook whose wake-up never reached Redis: only the inbox knows.
    _received(sessions, "SO-9")

    def broken(*args, **kwargs):
        raise RuntimeError("solver crashed")

    monkeypatch.setattr(loop_module, "replan", broken)
    loop = Loop(sessions, live, Clock(), loop_config(window=plan_window(promise_policy="earliest")))
    with pytest.raises(RuntimeError):
        loop.work([])
    with sessions() as s:
        assert s.get(Order, "SO-9") is not None  # applied and committed, not yet planned
    assert live.redis.lrange(loop_module.REPLAN_QUEUE, 0, -1) == ["crm SO-9 v1"]


def _planted_eta_survives_a_tick(loop, live) -> bool:
    """Plant a wrong ETA on SO-1's work order, tick, and tell whether it is still there."""
    planted = "2000-01-01T00:00:00Z"
    live.apply([Update("work_order", "WO-1-1", {"eta": planted})])
    assert loop.tick() is True
    return live.get("work_order", "WO-1-1")["eta"] == planted


def test_a_tick_right_after_a_replan_leaves_its_etas(sessions, live):
    import loopline.models.loop as loop_module

    _order(sessions, "SO-1", lines=[("P1", 100)])
    loop = Loop(sessions, live, Clock(), loop_config(window=plan_window(promise_policy="earliest")))
    loop.replan_now("t")
    assert live.get("work_order", "WO-1-1")["eta"]
    # Within the window the replan's own ETAs stand (it estimated them a moment ago)...
    assert _planted_eta_survives_a_tick(loop, live)
    # ...and once it is over, a tick estimates again.
    loop._replanned_at = time.monotonic() - loop_module.REPLAN_FRESH_S
    assert not _planted_eta_survives_a_tick(loop, live)


def test_a_line_gone_silent_is_estimated_at_once_even_right_after_a_replan(sessions, live):
    _order(sessions, "SO-1", lines=[("P1", 100)])
    loop = Loop(sessions, live, Clock(), loop_config(window=plan_window(promise_policy="earliest")))
    loop.replan_now("t")
    line = live.get("work_order", "WO-1-1")["line"]
    live.apply([Update("line", line, {"state": "running", "last_seen": "2026-01-01T00:00:00Z"})])
    assert not _planted_eta_survives_a_tick(loop, live)


def test_the_worker_syncs_the_whole_live_state_at_least_every_full_sync_s(sessions, live):
    import loopline.models.loop as loop_module

    _order(sessions, "SO-1", lines=[("P1", 100)])
    stopped = Clock(speed=0.0, origin=NOW)  # the plan stays where it is between replans
    loop = Loop(sessions, live, stopped, loop_config(window=plan_window(promise_policy="earliest")))
    loop.replan_now("first")  # the first replan of a worker syncs everything
    live.apply([Update("order", "SO-1", {"priority": "tampered"})])
    loop.replan_now("changes only")
    assert live.get("order", "SO-1")["priority"] == "tampered"
    loop._full_sync_at = time.monotonic() - loop_module.FULL_SYNC_S
    loop.replan_now("all again")
    assert live.get("order", "SO-1")["priority"] == "normal"


def _replan_triggers(monkeypatch) -> list[str]:
    """The trigger of each replan the loop runs from now on (they still run)."""
    import loopline.models.loop as loop_module

    planned: list[str] = []
    real_replan = loop_module.replan
    monkeypatch.setattr(
        loop_module,
        "replan",
        lambda *a, **kw: planned.append(kw["trigger"]) or real_replan(*a, **kw),
    )
    return planned


def test_events_arriving_while_a_burst_is_applied_are_applied_before_the_replan(
    sessions, live, monkeypatch
):
    """A webhook burst still arriving: the worker applies what came in meanwhile, then
    replans once with all of it, instead of a replan round between each part."""

    _received(sessions, "SO-A")
    loop = Loop(sessions, live, Clock(), loop_config(window=plan_window(promise_policy="earliest")))
    real_apply, rounds = loop._apply_received, []

    def apply_while_more_arrive():
        intake = real_apply()
        rounds.append([r.order_id for r in intake.applied])
        if len(rounds) < 3:  # the next webhook lands while this round was applied
            _received(sessions, f"SO-{'BC'[len(rounds) - 1]}")
        return intake

    monkeypatch.setattr(loop, "_apply_received", apply_while_more_arrive)
    planned = _replan_triggers(monkeypatch)
    loop.work([])
    assert rounds == [["SO-A"], ["SO-B"], ["SO-C"]]
    assert len(planned) == 1 and all(f"SO-{x}" in planned[0] for x in "ABC")
    with sessions() as s:
        assert all(s.get(Order, f"SO-{x}").promised_date for x in "ABC")


def test_the_next_part_of_a_burst_landing_just_after_a_round_is_applied_before_the_replan(
    sessions, live, monkeypatch
):
    """A CRM delivering a burst in parts (HubSpot's batches): the next part lands a moment
    after the worker applied the previous one, not during it. The worker waits briefly for
    it after a round of several orders, so one replan plans the whole burst; after a single
    event it replans at once."""
    import loopline.models.loop as loop_module

    _received(sessions, "SO-A")
    _received(sessions, "SO-B")
    loop = Loop(sessions, live, Clock(), loop_config(window=plan_window(promise_policy="earliest")))
    real_apply, rounds = loop._apply_received, []

    def apply_then_the_next_part_lands_soon():
        intake = real_apply()
        rounds.append(sorted(r.order_id for r in intake.applied))
        if len(rounds) == 1:
            later = threading.Timer(loop_module.INTAKE_QUIET_S / 3, _received, (sessions, "SO-C"))
            later.start()
        return intake

    monkeypatch.setattr(loop, "_apply_received", apply_then_the_next_part_lands_soon)
    planned = _replan_triggers(monkeypatch)
    loop.work([])
    assert rounds == [["SO-A", "SO-B"], ["SO-C"]]
    assert len(planned) == 1 and all(f"SO-{x}" in planned[0] for x in "ABC")
    # A single event: no waiting for more (its replan starts at once).
    _received(sessions, "SO-D")
    rounds.clear()
    waits: list[float] = []
    real_soon = loop._received_soon
    monkeypatch.setattr(loop, "_received_soon", lambda s: waits.append(s) or real_soon(s))
    loop.work([])
    assert rounds == [["SO-D"]] and len(planned) == 2 and waits == [0.0]


def test_a_sweep_that_read_an_alert_before_its_ack_does_not_take_the_ack_back(sessions, live):
    """Found by test_alert_ack failing once in CI: the worker's sweep read the alert
    ("open"), the ack committed and was mirrored ("acked"), then the sweep wrote its
    older "open" over it until the next sweep."""
    from loopline.models.alerts import ack_alert, open_alert
    from loopline.models.records import Alert
    from loopline.models.watch import mirror_alerts

    with transaction(sessions) as s:
        alert = open_alert(
            s,
            key="line_down:L1",
            kind="line_down",
            entity="line",
            entity_id="L1",
            severity="critical",
            message="L1 down",
        )
        s.flush()
        alert_id = alert.id
        mirror_alerts(s, live)
    with transaction(sessions) as s:
        ack_alert(s, alert_id=alert_id, actor="lead")
        s.flush()
        mirror_alerts(s, live)
    assert live.get("alert", str(alert_id))["status"] == "acked"
    # What the sweep read before the ack: the row as it was.
    with transaction(sessions) as s:
        s.get(Alert, alert_id).status = "open"
    with transaction(sessions) as sweep:
        mirror_alerts(sweep, live)
        sync_live(sweep, live, now=NOW, full=True)
    assert live.get("alert", str(alert_id))["status"] == "acked"
