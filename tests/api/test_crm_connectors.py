"""The connector presets over HTTP (real PostgreSQL and Redis, the app as served): Salesforce
gets its SOAP Ack, HubSpot's signature covers the URL it called, Odoo's token is in the URL,
a batch answers per event, and the worker applies what came in."""

from __future__ import annotations

import os

import httpx
import pytest

from loopline.models.records import Order
from tests.ingest.crm.fake_api import FakeApi
from tests.ingest.crm.presets import hubspot_batch_routes, hubspot_incoming, sample, sample_json
from tests.ingest.crm.test_preset_odoo import odoo_rpc
from tests.stack import start_stack, wait_until

ENV = {
    "LOOPLINE_SALESFORCE_ORG_ID": "00D5g000004XyZaEAK",
    "LOOPLINE_SALESFORCE_TOKEN": "sf-token",
    "LOOPLINE_HUBSPOT_CLIENT_SECRET": "hs-secret",
    "LOOPLINE_HUBSPOT_TOKEN": "hs-token",
    "LOOPLINE_ODOO_WEBHOOK_TOKEN": "odoo-url-token-7f3a",
    "LOOPLINE_ODOO_DB": "acme",
    "LOOPLINE_ODOO_LOGIN": "loopline@acme.example",
    "LOOPLINE_ODOO_API_KEY": "odoo-api-key",
}


@pytest.fixture(scope="module")
def crm_apis():
    """One local server playing Salesforce's REST, HubSpot's CRM API and Odoo's JSON-RPC."""
    sf, hs = sample_json("salesforce_api.json"), sample_json("hubspot_api.json")
    api = hubspot_batch_routes(
        FakeApi()
        .route("GET", "/services/data/v60.0/query", lambda c, m: (200, sf))
        .route("GET", r"/crm/v3/objects/deals/18436213044", lambda c, m: (200, hs["deal"]))
        .route(
            "POST", "/crm/v3/objects/line_items/batch/read", lambda c, m: (200, hs["line_items"])
        )
        .route("GET", r"/crm/v3/objects/companies/\d+", lambda c, m: (200, hs["company"]))
        .route("POST", "/jsonrpc", odoo_rpc)
    )
    saved = {k: os.environ.get(k) for k in [*ENV, "LOOPLINE_SALESFORCE_API_URL"]}
    with api:
        os.environ.update(ENV)
        for name in ("SALESFORCE_API_URL", "HUBSPOT_API_URL", "ODOO_URL"):
            os.environ[f"LOOPLINE_{name}"] = api.url
        yield api
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def stack(crm_apis, postgres_server, postgres_cluster, redis_server):
    name = postgres_cluster.create_database()
    stack = start_stack(
        database_url=postgres_cluster.url_for(name),
        redis_url=redis_server,
        mqtt_url=None,
        crm_url=None,
        max_body_bytes=65536,
        auto_approve_priorities="normal,high,rush",
    )
    yield stack
    stack.stop()


def stored(stack, order_id: str) -> Order | None:
    with stack.runtime.sessions() as s:
        return s.get(Order, order_id)


def test_salesforce_gets_the_soap_ack_and_the_order_is_applied(stack):
    r = httpx.post(
        f"{stack.url}/api/v1/crm/salesforce/events",
        content=sample("salesforce_outbound.xml"),
        headers={"content-type": "text/xml; charset=utf-8", "soapaction": '""'},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    assert "<Ack>true</Ack>" in r.text
    order = wait_until(lambda: stored(stack, "0065g00000ZbCdEAAV"), timeout=20)
    assert [(ln.sku, ln.qty) for ln in order.lines] == [("P1", 500), ("P2", 20)]


def test_hubspot_signature_covers_the_url_and_a_batch_answers_per_event(stack):
    url = f"{stack.url}/api/v1/crm/hubspot/events"
    incoming = hubspot_incoming(sample("hubspot_batch.json"), "hs-secret", url)
    r = httpx.post(url, content=incoming.body, headers=dict(incoming.headers))
    assert r.status_code == 202, r.text
    assert [e["outcome"] for e in r.json()["events"]] == [
        "accepted",
        "accepted",
        "ignored",
        "accepted",
    ]
    wait_until(lambda: stored(stack, "18436213044"), timeout=20)
    wrong = hubspot_incoming(sample("hubspot_batch.json"), "hs-secret", url + "?x=1")
    r = httpx.post(url, content=wrong.body, headers=dict(wrong.headers))
    assert r.status_code == 401


def test_odoo_token_in_the_url(stack):
    url = f"{stack.url}/api/v1/crm/odoo/events"
    body = sample("odoo_sale_order.json")
    headers = {"content-type": "application/json"}
    assert httpx.post(url, content=body, headers=headers).status_code == 401
    r = httpx.post(url, params={"token": "odoo-url-token-7f3a"}, content=body, headers=headers)
    assert r.status_code == 202 and r.json()["order_id"] == "S00042"
    wait_until(lambda: stored(stack, "S00042"), timeout=20)


def test_an_unknown_connector_is_404(stack):
    r = httpx.post(f"{stack.url}/api/v1/crm/nosuch/events", content=b"{}")
    assert r.status_code == 404
