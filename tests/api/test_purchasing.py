"""Purchase requests and materials over REST, and who may see them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from loopline.models.db import transaction
from loopline.models.records import BomLine, Material, PurchaseOrder
from tests.factories import order_event
from tests.stack import DISPLAY_TOKEN, start_stack, wait_until

PURCHASING_TOKEN = "test-purchasing-token"
MANAGER_TOKEN = "test-manager-token"
SALES_TOKEN = "test-sales-token"


@pytest.fixture(scope="module")
def stack(postgres_server, postgres_cluster, redis_server):
    name = postgres_cluster.create_database()
    stack = start_stack(
        database_url=postgres_cluster.url_for(name),
        redis_url=redis_server,
        mqtt_url=None,
        crm_url=None,
        purchasing_token=PURCHASING_TOKEN,
        manager_token=MANAGER_TOKEN,
        sales_token=SALES_TOKEN,
    )
    now = datetime.now(UTC)
    with transaction(stack.runtime.sessions) as s:
        # Two of M1 in every P1; 10 in stock and 20 on order: an order for 100 P1 is short.
        s.add(Material(id="M1", name="Steel bar", unit="kg", on_hand=10, lead_time_days=4))
        s.flush()
        s.add(BomLine(sku="P1", material_id="M1", qty_per_unit=2.0))
        s.add(
            PurchaseOrder(id="PO-1", material_id="M1", qty=20, arrives_at=now + timedelta(days=1))
        )
    body = order_event("SO-8001", 1, [("P1", 100)], (now + timedelta(days=2)).date())
    assert stack.send_crm(body, "pr-1").status_code == 202
    wait_until(lambda: stack.get("/api/v1/orders/SO-8001").json().get("promised_date"))
    yield stack
    stack.stop()


def _get(stack, path, token):
    return httpx.get(f"{stack.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_purchase_requests_show_the_shortage_and_who_waits(stack):
    requests = wait_until(lambda: stack.get("/api/v1/purchase-requests").json())
    [pr] = requests
    assert (pr["material"], pr["unit"], pr["name"]) == ("M1", "kg", "Steel bar")
    assert pr["qty"] >= 170 - 1e-6  # 200 needed, 30 in stock or on order
    assert pr["jobs"] == [{"job": "WO-8001-1", "order": "SO-8001"}]
    assert pr["orders"] == ["SO-8001"]
    needed = datetime.fromisoformat(pr["needed_by"].replace("Z", "+00:00"))
    arrives = datetime.fromisoformat(pr["arrives_if_ordered_now"].replace("Z", "+00:00"))
    assert pr["late_by_h"] == pytest.approx(
        max(0.0, (arrives - needed).total_seconds() / 3600), abs=0.01
    )


@pytest.mark.parametrize(
    ("token", "status"),
    [
        (PURCHASING_TOKEN, 200),
        (MANAGER_TOKEN, 200),
        ("test-admin-token", 200),
        (SALES_TOKEN, 403),
        (DISPLAY_TOKEN, 403),
        ("wrong", 401),
    ],
)
def test_purchase_requests_are_for_purchasing_and_managers(stack, token, status):
    assert _get(stack, "/api/v1/purchase-requests", token).status_code == status


def test_materials_show_stock_on_order_and_bom_to_any_reader(stack):
    resp = _get(stack, "/api/v1/materials", DISPLAY_TOKEN)
    assert resp.status_code == 200
    body = resp.json()
    [m1] = body["materials"]
    assert (m1["on_hand"], m1["on_order"], m1["used_in"]) == (10, 20, {"P1": 2.0})
    assert [po["id"] for po in m1["purchase_orders"]] == ["PO-1"]
    assert body["bom"] == {"P1": {"M1": 2.0}}
    wait_until(lambda: stack.get("/api/v1/materials").json()["materials"][0]["short"])
