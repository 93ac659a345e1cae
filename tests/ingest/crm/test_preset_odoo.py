"""Odoo 17+ webhook: unsigned, so a per-connector token in the URL and an optional IP
allowlist; order_line ids read through JSON-RPC; the promise written to a field (a local
server plays Odoo's JSON-RPC)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from loopline.ingest.crm.auth import BadSignature, Incoming
from loopline.ingest.crm.connector import default_registry
from loopline.models.db import transaction
from loopline.models.intake import apply_received
from loopline.models.outbox import enqueue
from loopline.models.records import InboxEvent, Order
from loopline.settings import new_webhook_secret
from tests.factories import connector_relay
from tests.ingest.crm.fake_api import Call, FakeApi
from tests.ingest.crm.presets import deliver, preset, sample, sample_json

TOKEN = "odoo-url-token-7f3a"

LINES = {
    101: {
        "id": 101,
        "product_id": [7, "[P1] Gear"],
        "product_uom_qty": 500.0,
        "display_type": False,
    },
    102: {"id": 102, "product_id": False, "product_uom_qty": 0.0, "display_type": "line_section"},
    103: {
        "id": 103,
        "product_id": [8, "[P2] Bracket"],
        "product_uom_qty": 20.0,
        "display_type": False,
    },
}


def odoo_rpc(call: Call, match) -> tuple[int, object]:
    params = call.body["params"]
    if params["service"] == "common":
        db, login, key = params["args"]
        ok = (db, login, key) == ("acme", "loopline@acme.example", "odoo-api-key")
        return 200, {"jsonrpc": "2.0", "id": call.body["id"], "result": 9 if ok else False}
    db, uid, key, model, method, args, kw = params["args"]
    if model == "sale.order.line" and method == "read":
        result: object = [LINES[i] for i in args[0]]
    elif model == "product.product" and method == "read":
        result = [{"id": i, "default_code": {7: "P1", 8: "P2"}[i]} for i in args[0]]
    elif model == "res.partner" and method == "read":
        result = [{"id": 14, "name": "Acme Gears BV", "ref": "C-9"}]
    elif model == "sale.order" and method == "write":
        result = True
    else:
        return 200, {"jsonrpc": "2.0", "id": 1, "error": {"message": f"no {model}.{method}"}}
    return 200, {"jsonrpc": "2.0", "id": call.body["id"], "result": result}


@pytest.fixture
def odoo(monkeypatch):
    monkeypatch.setenv("LOOPLINE_ODOO_WEBHOOK_TOKEN", TOKEN)
    monkeypatch.setenv("LOOPLINE_ODOO_DB", "acme")
    monkeypatch.setenv("LOOPLINE_ODOO_LOGIN", "loopline@acme.example")
    monkeypatch.setenv("LOOPLINE_ODOO_API_KEY", "odoo-api-key")
    with FakeApi().route("POST", "/jsonrpc", odoo_rpc) as api:
        monkeypatch.setenv("LOOPLINE_ODOO_URL", api.url)
        yield api


def odoo_in(body: bytes, token: str = TOKEN, ip: str = "10.0.0.5") -> Incoming:
    return Incoming.of(
        body,
        {"content-type": "application/json"},
        query={"token": token},
        url=f"https://loopline.example/api/v1/crm/odoo/events?token={token}",
        client_ip=ip,
    )


def test_a_confirmed_order_reads_its_lines_and_partner_by_json_rpc(sessions, odoo):
    (receipt,) = deliver(sessions, preset("odoo"), odoo_in(sample("odoo_sale_order.json"))).receipts
    assert (receipt.outcome, receipt.order_id) == ("accepted", "S00042")
    apply_received(sessions, gate=None)
    with sessions() as s:
        order = s.get(Order, "S00042")
        # The section line (display_type) is not an order line.
        assert [(ln.sku, ln.qty) for ln in order.lines] == [("P1", 500), ("P2", 20)]
        assert (order.customer_id, order.customer.name) == ("C-9", "Acme Gears BV")
        assert (str(order.requested_date), order.priority, order.sales_rep) == (
            "2026-12-10",
            "high",
            "6",
        )
        assert s.scalar(select(InboxEvent)).event["ref"] == "42"
    methods = [
        c.body["params"]["args"][3:5] for c in odoo.calls if c.body["params"]["service"] == "object"
    ]
    assert ["sale.order.line", "read"] in methods and ["product.product", "read"] in methods


def test_the_same_save_sent_twice_is_a_duplicate(sessions, odoo):
    body = sample("odoo_sale_order.json")
    deliver(sessions, preset("odoo"), odoo_in(body))
    (again,) = deliver(sessions, preset("odoo"), odoo_in(body)).receipts
    assert again.outcome == "duplicate"


def test_quotations_are_ignored_and_cancel_needs_no_api(sessions, odoo):
    body = sample_json("odoo_sale_order.json")
    (quote,) = deliver(
        sessions, preset("odoo"), odoo_in(json.dumps(body | {"state": "draft"}).encode())
    ).receipts
    assert quote.outcome == "ignored"
    cancel = body | {"state": "cancel", "write_date": "2026-11-29 08:00:00"}
    (cancelled,) = deliver(sessions, preset("odoo"), odoo_in(json.dumps(cancel).encode())).receipts
    assert cancelled.event_type == "order.cancelled" and odoo.calls == []


def test_a_missing_or_wrong_url_token_is_refused(sessions, odoo):
    body = sample("odoo_sale_order.json")
    for token in ("", "guess"):
        with pytest.raises(BadSignature, match="token"):
            deliver(sessions, preset("odoo"), odoo_in(body, token=token))


def test_the_ip_allowlist_refuses_other_addresses(sessions, odoo):
    allow = preset("odoo").model_copy(
        update={"auth": preset("odoo").auth.model_copy(update={"ip_allowlist": ["10.0.0.0/24"]})}
    )
    body = sample("odoo_sale_order.json")
    with pytest.raises(BadSignature, match="allowlist"):
        deliver(sessions, allow, odoo_in(body, ip="192.0.2.7"))
    (ok,) = deliver(sessions, allow, odoo_in(body, ip="10.0.0.5")).receipts
    assert ok.outcome == "accepted"


def test_the_promise_is_written_to_the_order_by_json_rpc(sessions, odoo):
    deliver(sessions, preset("odoo"), odoo_in(sample("odoo_sale_order.json")))
    apply_received(sessions, gate=None)
    odoo.calls.clear()
    with transaction(sessions) as s:
        payload = {"order_id": "S00042", "promised_date": "2026-12-10", "risk": "on_track"}
        enqueue(s, event_type="order.updated", order_id="S00042", payload=payload)
    with connector_relay(
        sessions, registry=default_registry(), url=None, secret=new_webhook_secret()
    ) as relay:
        assert relay.deliver_due() == 1
    (write,) = [c for c in odoo.calls if c.body["params"]["args"][4:5] == ["write"]]
    assert write.body["params"]["args"][3:6] == [
        "sale.order",
        "write",
        [[42], {"x_loopline_promised_date": "2026-12-10", "x_loopline_risk": "on_track"}],
    ]
