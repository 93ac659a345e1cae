"""The REST contract: auth, the CRM webhook's status codes, orders, lines, alerts, stream."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import websockets

from loopline.models.alerts import open_alert
from loopline.models.db import transaction
from loopline.models.records import DeadLetter
from loopline.models.watch import mirror_alerts
from tests.factories import order_event
from tests.stack import API_TOKEN, DISPLAY_TOKEN, run_async, wait_until


def test_api_needs_a_bearer_token(api_stack):
    assert httpx.get(f"{api_stack.url}/api/v1/orders").status_code == 401
    bad = httpx.get(f"{api_stack.url}/api/v1/orders", headers={"Authorization": "Bearer no"})
    assert bad.status_code == 401
    assert httpx.get(f"{api_stack.url}/api/v1/healthz").json()["status"] == "ok"


def test_unknown_api_path_is_a_json_404(api_stack):
    resp = api_stack.get("/api/v1/nope")
    assert resp.status_code == 404 and "nope" in resp.json()["detail"]


def test_display_token_reads_but_cannot_ack(api_stack):
    display = {"Authorization": f"Bearer {DISPLAY_TOKEN}"}
    assert httpx.get(f"{api_stack.url}/api/v1/lines", headers=display).status_code == 200
    assert httpx.post(f"{api_stack.url}/api/v1/alerts/1/ack", headers=display).status_code == 403


def test_pages_need_a_signed_in_browser_and_token_in_url_signs_in(api_stack):
    assert httpx.get(f"{api_stack.url}/wall").status_code == 401
    with httpx.Client(base_url=api_stack.url) as browser:
        first = browser.get(f"/wall?token={DISPLAY_TOKEN}&lang=zh-CN")
        assert first.status_code == 303
        assert first.headers["location"] == "/wall?lang=zh-CN"  # the token leaves the URL
        assert browser.get("/wall").status_code == 200
        assert browser.get("/board").status_code == 200
    assert httpx.get(f"{api_stack.url}/wall?token=wrong").status_code == 401


def test_webhook_status_codes(api_stack):
    body = order_event("SO-7001", 3)
    ok = api_stack.send_crm(body, "hook-1")
    assert ok.status_code == 202 and ok.json()["outcome"] == "accepted"
    wait_until(lambda: api_stack.get("/api/v1/orders/SO-7001").status_code == 200)
    dup = api_stack.send_crm(body, "hook-1")
    assert dup.status_code == 202 and dup.json()["outcome"] == "duplicate"
    stale = api_stack.send_crm(order_event("SO-7001", 2, [("P1", 5)]), "hook-2")
    assert stale.status_code == 202 and stale.json()["outcome"] == "stale"
    assert api_stack.send_crm(body, "hook-3", secret="whsec_" + "A" * 32).status_code == 401
    old = api_stack.send_crm(order_event("SO-7002"), "hook-4", timestamp=time.time() - 3600)
    assert old.status_code == 401
    unsigned = httpx.post(f"{api_stack.url}/api/v1/crm/events", json=body)
    assert unsigned.status_code == 401
    bad = order_event("SO-7003")
    bad["order"]["lines"][0]["qty"] = -1
    del bad["order"]["requested_date"]
    resp = api_stack.send_crm(bad, "hook-5")
    assert resp.status_code == 422
    fields = {e["field"] for e in resp.json()["detail"]}
    assert {"order.lines[0].qty", "order.requested_date"} <= fields
    huge = order_event("SO-7004")
    huge["order"]["sales_rep"] = "x" * 5000
    assert api_stack.send_crm(huge, "hook-6").status_code == 413  # and nothing written
    unknown = api_stack.send_crm(order_event("SO-7005", lines=[("NOPE", 1)]), "hook-7")
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["field"] == "order.lines[0].sku"
    assert api_stack.send_crm(body, "hook-8", source="nosuchcrm").status_code == 404
    with api_stack.runtime.sessions() as s:
        reasons = {d.reason for d in s.query(DeadLetter).all()}
    assert {"invalid_body", "unknown_product"} <= reasons and "too_large" not in reasons


def test_order_view_and_404(api_stack):
    api_stack.send_crm(order_event("SO-7100", 1, [("P1", 100), ("P2", 10)]), "h-7100")
    order = wait_until(
        lambda: (o := api_stack.get("/api/v1/orders/SO-7100").json()).get("promised_date") and o
    )
    assert set(order) >= {
        "id",
        "customer",
        "status",
        "requested_date",
        "promised_date",
        "eta",
        "progress",
        "risk",
        "work_orders",
        "history",
    }
    assert set(order["risk"]) == {"level", "reason"}
    assert {w["product"] for w in order["work_orders"]} == {"P1", "P2"}
    assert set(order["work_orders"][0]) >= {
        "id",
        "line",
        "product",
        "qty",
        "good",
        "scrap",
        "planned_start",
        "planned_end",
    }
    listed = api_stack.get("/api/v1/orders").json()
    assert [o["history"] for o in listed if o["id"] == "SO-7100"] == [order["history"]]
    assert [o["id"] for o in api_stack.get("/api/v1/orders?customer=acm").json()] == [
        o["id"] for o in listed
    ]
    assert api_stack.get("/api/v1/orders?customer=nobody").json() == []
    assert api_stack.get("/api/v1/orders/NOPE").status_code == 404
    lines = api_stack.get("/api/v1/lines").json()
    assert {ln["id"] for ln in lines} == {"L1", "L2"}
    assert all({"id", "site", "state", "rates"} <= set(ln) for ln in lines)
    assert api_stack.get("/api/v1/plan").json()["assignments"]


def test_alert_ack(api_stack):
    rt = api_stack.runtime
    with transaction(rt.sessions) as s:
        alert = open_alert(
            s,
            key="test:1",
            kind="test",
            entity="line",
            entity_id="L1",
            severity="warning",
            message="check me",
        )
        s.flush()
        mirror_alerts(s, rt.live)
        alert_id = alert.id
    assert any(a["id"] == str(alert_id) for a in api_stack.get("/api/v1/alerts").json())
    acked = api_stack.post(f"/api/v1/alerts/{alert_id}/ack").json()
    assert acked["status"] == "acked" and acked["acked_by"] == "admin"
    # The live state follows SQL: a worker sweep that read the alert just before the ack
    # may write "open" once more, and its next sweep writes "acked" (seen once in CI).
    wait_until(lambda: rt.live.get("alert", str(alert_id))["status"] == "acked")
    assert api_stack.post("/api/v1/alerts/999999/ack").status_code == 404


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_stream_sends_live_changes(api_stack):
    # A bearer header, never a token in the URL (URLs end up in logs): tests/api/test_sessions.
    url = api_stack.url.replace("http", "ws") + "/api/v1/stream?entity=order"

    async def scenario():
        async with websockets.connect(url, additional_headers=bearer(API_TOKEN)) as ws:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(api_stack.send_crm, order_event("SO-7200"), "h-7200")
            while True:
                change = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if change["id"] == "SO-7200":
                    return change

    change = run_async(scenario())
    assert change["entity"] == "order"

    async def refused():
        try:
            async with websockets.connect(url, additional_headers=bearer("wrong")) as ws:
                await ws.recv()
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    assert run_async(refused()) in (4401, 403)


# Answers whose shape is not a view of ours (a health probe's own model is typed too).
UNTYPED: set[str] = set()


def test_openapi_documents_the_read_routes_and_answers_match_it(api_stack):
    """The OpenAPI names a typed schema for each read route, and real answers carry exactly
    its fields (no undocumented key, none missing)."""
    spec = httpx.get(api_stack.url + "/api/v1/openapi.json")
    if spec.status_code == 404:
        spec = httpx.get(api_stack.url + "/openapi.json")
    doc = spec.json()
    schemas = doc["components"]["schemas"]

    def answered(path: str, method: str = "get") -> dict:
        ok = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]
        return ok["schema"]

    assert answered("/api/v1/orders")["items"]["$ref"].endswith("/OrderView")
    assert answered("/api/v1/orders/{order_id}")["$ref"].endswith("/OrderView")
    assert answered("/api/v1/lines")["items"]["$ref"].endswith("/LineView")
    assert answered("/api/v1/plan")["$ref"].endswith("/PlanView")
    assert answered("/api/v1/alerts")["items"]["$ref"].endswith("/AlertView")
    assert answered("/api/v1/changes")["items"]["$ref"].endswith("/ChangeView")
    assert answered("/api/v1/changes/{change_id}")["$ref"].endswith("/ChangeView")
    for decision in ("approve", "reject"):
        path = f"/api/v1/changes/{{change_id}}/{decision}"
        assert answered(path, "post")["$ref"].endswith("/ChangeView")
    assert answered("/api/v1/quotes", "post")["$ref"].endswith("/QuoteView")
    assert answered("/api/v1/purchase-requests")["items"]["$ref"].endswith("/PurchaseRequestView")
    assert answered("/api/v1/materials")["$ref"].endswith("/MaterialsView")
    # Every JSON read route names its schema: a new route without one fails here.
    for path, methods in doc["paths"].items():
        ok = methods.get("get", {}).get("responses", {}).get("200", {})
        schema = ok.get("content", {}).get("application/json", {}).get("schema")
        if path.startswith("/api/v1/") and schema is not None and path not in UNTYPED:
            assert schema.get("$ref") or schema.get("items", {}).get("$ref"), path

    api_stack.send_crm(order_event("SO-7200", 1, [("P1", 20)]), "h-7200")
    order = wait_until(
        lambda: (o := api_stack.get("/api/v1/orders/SO-7200").json()).get("promised_date") and o
    )
    assert set(order) == set(schemas["OrderView"]["properties"])
    assert set(order["work_orders"][0]) == set(schemas["WorkOrderView"]["properties"])
    for line in api_stack.get("/api/v1/lines").json():
        assert set(line) == set(schemas["LineView"]["properties"])
    assert set(api_stack.get("/api/v1/plan").json()) == set(schemas["PlanView"]["properties"])
