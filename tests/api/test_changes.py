"""Rush and change approval over HTTP: roles, pending changes, decisions told to the CRM,
and quotes; on real PostgreSQL and Redis, with a real HTTP server playing the CRM."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime

import httpx
import pytest

from loopline.models.live import STREAM, Change, Update
from loopline.settings import new_webhook_secret
from loopline.simulators.crm import CrmFeedbackServer
from tests.factories import order_event
from tests.stack import API_TOKEN, DISPLAY_TOKEN, start_stack, wait_until

MANAGER, SALES, PURCHASING = "test-manager-token", "test-sales-token", "test-purchasing-token"
# The scenario of tests/models/test_approvals.py, on a clock started at this instant.
NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
DAY1 = date(2026, 12, 1)
BIG, SMALL = 1500, 900  # P2 going first: SO-V 14 h past its promise, or 2 h


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def crm_secret():
    return new_webhook_secret()


@pytest.fixture
def crm(crm_secret):
    with CrmFeedbackServer(crm_secret) as server:
        yield server


@pytest.fixture
def stack(postgres_url, redis_server, crm, crm_secret):
    s = start_stack(
        database_url=postgres_url,
        redis_url=redis_server,
        mqtt_url=None,
        crm_url=crm.url,
        secret=crm_secret,
        origin=NOW,
        manager_token=MANAGER,
        sales_token=SALES,
        purchasing_token=PURCHASING,
        auto_approve_max_slip_h=5.0,
        auto_approve_priorities="rush",
        # These tests need promises with no slack (the planned finish day), so that a change
        # can break one; the requested-date policy has its own tests (test_replan.py).
        promise_policy="earliest",
    )
    yield s
    s.stop()


def seed_victim(stack) -> None:
    """SO-A (800 x P2, due today) runs on L1; SO-V (500 x P2) follows, promised for Dec 2."""
    assert stack.send_crm(order_event("SO-A", 1, [("P2", 800)], DAY1), "a1").status_code == 202
    body = order_event("SO-V", 1, [("P2", 500)], date(2026, 12, 3))
    assert stack.send_crm(body, "v1").json()["outcome"] == "accepted"
    wait_until(lambda: stack.get("/api/v1/orders/SO-V").json().get("promised_date"))
    assert stack.get("/api/v1/orders/SO-V").json()["promised_date"] == "2026-12-02"
    stack.runtime.live.apply(
        [Update("work_order", "WO-A-1", {"status": "running", "line": "L1", "good": 0})]
    )


def parked(stack, order_id: str, version: int = 1) -> dict:
    """The change the worker's gate made of a CRM event (the webhook only records it)."""
    return wait_until(
        lambda: next(
            (
                c
                for c in stack.get("/api/v1/changes").json()
                if (c["order_id"], c["version"]) == (order_id, version)
            ),
            None,
        )
    )


def crm_got(crm, event_type: str, change_id: int) -> dict:
    delivery = crm.wait_for(
        lambda d: d.json()["type"] == event_type and d.json()["data"].get("change_id") == change_id,
        timeout=10,
    )
    assert delivery.verified
    return delivery.json()["data"]


def announced_changes(stack) -> list[tuple[str, str]]:
    """(change id, status) of each ``change`` announced on the live stream, in order."""
    entries = stack.runtime.live.redis.xrange(STREAM)
    changes = [
        Change.from_json(fields[b"change"] if b"change" in fields else fields["change"])
        for _, fields in entries
    ]
    return [(c.id, c.new["status"]) for c in changes if c.entity == "change"]


def test_roles(stack):
    url = stack.url
    assert httpx.get(f"{url}/api/v1/changes").status_code == 401
    assert httpx.post(f"{url}/api/v1/changes/1/approve").status_code == 401
    assert httpx.post(f"{url}/api/v1/quotes", json={}).status_code == 401
    for token in (DISPLAY_TOKEN, SALES, PURCHASING, MANAGER, API_TOKEN):
        assert httpx.get(f"{url}/api/v1/changes", headers=bearer(token)).json() == []
        assert httpx.get(f"{url}/api/v1/orders", headers=bearer(token)).status_code == 200
    for token in (DISPLAY_TOKEN, SALES, PURCHASING):
        for action in ("approve", "reject"):
            resp = httpx.post(f"{url}/api/v1/changes/1/{action}", headers=bearer(token))
            assert resp.status_code == 403, (token, action)
    for token in (MANAGER, API_TOKEN):
        resp = httpx.post(f"{url}/api/v1/changes/999/approve", headers=bearer(token))
        assert resp.status_code == 404
    assert httpx.get(f"{url}/api/v1/changes/999", headers=bearer(DISPLAY_TOKEN)).status_code == 404
    bad = httpx.get(f"{url}/api/v1/changes?status=maybe", headers=bearer(API_TOKEN))
    assert bad.status_code == 422
    for token in (DISPLAY_TOKEN, PURCHASING):
        resp = httpx.post(f"{url}/api/v1/quotes", headers=bearer(token), json={})
        assert resp.status_code == 403
    # A manager's browser signs in with the token in the URL like any kiosk.
    with httpx.Client(base_url=url) as browser:
        assert browser.get(f"/board?token={MANAGER}").status_code == 303
        resp = browser.post("/api/v1/changes/999/approve", headers={"X-Requested-By": "loopline"})
        assert resp.status_code == 404
        assert browser.get("/api/v1/changes", headers={"X-Requested-By": "loopline"}).json() == []


def test_quote_input_errors_name_the_field(stack):
    def errors(body):
        resp = httpx.post(f"{stack.url}/api/v1/quotes", headers=bearer(SALES), json=body)
        assert resp.status_code == 422, resp.text
        return {e["field"] for e in resp.json()["detail"]}

    good = {"sku": "P1", "qty": 10, "requested_date": "2026-12-05", "priority": "normal"}
    assert errors({**good, "sku": "NOPE"}) == {"sku"}
    assert errors({**good, "qty": 0}) == {"qty"}
    assert errors({**good, "qty": -5, "requested_date": "2026-13-40"}) == {
        "qty",
        "requested_date",
    }
    assert errors({**good, "priority": "asap"}) == {"priority"}
    assert errors({k: v for k, v in good.items() if k != "sku"}) == {"sku"}
    assert errors([good]) == {"body"}


def test_quote_names_the_orders_that_would_slip(stack):
    seed_victim(stack)
    body = {"sku": "P2", "qty": BIG, "requested_date": "2026-12-01", "priority": "rush"}
    # The production manager sees every order's name; the shared sales token, nobody's.
    resp = httpx.post(f"{stack.url}/api/v1/quotes", headers=bearer(MANAGER), json=body)
    assert resp.status_code == 200, resp.text
    quote = resp.json()
    assert {k: quote[k] for k in ("sku", "qty", "requested_date", "priority")} == body
    assert quote["earliest"]["line"] == "L1" and not quote["earliest"]["meets_requested"]
    assert set(quote["earliest"]) >= {"date", "end", "line", "meets_requested"}
    assert quote["prioritized"]["end"] <= quote["earliest"]["end"]
    slipped = {s["order_id"]: s for s in quote["prioritized"]["slips"]}
    assert slipped["SO-V"]["work_order"] == "WO-V-1" and slipped["SO-V"]["breaks_promise"]
    assert slipped["SO-V"]["promised_date"] == "2026-12-02" and slipped["SO-V"]["slip_h"] > 0
    assert "SO-A" not in slipped  # running work stays first
    shared = httpx.post(f"{stack.url}/api/v1/quotes", headers=bearer(SALES), json=body).json()
    assert [s["order_id"] for s in shared["prioritized"]["slips"]] == [None] * len(slipped)


def test_a_change_that_breaks_a_promise_waits_for_a_manager(stack, crm):
    seed_victim(stack)
    resp = stack.send_crm(order_event("SO-H", 1, [("P2", BIG)], DAY1, priority="high"), "h1")
    assert resp.status_code == 202
    assert resp.json() == {
        "outcome": "accepted",
        "order_id": "SO-H",
        "version": 1,
        "webhook_id": "h1",
        "event_type": "order.upserted",
    }
    change = parked(stack, "SO-H")
    assert change["status"] == "pending"
    change_id = change["id"]
    assert stack.get("/api/v1/orders/SO-H").status_code == 404  # not applied
    [listed] = stack.get("/api/v1/changes?status=pending").json()
    assert listed["id"] == change_id and listed["status"] == "pending"
    [hit] = listed["impact"]
    assert hit["order_id"] == "SO-V" and hit["promised_date"] == "2026-12-02"
    assert hit["slip_h"] > 5 and hit["planned_end_after"] > hit["planned_end_before"]
    assert stack.get(f"/api/v1/changes/{change_id}").json() == listed
    told = crm_got(crm, "change.pending", change_id)
    assert told["status"] == "pending" and told["order_id"] == "SO-H" and told["impact"]
    assert announced_changes(stack) == [(str(change_id), "pending")]

    approved = httpx.post(
        f"{stack.url}/api/v1/changes/{change_id}/approve",
        headers=bearer(MANAGER),
        json={"note": "customer is key"},
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert approved.json()["decided_by"] == "production_manager"
    # Applied and replanned: SO-H gets a promise, SO-V's broken one is replaced.
    order = wait_until(
        lambda: (o := stack.get("/api/v1/orders/SO-H").json()).get("promised_date") and o
    )
    actions = [h["action"] for h in order["history"]]
    assert actions[:3] == ["change.pending", "order.created", "change.approved"]
    victim = wait_until(
        lambda: (
            (o := stack.get("/api/v1/orders/SO-V").json())["promised_date"] != "2026-12-02" and o
        )
    )
    assert "order.promise_released" in [h["action"] for h in victim["history"]]
    told = crm_got(crm, "change.approved", change_id)
    assert told == {
        "change_id": change_id,
        "order_id": "SO-H",
        "version": 1,
        "status": "approved",
        "impact": listed["impact"],
        "decided_by": "production_manager",
        "note": "customer is key",
    }
    again = httpx.post(f"{stack.url}/api/v1/changes/{change_id}/reject", headers=bearer(MANAGER))
    assert again.status_code == 409 and "approved" in again.json()["detail"]
    # Screens and stream clients heard of the change when it was parked and when decided.
    assert announced_changes(stack) == [(str(change_id), "pending"), (str(change_id), "approved")]


def test_reject_keeps_the_order_and_a_newer_version_supersedes(stack, crm):
    seed_victim(stack)
    stack.send_crm(order_event("SO-H", 1, [("P2", BIG)], DAY1, "high"), "h1")
    first = {"change_id": parked(stack, "SO-H")["id"]}
    rejected = httpx.post(
        f"{stack.url}/api/v1/changes/{first['change_id']}/reject",
        headers=bearer(API_TOKEN),
        json={"note": "no capacity"},
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert stack.get("/api/v1/orders/SO-H").status_code == 404
    assert stack.get("/api/v1/orders/SO-V").json()["promised_date"] == "2026-12-02"
    told = crm_got(crm, "change.rejected", first["change_id"])
    assert told["note"] == "no capacity" and told["decided_by"] == "admin"

    assert stack.send_crm(order_event("SO-X", 1, [("P2", BIG)], DAY1, "high"), "x1").is_success
    waiting = parked(stack, "SO-X")
    assert waiting["status"] == "pending"
    newer = stack.send_crm(order_event("SO-X", 2, [("P1", 10)], DAY1), "x2").json()
    assert newer["outcome"] == "accepted"
    wait_until(lambda: stack.get("/api/v1/orders/SO-X").json().get("version") == 2)
    late = httpx.post(
        f"{stack.url}/api/v1/changes/{waiting['id']}/approve", headers=bearer(MANAGER)
    )
    assert late.status_code == 409 and "superseded by version 2" in late.json()["detail"]
    assert stack.get(f"/api/v1/changes/{waiting['id']}").json()["status"] == "superseded"
    listed = stack.get("/api/v1/changes").json()
    assert [c["status"] for c in listed] == ["superseded", "rejected"]  # newest first


def test_auto_approve_by_slip_and_by_priority(stack, crm):
    seed_victim(stack)
    stack.send_crm(order_event("SO-S", 1, [("P2", SMALL)], DAY1, "high"), "s1")
    small = parked(stack, "SO-S")
    assert small["status"] == "auto_approved"
    wait_until(lambda: stack.get("/api/v1/orders/SO-S").status_code == 200)  # applied
    stack.send_crm(order_event("SO-R", 1, [("P2", BIG)], DAY1, "rush"), "r1")
    rush = parked(stack, "SO-R")
    assert rush["status"] == "auto_approved"
    listed = stack.get("/api/v1/changes?status=auto_approved").json()
    assert {c["id"]: c["decided_by"] for c in listed} == {
        small["id"]: "auto: every slip within 5 h",
        rush["id"]: "auto: priority rush",
    }
    assert stack.get("/api/v1/changes?status=pending").json() == []
    wait_until(lambda: stack.get("/api/v1/orders/SO-R").json().get("promised_date"))
    told = crm_got(crm, "change.auto_approved", rush["id"])
    assert told["status"] == "auto_approved" and told["order_id"] == "SO-R"
    assert json.dumps(told)  # plain JSON all the way


def test_the_gate_runs_in_the_worker_not_in_the_webhook(stack):
    """The webhook answers at once even while the worker holds the duty lock (busy
    replanning); the approval decision is taken when the worker gets to it."""
    from loopline.models.loop import DUTY_LOCK

    seed_victim(stack)
    busy = stack.runtime.live.redis.lock(DUTY_LOCK, timeout=30)
    assert busy.acquire(blocking_timeout=10)
    try:
        started = time.perf_counter()
        resp = stack.send_crm(order_event("SO-H", 1, [("P2", BIG)], DAY1, "high"), "h1")
        took_s = time.perf_counter() - started
        assert resp.status_code == 202 and resp.json()["outcome"] == "accepted"
        assert took_s < 1.0, took_s  # no preview solve, no wait for the worker
        time.sleep(0.3)
        assert stack.get("/api/v1/changes").json() == []  # undecided while the worker is busy
    finally:
        busy.release()
    assert parked(stack, "SO-H")["status"] == "pending"
