"""Salesforce Outbound Messages: a recorded SOAP message with two notifications, the
OrganizationId check, line items by SOQL over REST and the write-back by REST PATCH (a local
server plays Salesforce's REST API)."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select

from loopline.ingest.crm import soap
from loopline.ingest.crm.auth import BadSignature, Incoming
from loopline.ingest.crm.check import check_sample
from loopline.ingest.crm.connector import default_registry
from loopline.ingest.crm.receive import BadBody, UnsupportedMediaType
from loopline.models.db import transaction
from loopline.models.intake import apply_received
from loopline.models.outbox import enqueue
from loopline.models.records import InboxEvent, Order
from loopline.settings import new_webhook_secret
from tests.factories import connector_relay
from tests.ingest.crm.fake_api import FakeApi
from tests.ingest.crm.presets import deliver, preset, sample, sample_json

ORG = "00D5g000004XyZa"  # the 15-character form; the message has the 18-character one


@pytest.fixture
def salesforce(monkeypatch):
    answer = sample_json("salesforce_api.json")
    api = (
        FakeApi()
        .route("GET", "/services/data/v60.0/query", lambda c, m: (200, answer))
        .route(
            "PATCH", r"/services/data/v60.0/sobjects/Opportunity/(\w+)", lambda c, m: (204, None)
        )
    )
    monkeypatch.setenv("LOOPLINE_SALESFORCE_ORG_ID", ORG)
    monkeypatch.setenv("LOOPLINE_SALESFORCE_TOKEN", "00D5g!AQ4AQ.token")
    with api:
        monkeypatch.setenv("LOOPLINE_SALESFORCE_API_URL", api.url)
        yield api


def soap_in(body: bytes) -> Incoming:
    return Incoming.of(body, {"content-type": "text/xml; charset=utf-8", "soapaction": '""'})


def test_two_notifications_become_an_upsert_and_a_cancel(sessions, salesforce):
    delivery = deliver(sessions, preset("salesforce"), soap_in(sample("salesforce_outbound.xml")))
    assert [(r.outcome, r.order_id, r.event_type) for r in delivery.receipts] == [
        ("accepted", "0065g00000ZbCdEAAV", "order.upserted"),
        ("accepted", "0065g00000ZbXyZAAV", "order.cancelled"),  # Closed Lost
    ]
    (query,) = [c for c in salesforce.calls if c.path.endswith("/query")]
    assert "WHERE Id = '0065g00000ZbCdEAAV'" in query.query["q"]
    assert query.headers["authorization"] == "Bearer 00D5g!AQ4AQ.token"
    apply_received(sessions, gate=None)
    with sessions() as s:
        order = s.get(Order, "0065g00000ZbCdEAAV")
        assert [(ln.sku, ln.qty) for ln in order.lines] == [("P1", 500), ("P2", 20)]
        assert (order.customer_id, order.priority, str(order.requested_date)) == (
            "C-9",
            "high",
            "2026-12-10",
        )
        ids = set(s.scalars(select(InboxEvent.webhook_id)))
        assert ids == {"04l5g00000KqSmRAAV", "04l5g00000KqSmSAAV"}  # notification ids
    again = deliver(sessions, preset("salesforce"), soap_in(sample("salesforce_outbound.xml")))
    assert [r.outcome for r in again.receipts] == ["duplicate", "duplicate"]


def test_another_organization_is_refused(sessions, salesforce, monkeypatch):
    monkeypatch.setenv("LOOPLINE_SALESFORCE_ORG_ID", "00D000000000001")
    with pytest.raises(BadSignature, match="OrganizationId"):
        deliver(sessions, preset("salesforce"), soap_in(sample("salesforce_outbound.xml")))
    with sessions() as s:
        assert s.scalar(select(InboxEvent)) is None


def test_json_or_bad_xml_is_refused(sessions, salesforce):
    with pytest.raises(UnsupportedMediaType):
        deliver(
            sessions,
            preset("salesforce"),
            Incoming.of(b"{}", {"content-type": "application/json"}),
        )
    entity_bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    with pytest.raises(BadBody, match="invalid XML"):
        deliver(sessions, preset("salesforce"), soap_in(entity_bomb))


def test_the_ack_is_what_salesforce_waits_for():
    doc = soap.parse(soap.ack().encode())
    assert doc["Envelope"]["Body"]["notificationsResponse"]["Ack"] == "true"


def test_check_maps_a_recorded_message_fetching_like_the_receive_path(salesforce):
    result = check_sample(preset("salesforce"), sample("salesforce_outbound.xml"))
    assert result.ok, result.errors
    assert [e["type"] for e in result.events] == ["order.upserted", "order.cancelled"]


def test_the_promise_is_patched_onto_the_opportunity(sessions, salesforce):
    deliver(sessions, preset("salesforce"), soap_in(sample("salesforce_outbound.xml")))
    apply_received(sessions, gate=None)
    with transaction(sessions) as s:
        payload = {"order_id": "0065g00000ZbCdEAAV", "promised_date": "2026-12-10"}
        payload |= {"eta_date": "2026-12-09", "risk": "at_risk", "status": "in_progress"}
        enqueue(s, event_type="order.updated", order_id="0065g00000ZbCdEAAV", payload=payload)
    with connector_relay(
        sessions, registry=default_registry(), url=None, secret=new_webhook_secret()
    ) as relay:
        assert relay.deliver_due() == 1
    (patch,) = salesforce.written("PATCH")
    assert patch.path == "/services/data/v60.0/sobjects/Opportunity/0065g00000ZbCdEAAV"
    assert patch.body == {
        "Loopline_Promised_Date__c": "2026-12-10",
        "Loopline_ETA__c": "2026-12-09",
        "Loopline_Risk__c": "At risk",
        "Loopline_Status__c": "in_progress",
    }


def test_a_message_of_100_notifications_is_recorded_in_one_transaction(sessions, salesforce):
    """Salesforce sends up to 100 notifications a message: one commit records them all."""
    template = sample("salesforce_outbound.xml").decode()
    head, rest = template.split("<Notification>", 1)
    first = "<Notification>" + rest.split("</Notification>", 1)[0] + "</Notification>"
    tail = template.rsplit("</Notification>", 1)[1]
    notes = "".join(
        first.replace("04l5g00000KqSmRAAV", f"04l5g00000Kq{i:04d}AA").replace(
            "0065g00000ZbCdEAAV", f"0065g00000Zb{i:04d}AA"
        )
        for i in range(100)
    )
    commits: list[object] = []

    def committed(session: object) -> None:
        commits.append(session)

    event.listen(sessions, "after_commit", committed)
    try:
        delivery = deliver(sessions, preset("salesforce"), soap_in(f"{head}{notes}{tail}".encode()))
    finally:
        event.remove(sessions, "after_commit", committed)
    assert [r.outcome for r in delivery.receipts] == ["accepted"] * 100
    assert len(commits) == 1
    assert len([c for c in salesforce.calls if c.path.endswith("/query")]) == 100
    with sessions() as s:
        ids = set(s.scalars(select(InboxEvent.order_id)))
        assert ids == {f"0065g00000Zb{i:04d}AA" for i in range(100)}
