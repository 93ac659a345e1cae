"""POST /orders/{id}/deliver and the follow-up inbox over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from loopline.models.db import transaction
from loopline.models.followup import open_due_followups
from loopline.models.records import OutboxEvent
from tests.factories import order_event
from tests.stack import DISPLAY_TOKEN, wait_until


def test_deliver_opens_tasks_that_the_rep_completes(api_stack):
    assert api_stack.send_crm(order_event("SO-8101"), "fu-1").status_code == 202
    wait_until(lambda: api_stack.get("/api/v1/orders/SO-8101").status_code == 200)
    display = {"Authorization": f"Bearer {DISPLAY_TOKEN}"}
    refused = httpx.post(f"{api_stack.url}/api/v1/orders/SO-8101/deliver", headers=display)
    assert refused.status_code == 403
    assert api_stack.post("/api/v1/orders/NOPE/deliver").status_code == 404
    bad = api_stack.post("/api/v1/orders/SO-8101/deliver", json={"delivered_at": "yesterday"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "delivered_at"

    at = datetime(2026, 11, 30, 10, tzinfo=UTC)
    resp = api_stack.post("/api/v1/orders/SO-8101/deliver", json={"delivered_at": at.isoformat()})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["new"] and body["status"] == "delivered"
    assert body["delivered_at"] == "2026-11-30T10:00:00Z"
    assert [t["kind"] for t in body["tasks"]] == ["delivery_confirmation"]
    assert api_stack.post("/api/v1/orders/SO-8101/deliver").json()["new"] is False
    assert api_stack.get("/api/v1/orders/SO-8101").json()["status"] == "delivered"

    inbox = api_stack.get("/api/v1/tasks", params={"assignee": "zhang.wei"}).json()
    confirm = next(t for t in inbox if t["order_id"] == "SO-8101")
    done = api_stack.post(f"/api/v1/tasks/{confirm['id']}/complete", json={"note": "signed"})
    assert done.status_code == 200 and done.json()["status"] == "done"
    again = api_stack.post(f"/api/v1/tasks/{confirm['id']}/complete", json={})
    assert again.status_code == 409

    with transaction(api_stack.runtime.sessions) as s:
        assert open_due_followups(s, now=at + timedelta(days=8), after=timedelta(days=7)) >= 1
    sat = next(
        t
        for t in api_stack.get("/api/v1/tasks", params={"order_id": "SO-8101"}).json()
        if t["kind"] == "satisfaction"
    )
    missing = api_stack.post(f"/api/v1/tasks/{sat['id']}/complete", json={"note": "?"})
    assert missing.status_code == 422 and missing.json()["detail"][0]["field"] == "score"
    too_high = api_stack.post(f"/api/v1/tasks/{sat['id']}/complete", json={"score": 120})
    assert too_high.status_code == 422 and too_high.json()["detail"][0]["field"] == "score"
    ok = api_stack.post(f"/api/v1/tasks/{sat['id']}/complete", json={"score": 90, "note": "ok"})
    assert ok.status_code == 200 and ok.json()["score"] == 90
    with api_stack.runtime.sessions() as s:
        owed = [
            (r.event_type, r.payload.get("kind"), r.payload.get("status"))
            for r in s.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.order_id == "SO-8101")
                .order_by(OutboxEvent.id)
            )
            if r.event_type.startswith("followup.")
        ]
    assert owed == [
        ("followup.opened", "delivery_confirmation", "open"),
        ("followup.completed", "delivery_confirmation", "done"),
        ("followup.opened", "satisfaction", "open"),
        ("followup.completed", "satisfaction", "done"),
    ]


def test_kpi_answers_the_report_typed(api_stack):
    resp = api_stack.get("/api/v1/kpi", params={"weeks": 4})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["period_weeks"] == 4 and len(body["weeks"]) == 4
    keys = [k["key"] for k in body["kpis"]]
    assert keys == [
        "on_time_delivery",
        "lead_time_avg",
        "lead_time_p90",
        "promise_reliability",
        "promise_slip",
        "inventory_turns",
        "satisfaction",
        "open_alerts",
    ]
    assert all(len(k["trend"]) == 4 for k in body["kpis"])
    assert {ln["line"] for ln in body["oee"]["lines"]} == {"L1", "L2"}
    bad = api_stack.get("/api/v1/kpi", params={"weeks": 5})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "weeks"
    assert httpx.get(f"{api_stack.url}/api/v1/kpi").status_code == 401


def test_the_crm_says_delivered_through_the_webhook(api_stack):
    assert api_stack.send_crm(order_event("SO-8201"), "crm-d1").status_code == 202
    wait_until(lambda: api_stack.get("/api/v1/orders/SO-8201").status_code == 200)
    delivered = order_event("SO-8201", 2)
    delivered["order"]["status"] = "delivered"
    assert api_stack.send_crm(delivered, "crm-d2").status_code == 202
    wait_until(lambda: api_stack.get("/api/v1/orders/SO-8201").json()["status"] == "delivered")
    [task] = api_stack.get("/api/v1/tasks", params={"order_id": "SO-8201"}).json()
    assert (task["kind"], task["assignee"]) == ("delivery_confirmation", "zhang.wei")
    assert task["delivered_at"] == delivered["occurred_at"]  # no delivered_at: occurred_at
    bad = order_event("SO-8201", 3)
    bad["order"]["status"] = "shipped"
    refused = api_stack.send_crm(bad, "crm-d3")
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["field"] == "order.status"
