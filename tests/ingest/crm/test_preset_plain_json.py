"""The generic presets: plain JSON with a shared token (and its JSON write-back, a local server
playing the receiver), and the canonical Standard Webhooks event."""

from __future__ import annotations

import json

import pytest

from loopline.ingest.crm.auth import BadSignature, Incoming
from loopline.ingest.crm.check import check_sample
from loopline.ingest.crm.connector import default_registry
from loopline.models.db import transaction
from loopline.models.intake import apply_received
from loopline.models.outbox import enqueue
from loopline.models.records import Order
from loopline.settings import new_webhook_secret
from tests.factories import connector_relay, order_event
from tests.ingest.crm.fake_api import FakeApi
from tests.ingest.crm.presets import deliver, preset

BODY = {
    "action": "save",
    "order_no": "SO-1",
    "revision": "2",
    "customer": {"code": 901, "name": "Acme"},
    "items": [{"sku": "P1", "qty": "10"}],
    "due": "2026-12-10",
    "priority": "urgent",
    "rep": "li",
}


@pytest.fixture(autouse=True)
def token(monkeypatch):
    monkeypatch.setenv("LOOPLINE_PLAIN_JSON_TOKEN", "shared-token-1")


def plain_in(body: dict, token: str = "shared-token-1") -> Incoming:
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    return Incoming.of(json.dumps(body).encode(), headers)


def test_plain_json_maps_text_numbers_and_priority_words():
    (event,) = check_sample(preset("plain-json"), json.dumps(BODY).encode()).events
    assert event["order"]["version"] == 2 and event["order"]["customer"]["id"] == "901"
    assert event["order"]["lines"] == [{"sku": "P1", "qty": 10}]
    assert event["order"]["priority"] == "rush"


def test_plain_json_needs_the_token_and_is_written_back_as_json(sessions, monkeypatch):
    with pytest.raises(BadSignature, match="authorization"):
        deliver(sessions, preset("plain-json"), plain_in(BODY, token="wrong"))
    (receipt,) = deliver(sessions, preset("plain-json"), plain_in(BODY)).receipts
    assert receipt.outcome == "accepted"
    apply_received(sessions, gate=None)
    with FakeApi().route("POST", "/feedback", lambda c, m: (204, None)) as api:
        monkeypatch.setenv("LOOPLINE_PLAIN_JSON_WRITEBACK_URL", f"{api.url}/feedback")
        with transaction(sessions) as s:
            payload = {"order_id": "SO-1", "promised_date": "2026-12-10", "status": "open"}
            enqueue(s, event_type="order.updated", order_id="SO-1", payload=payload)
        with connector_relay(
            sessions, registry=default_registry(), url=None, secret=new_webhook_secret()
        ) as relay:
            assert relay.deliver_due() == 1
        (call,) = api.written("POST")
    assert call.headers["authorization"] == "Bearer shared-token-1"
    assert call.body == {
        "order_id": "SO-1",
        "ref": "SO-1",
        "promised_date": "2026-12-10",
        "status": "open",
    }
    with sessions() as s:
        assert s.get(Order, "SO-1").priority == "rush"


def test_canonical_preset_takes_the_canonical_event_as_it_is():
    event = order_event()
    (mapped,) = check_sample(preset("canonical"), json.dumps(event).encode()).events
    assert mapped["order"]["id"] == event["order"]["id"]


def test_orders_of_a_connector_without_write_back_go_to_the_crm_url_signed(sessions):
    from standardwebhooks import Webhook

    from tests.ingest.crm.signing import encode, sign

    secret = new_webhook_secret()
    body = encode(order_event("SO-C1"))
    deliver_canonical = Incoming.of(body, sign(body, secret, "evt_c1"))
    from loopline.ingest.crm.receive import receive_all

    receive_all(
        sessions,
        connector=preset("canonical"),
        incoming=deliver_canonical,
        secret=secret,
        max_body_bytes=1 << 16,
    )
    apply_received(sessions, gate=None)
    with FakeApi().route("POST", "/crm", lambda c, m: (204, None)) as api:
        with transaction(sessions) as s:
            enqueue(s, event_type="order.updated", order_id="SO-C1", payload={"status": "open"})
        with connector_relay(
            sessions, registry=default_registry(), url=f"{api.url}/crm", secret=secret
        ) as relay:
            assert relay.deliver_due() == 1
        (call,) = api.written("POST")
    raw = json.dumps(call.body, separators=(",", ":"))
    assert Webhook(secret).verify(raw, call.headers)["data"] == {"status": "open"}


def test_one_relay_chunk_sends_each_order_back_through_its_own_connector(sessions, monkeypatch):
    """The relay reads a chunk's targets together: each row still goes where its order's
    newest inbox event came from (plain JSON's write-back, or the signed CRM URL)."""
    from loopline.ingest.crm.receive import receive_all
    from tests.ingest.crm.signing import encode, sign

    secret = new_webhook_secret()
    deliver(sessions, preset("plain-json"), plain_in(BODY))
    body = encode(order_event("SO-C1"))
    receive_all(
        sessions,
        connector=preset("canonical"),
        incoming=Incoming.of(body, sign(body, secret, "evt_c1")),
        secret=secret,
        max_body_bytes=1 << 16,
    )
    apply_received(sessions, gate=None)
    with (
        FakeApi()
        .route("POST", "/feedback", lambda c, m: (204, None))
        .route("POST", "/crm", lambda c, m: (204, None)) as api
    ):
        monkeypatch.setenv("LOOPLINE_PLAIN_JSON_WRITEBACK_URL", f"{api.url}/feedback")
        with transaction(sessions) as s:
            for order_id in ("SO-1", "SO-C1"):
                payload = {"order_id": order_id, "status": "open"}
                enqueue(s, event_type="order.updated", order_id=order_id, payload=payload)
        with connector_relay(
            sessions, registry=default_registry(), url=f"{api.url}/crm", secret=secret
        ) as relay:
            assert relay.deliver_due() == 2
        calls = api.written("POST")
    assert sorted((c.path, c.body.get("ref") or c.body["data"]["order_id"]) for c in calls) == [
        ("/crm", "SO-C1"),
        ("/feedback", "SO-1"),
    ]
