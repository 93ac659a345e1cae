"""HubSpot webhooks v3: a recorded batch, its signature and 5-minute window, the deal's line
items and company read through the CRM API, and the promise written to deal properties (a
local server plays HubSpot's API)."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from loopline.ingest.crm.auth import BadSignature
from loopline.ingest.crm.connector import default_registry
from loopline.ingest.crm.receive import FetchFailed
from loopline.models.db import transaction
from loopline.models.intake import apply_received
from loopline.models.outbox import enqueue
from loopline.models.records import DeadLetter, InboxEvent, Order, OrderTombstone
from loopline.settings import new_webhook_secret
from tests.factories import connector_relay
from tests.ingest.crm.fake_api import FakeApi
from tests.ingest.crm.presets import (
    deliver,
    hubspot_batch_routes,
    hubspot_incoming,
    preset,
    sample,
    sample_json,
)

SECRET = "hubspot-client-secret"
URL = "https://loopline.example/api/v1/crm/hubspot/events"


@pytest.fixture
def hubspot(monkeypatch):
    answers = sample_json("hubspot_api.json")
    api = hubspot_batch_routes(  # a delivery of several deals: one batch call a kind
        FakeApi()
        .route("GET", r"/crm/v3/objects/deals/18436213044", lambda c, m: (200, answers["deal"]))
        .route(
            "POST",
            "/crm/v3/objects/line_items/batch/read",
            lambda c, m: (200, answers["line_items"]),
        )
        .route(
            "GET", r"/crm/v3/objects/companies/9876543210", lambda c, m: (200, answers["company"])
        )
        .route("PATCH", r"/crm/v3/objects/deals/(\d+)", lambda c, m: (200, {"id": m.group(1)}))
    )
    monkeypatch.setenv("LOOPLINE_HUBSPOT_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("LOOPLINE_HUBSPOT_TOKEN", "pat-na1-token")
    with api:
        monkeypatch.setenv("LOOPLINE_HUBSPOT_API_URL", api.url)
        yield api


def test_a_batch_is_fetched_mapped_and_recorded_per_event(sessions, hubspot):
    body = sample("hubspot_batch.json")
    delivery = deliver(sessions, preset("hubspot"), hubspot_incoming(body, SECRET, URL))
    outcomes = [(r.outcome, r.order_id, r.event_type) for r in delivery.receipts]
    assert outcomes == [
        ("accepted", "18436213044", "order.upserted"),
        ("accepted", "18436213044", "order.upserted"),  # a later occurredAt: a newer version
        ("ignored", "", ""),  # Loopline's own property coming back
        ("accepted", "18436219999", "order.cancelled"),
    ]
    # The two events of one deal: one batch read of each kind, not three calls an event.
    assert [(c.method, c.path) for c in hubspot.calls] == [
        ("POST", "/crm/v3/objects/deals/batch/read"),
        ("POST", "/crm/v4/associations/deals/line_items/batch/read"),
        ("POST", "/crm/v4/associations/deals/companies/batch/read"),
        ("POST", "/crm/v3/objects/line_items/batch/read"),
        ("POST", "/crm/v3/objects/companies/batch/read"),
    ]
    assert all(c.headers["authorization"] == "Bearer pat-na1-token" for c in hubspot.calls)
    assert hubspot.calls[0].body["inputs"] == [{"id": "18436213044"}]
    assert "hs_priority" in hubspot.calls[0].body["properties"]
    apply_received(sessions, gate=None)
    with sessions() as s:
        order = s.get(Order, "18436213044")
        assert order.version == 1795852860456 and order.priority == "high"
        # Lines in the deal's order, whatever order the batch read answered in.
        assert [(ln.sku, ln.qty) for ln in order.lines] == [("P1", 500), ("P2", 20)]
        assert (
            order.customer.name == "Acme Gears GmbH" and str(order.requested_date) == "2026-12-10"
        )
        assert s.get(OrderTombstone, "18436219999") is not None
        ids = set(s.scalars(select(InboxEvent.webhook_id)))
        assert ids == {"1003528145", "1003528146", "1003528150"}


def test_a_redelivered_batch_is_all_duplicates(sessions, hubspot):
    body = sample("hubspot_batch.json")
    deliver(sessions, preset("hubspot"), hubspot_incoming(body, SECRET, URL))
    again = deliver(sessions, preset("hubspot"), hubspot_incoming(body, SECRET, URL))
    assert [r.outcome for r in again.receipts] == ["duplicate", "duplicate", "ignored", "duplicate"]


def test_signature_url_body_and_window_are_checked(sessions, hubspot):
    body = sample("hubspot_batch.json")
    c = preset("hubspot")
    with pytest.raises(BadSignature, match="does not match"):
        deliver(sessions, c, hubspot_incoming(body, "other-secret", URL))
    signed_elsewhere = hubspot_incoming(body, SECRET, "https://evil.example/hook")
    moved = type(signed_elsewhere)(**{**vars(signed_elsewhere), "url": URL})
    with pytest.raises(BadSignature, match="does not match"):
        deliver(sessions, c, moved)
    old = int((time.time() - 301) * 1000)
    with pytest.raises(BadSignature, match="300 s"):
        deliver(sessions, c, hubspot_incoming(body, SECRET, URL, at_ms=old))
    with sessions() as s:
        assert s.scalar(select(InboxEvent)) is None


def test_an_api_failure_is_a_502_kept_as_a_dead_letter(sessions, hubspot):
    hubspot.fail(1, 500)
    with pytest.raises(FetchFailed, match="HTTP 500"):
        deliver(
            sessions, preset("hubspot"), hubspot_incoming(sample("hubspot_batch.json"), SECRET, URL)
        )
    with sessions() as s:
        assert s.scalar(select(DeadLetter)).reason == "fetch_failed"


def test_the_promise_is_written_to_the_deal(sessions, hubspot):
    deliver(
        sessions, preset("hubspot"), hubspot_incoming(sample("hubspot_batch.json"), SECRET, URL)
    )
    apply_received(sessions, gate=None)
    with transaction(sessions) as s:
        payload = {"order_id": "18436213044", "promised_date": "2026-12-10", "eta_date": None}
        payload |= {"risk": "on_track", "status": "open", "progress": 0.0}
        enqueue(s, event_type="order.updated", order_id="18436213044", payload=payload)
    with connector_relay(
        sessions, registry=default_registry(), url=None, secret=new_webhook_secret()
    ) as relay:
        assert relay.deliver_due() == 1
    (patch,) = hubspot.written("PATCH")
    assert patch.path == "/crm/v3/objects/deals/18436213044"
    assert patch.body == {
        "properties": {
            "loopline_promised_date": "2026-12-10",
            "loopline_eta_date": "",
            "loopline_risk": "on_track",
            "loopline_status": "open",
        }
    }


class _Portal:
    """A HubSpot portal of ``n`` deals (deal ``i`` has ``i % 3 + 1`` line items and company
    ``i % 7``) behind the batch endpoints; ``missing`` deals answer nothing."""

    def __init__(self, n: int, missing: set[str] = frozenset()) -> None:
        self.deals = {str(7_000_000 + i): i for i in range(n)}
        self.missing = missing

    def _batch(self, kind: str):
        def answer(call, m):
            out = []
            for item in call.body["inputs"]:
                key = item["id"]
                if kind == "deals" and key in self.deals and key not in self.missing:
                    props = {"closedate": "2026-12-20T00:00:00Z", "hs_priority": "medium"}
                    out.append({"id": key, "properties": props})
                elif kind == "line_items":
                    deal, n = key.split("-")
                    props = {
                        "hs_sku": "P1" if int(n) % 2 == 0 else "P2",
                        "quantity": str(int(n) + 1),
                    }
                    out.append({"id": key, "properties": props})
                elif kind == "companies":
                    out.append({"id": key, "properties": {"name": f"Company {key}"}})
            return 200, {"status": "COMPLETE", "results": out[::-1]}  # any order

        return answer

    def _associations(self, kind: str):
        def answer(call, m):
            out = []
            for item in call.body["inputs"]:
                i = self.deals[item["id"]]
                to = (
                    [f"{item['id']}-{n}" for n in range(i % 3 + 1)]
                    if kind == "line_items"
                    else [str(100 + i % 7)]
                )
                out.append({"from": {"id": item["id"]}, "to": [{"toObjectId": t} for t in to]})
            return 200, {"status": "COMPLETE", "results": out}

        return answer

    def api(self) -> FakeApi:
        api = FakeApi()
        for kind in ("deals", "line_items", "companies"):
            api.route("POST", f"/crm/v3/objects/{kind}/batch/read", self._batch(kind))
        for kind in ("line_items", "companies"):
            api.route(
                "POST", f"/crm/v4/associations/deals/{kind}/batch/read", self._associations(kind)
            )
        return api


def _creations(deal_ids: list[str]) -> bytes:
    events = [
        {
            "eventId": 5_000_000 + k,
            "occurredAt": 1795852800123,
            "subscriptionType": "deal.creation",
            "objectId": int(deal_id),
        }
        for k, deal_id in enumerate(deal_ids)
    ]
    return json.dumps(events).encode()


def test_a_delivery_of_150_deals_takes_a_few_batch_calls_each_of_at_most_100(sessions, monkeypatch):
    portal = _Portal(150)
    monkeypatch.setenv("LOOPLINE_HUBSPOT_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("LOOPLINE_HUBSPOT_TOKEN", "pat-na1-token")
    with portal.api() as api:
        monkeypatch.setenv("LOOPLINE_HUBSPOT_API_URL", api.url)
        body = _creations(list(portal.deals))
        delivery = deliver(sessions, preset("hubspot"), hubspot_incoming(body, SECRET, URL))
    assert [r.outcome for r in delivery.receipts] == ["accepted"] * 150
    assert len(api.calls) == 10  # five kinds of read, two batches each
    assert max(len(c.body["inputs"]) for c in api.calls) <= 100
    apply_received(sessions, gate=None)
    with sessions() as s:
        order = s.get(Order, "7000005")  # i = 5: three line items, company 105
        assert [(ln.sku, ln.qty) for ln in order.lines] == [("P1", 1), ("P2", 2), ("P1", 3)]
        assert order.customer_id == "105" and order.customer.name == "Company 105"


def test_a_deal_hubspot_no_longer_has_fails_its_delivery_naming_it(sessions, monkeypatch):
    portal = _Portal(3, missing={"7000001"})
    monkeypatch.setenv("LOOPLINE_HUBSPOT_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("LOOPLINE_HUBSPOT_TOKEN", "pat-na1-token")
    with portal.api() as api:
        monkeypatch.setenv("LOOPLINE_HUBSPOT_API_URL", api.url)
        body = _creations(list(portal.deals))
        with pytest.raises(FetchFailed, match="no deal 7000001"):
            deliver(sessions, preset("hubspot"), hubspot_incoming(body, SECRET, URL))
    with sessions() as s:
        assert s.scalar(select(DeadLetter)).reason == "fetch_failed"
