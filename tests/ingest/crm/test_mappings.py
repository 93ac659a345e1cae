"""The flatcrm connector file: flat deals become canonical events, errors in its own words."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from loopline.ingest.crm.connector import UnknownSource, default_registry
from loopline.ingest.crm.receive import BadBody, map_record, receive
from loopline.models.intake import apply_received
from loopline.models.records import DeadLetter, InboxEvent, Order
from tests.factories import order_event
from tests.ingest.crm.signing import encode, sign


def deal(**over):
    body = {
        "event": "deal.updated",
        "deal_id": 2001,
        "rev": 3,
        "account_id": "C-9",
        "account_name": "Acme Gears",
        "items": [{"product_code": "P1", "quantity": 500}, {"product_code": "P2", "quantity": 20}],
        "need_by": "2026-12-10",
        "urgency": "high",
        "owner": "zhang.wei",
        "updated_at": "2026-11-28T08:00:00Z",
    }
    return body | over


FLATCRM = default_registry().get("flatcrm")


def flatcrm(body):
    event, _ = map_record(FLATCRM, body)
    return event


def test_canonical_is_identity():
    event = order_event()
    mapped = default_registry().get("canonical").map_record(event)
    assert mapped.body is event and mapped.kind == "upsert"


def test_unknown_source_raises():
    with pytest.raises(UnknownSource):
        default_registry().get("salesforce-ish")


def test_flatcrm_deal_updated_becomes_an_upsert():
    event = flatcrm(deal())
    assert event.type == "order.upserted"
    o = event.order
    assert (o.id, o.version, o.customer.id, o.customer.name) == ("2001", 3, "C-9", "Acme Gears")
    assert [(ln.sku, ln.qty) for ln in o.lines] == [("P1", 500), ("P2", 20)]
    assert (str(o.requested_date), o.priority, o.sales_rep) == ("2026-12-10", "high", "zhang.wei")


def test_flatcrm_defaults_urgency_and_time():
    body = deal()
    del body["urgency"], body["updated_at"]
    event = flatcrm(body)
    assert event.order.priority == "normal" and event.occurred_at.tzinfo is not None


def test_flatcrm_deal_deleted_becomes_a_cancel():
    event = flatcrm({"event": "deal.deleted", "deal_id": "D-7", "rev": 4})
    assert (event.type, event.order.id, event.order.version) == ("order.cancelled", "D-7", 4)


def test_flatcrm_unknown_event_names_its_field():
    with pytest.raises(BadBody) as info:
        flatcrm(deal(event="deal.won"))
    assert info.value.errors[0]["field"] == "event"


@pytest.mark.parametrize(
    "path, expected",
    [
        ("order.lines[2].qty", "items[2].quantity"),
        ("order.lines[0].sku", "items[0].product_code"),
        ("order.lines[1]", "items[1]"),
        ("order.lines", "items"),
        ("order.requested_date", "need_by"),
        ("order.version", "rev"),
        ("order.customer", "account_id"),
        ("type", "event"),
        ("body", "body"),
    ],
)
def test_flatcrm_field_names(path, expected):
    assert FLATCRM.source_field(path) == expected


def test_canonical_field_names_are_unchanged():
    canonical = default_registry().get("canonical")
    assert canonical.source_field("order.lines[0].qty") == "order.lines[0].qty"


def test_flatcrm_through_receive(sessions, secret):
    body = encode(deal())
    receipt = receive(
        sessions,
        source="flatcrm",
        headers=sign(body, secret, "fc_1"),
        body=body,
        secret=secret,
        max_body_bytes=65536,
    )
    assert (receipt.outcome, receipt.order_id, receipt.version) == ("accepted", "2001", 3)
    apply_received(sessions, gate=None)  # what the worker does next
    with sessions() as s:
        assert s.get(Order, "2001").priority == "high"
        inbox = s.scalar(select(InboxEvent))
        assert inbox.source == "crm:flatcrm" and inbox.raw == body.decode()


def test_flatcrm_errors_use_its_field_names_and_path(sessions, secret):
    body = encode(deal(items=[{"product_code": "P1"}, {"product_code": "P2", "quantity": 0}]))
    with pytest.raises(BadBody) as info:
        receive(
            sessions,
            source="flatcrm",
            headers=sign(body, secret),
            body=body,
            secret=secret,
            max_body_bytes=65536,
        )
    assert {e["field"] for e in info.value.errors} == {"items[0].quantity", "items[1].quantity"}
    with sessions() as s:
        dead = s.scalar(select(DeadLetter))
        assert (dead.source, dead.topic) == ("crm:flatcrm", "/api/v1/crm/flatcrm/events")


def test_flatcrm_unknown_product_uses_its_field_name(sessions, secret):
    body = encode(deal(items=[{"product_code": "GEAR-Z", "quantity": 1}]))
    with pytest.raises(BadBody) as info:
        receive(
            sessions,
            source="flatcrm",
            headers=sign(body, secret),
            body=body,
            secret=secret,
            max_body_bytes=65536,
        )
    assert info.value.errors[0]["field"] == "items[0].product_code"
    with sessions() as s:
        assert s.scalar(select(DeadLetter)).reason == "unknown_product"


def test_registry_lists_the_sources():
    assert {"canonical", "flatcrm", "plain-json"} <= set(default_registry().names())
