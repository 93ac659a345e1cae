"""HubSpot webhooks v3: a recorded batch, its signature and 5-minute window, the deal's line
items and company read through the CRM API, and the promise written to deal properties (a
local server plays HubSpot's API)."""

from __future__ import annotations

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
from tests.ingest.crm.presets import deliver, hubspot_incoming, preset, sample, sample_json

SECRET = "hubspot-client-secret"
URL = "https://loopline.example/api/v1/crm/hubspot/events"


@pytest.fixture
def hubspot(monkeypatch):
    answers = sample_json("hubspot_api.json")
    api = (
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
    deal_reads = [c for c in hubspot.calls if c.path.endswith("/deals/18436213044")]
    assert deal_reads[0].headers["authorization"] == "Bearer pat-na1-token"
    assert deal_reads[0].query["associations"] == "line_items,companies"
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
