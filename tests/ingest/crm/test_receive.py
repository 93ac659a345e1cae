"""receive(): size, signature, body and apply, in that order; rejected bodies are kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from ingest.crm.receive import (
    DEAD_LETTER_PAYLOAD_BYTES,
    TOO_LARGE_PAYLOAD_BYTES,
    BadBody,
    BadSignature,
    TooLarge,
    UnknownSource,
    receive,
)
from models.records import AuditEntry, DeadLetter, InboxEvent, Order, WorkOrder
from tests.factories import order_event
from tests.ingest.crm.signing import encode, sign

MAX_BODY = 256 * 1024


def call(sessions, secret, body: bytes, headers=None, *, source="canonical", **kw):
    return receive(
        sessions,
        source=source,
        headers=headers if headers is not None else sign(body, secret),
        body=body,
        secret=secret,
        max_body_bytes=kw.pop("max_body_bytes", MAX_BODY),
        **kw,
    )


def count(sessions, column) -> int:
    with sessions() as s:
        return s.scalar(select(func.count(column)))


def dead_letters(sessions) -> list[DeadLetter]:
    with sessions() as s:
        return list(s.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def test_happy_path_creates_order_work_orders_inbox_and_audit(sessions, secret):
    body = encode(order_event("SO-1001", 1, [("P1", 500), ("P2", 20)]))
    receipt = call(sessions, secret, body, sign(body, secret, "evt_a"))

    assert (receipt.outcome, receipt.order_id, receipt.version) == ("applied", "SO-1001", 1)
    assert receipt.webhook_id == "evt_a" and receipt.event_type == "order.upserted"
    with sessions() as s:
        order = s.get(Order, "SO-1001")
        assert order is not None and order.customer.name == "Acme"
        assert [(ln.sku, ln.qty) for ln in order.lines] == [("P1", 500), ("P2", 20)]
        wos = s.scalars(select(WorkOrder).order_by(WorkOrder.id)).all()
        assert [(w.id, w.qty) for w in wos] == [("WO-1001-1", 500), ("WO-1001-2", 20)]
        [inbox] = s.scalars(select(InboxEvent)).all()
        assert (inbox.source, inbox.webhook_id, inbox.outcome) == (
            "crm:canonical",
            "evt_a",
            "applied",
        )
        assert inbox.raw == body.decode()
        [audit] = s.scalars(select(AuditEntry).where(AuditEntry.entity_id == "SO-1001")).all()
        assert (audit.actor, audit.action) == ("crm", "order.created")
    assert dead_letters(sessions) == []


def test_cancel_event_cancels_the_order(sessions, secret):
    call(sessions, secret, encode(order_event("SO-1", 1)))
    body = encode(order_event("SO-1", 2, event_type="order.cancelled"))
    assert call(sessions, secret, body, sign(body, secret, "evt_2")).outcome == "applied"
    with sessions() as s:
        assert s.get(Order, "SO-1").status == "cancelled"


def test_bad_signature_is_rejected_and_not_stored(sessions, secret):
    body = encode(order_event())
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    with pytest.raises(BadSignature):
        call(sessions, secret, body, sign(body, other))
    assert count(sessions, InboxEvent.id) == 0 and dead_letters(sessions) == []


def test_tampered_body_fails_the_signature(sessions, secret):
    body = encode(order_event("SO-1", 1, [("P1", 5)]))
    headers = sign(body, secret)
    with pytest.raises(BadSignature):
        call(sessions, secret, body.replace(b'"qty": 5', b'"qty": 9'), headers)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_a_bad_signature(sessions, secret, missing):
    body = encode(order_event())
    headers = {k: v for k, v in sign(body, secret).items() if k != missing}
    with pytest.raises(BadSignature, match="Missing"):
        call(sessions, secret, body, headers)
    assert dead_letters(sessions) == []


@pytest.mark.parametrize(
    "skew, word", [(-timedelta(minutes=6), "old"), (timedelta(minutes=6), "new")]
)
def test_timestamp_outside_five_minutes_is_a_bad_signature(sessions, secret, skew, word):
    body = encode(order_event())
    headers = sign(body, secret, at=datetime.now(UTC) + skew)
    with pytest.raises(BadSignature, match=word):
        call(sessions, secret, body, headers)
    assert count(sessions, InboxEvent.id) == 0


@pytest.mark.parametrize("signature", ["garbage", "v1,not-base64!!", "v2,AAAA"])
def test_malformed_signature_header_is_a_bad_signature(sessions, secret, signature):
    body = encode(order_event())
    headers = sign(body, secret) | {"webhook-signature": signature}
    with pytest.raises(BadSignature):
        call(sessions, secret, body, headers)


def test_headers_are_matched_case_insensitively(sessions, secret):
    body = encode(order_event())
    headers = {k.title(): v for k, v in sign(body, secret).items()}
    assert call(sessions, secret, body, headers).outcome == "applied"


def test_body_not_utf8_cannot_be_verified(sessions, secret):
    with pytest.raises(BadSignature, match="UTF-8"):
        call(sessions, secret, b"\xff\xfe{}", {"webhook-id": "x"})


def test_oversized_body_is_413_and_dead_lettered_before_the_signature(sessions, secret):
    body = b"x" * (MAX_BODY + 1)
    with pytest.raises(TooLarge) as info:
        call(sessions, secret, body, {})  # no signature: size is checked first
    assert info.value.limit == MAX_BODY and info.value.size == MAX_BODY + 1
    [dead] = dead_letters(sessions)
    assert (dead.source, dead.topic, dead.reason) == (
        "crm:canonical",
        "/api/v1/crm/events",
        "too_large",
    )
    assert len(dead.payload) == TOO_LARGE_PAYLOAD_BYTES


def test_declared_content_length_over_the_limit_is_too_large(sessions, secret):
    with pytest.raises(TooLarge):
        call(sessions, secret, b"{", {}, content_length=MAX_BODY * 4)
    assert [d.reason for d in dead_letters(sessions)] == ["too_large"]


def test_malformed_json_is_422_on_body_and_dead_lettered(sessions, secret):
    body = b'{"type": "order.upserted", '
    with pytest.raises(BadBody) as info:
        call(sessions, secret, body)
    assert [e["field"] for e in info.value.errors] == ["body"]
    [dead] = dead_letters(sessions)
    assert (dead.reason, dead.payload) == ("invalid_json", body.decode())
    assert json.loads(dead.detail)["webhook_id"] == "evt_1"


def test_json_that_is_not_an_object_is_422(sessions, secret):
    with pytest.raises(BadBody) as info:
        call(sessions, secret, b"[1, 2]")
    assert info.value.errors[0]["field"] == "body"


def test_missing_field_names_its_path(sessions, secret):
    event = order_event()
    del event["order"]["lines"][0]["qty"]
    with pytest.raises(BadBody) as info:
        call(sessions, secret, encode(event))
    assert "order.lines[0].qty" in [e["field"] for e in info.value.errors]
    [dead] = dead_letters(sessions)
    assert dead.reason == "invalid_body" and "order.lines[0].qty" in dead.detail
    assert count(sessions, InboxEvent.id) == 0


def test_unknown_event_type_names_the_type_field(sessions, secret):
    event = order_event() | {"type": "order.exploded"}
    with pytest.raises(BadBody) as info:
        call(sessions, secret, encode(event))
    assert [e["field"] for e in info.value.errors] == ["type"]


def test_several_bad_fields_are_all_named(sessions, secret):
    event = order_event()
    event["order"]["lines"][0]["qty"] = -1
    event["order"]["requested_date"] = "soon"
    event["order"]["priority"] = "asap"
    with pytest.raises(BadBody) as info:
        call(sessions, secret, encode(event))
    fields = {e["field"] for e in info.value.errors}
    assert {"order.lines[0].qty", "order.requested_date", "order.priority"} <= fields


def test_unknown_sku_is_422_on_the_sku_and_nothing_is_applied(sessions, secret):
    body = encode(order_event("SO-9", 1, [("P1", 5), ("NOPE", 1)]))
    with pytest.raises(BadBody) as info:
        call(sessions, secret, body)
    assert info.value.errors[0]["field"] == "order.lines[1].sku"
    assert count(sessions, InboxEvent.id) == 0 and count(sessions, Order.id) == 0
    assert [d.reason for d in dead_letters(sessions)] == ["unknown_product"]


def test_dead_letter_payload_is_cut(sessions, secret):
    body = b'{"type": "x", "pad": "' + b"a" * (DEAD_LETTER_PAYLOAD_BYTES * 2) + b'"}'
    with pytest.raises(BadBody):
        call(sessions, secret, body)
    [dead] = dead_letters(sessions)
    assert len(dead.payload) == DEAD_LETTER_PAYLOAD_BYTES


def test_overlong_webhook_id_is_422(sessions, secret):
    body = encode(order_event())
    with pytest.raises(BadBody) as info:
        call(sessions, secret, body, sign(body, secret, "e" * 201))
    assert info.value.errors[0]["field"] == "headers.webhook-id"


def test_duplicate_webhook_id_changes_nothing(sessions, secret):
    first = encode(order_event("SO-1", 1, [("P1", 100)]))
    call(sessions, secret, first, sign(first, secret, "evt_same"))
    # A replay, even of a different (newer) body under the same id, is a duplicate.
    again = encode(order_event("SO-1", 2, [("P1", 999)]))
    receipt = call(sessions, secret, again, sign(again, secret, "evt_same"))
    assert receipt.outcome == "duplicate" and receipt.webhook_id == "evt_same"
    assert count(sessions, InboxEvent.id) == 1
    with sessions() as s:
        order = s.get(Order, "SO-1")
        assert order.version == 1 and order.lines[0].qty == 100


def test_older_version_is_recorded_as_stale_and_ignored(sessions, secret):
    newer = encode(order_event("SO-1", 3, [("P1", 300)]))
    call(sessions, secret, newer, sign(newer, secret, "evt_3"))
    older = encode(order_event("SO-1", 2, [("P1", 200)]))
    receipt = call(sessions, secret, older, sign(older, secret, "evt_2"))
    assert receipt.outcome == "stale"
    with sessions() as s:
        outcomes = s.execute(select(InboxEvent.webhook_id, InboxEvent.outcome)).all()
        assert sorted(outcomes) == [("evt_2", "stale"), ("evt_3", "applied")]
        order = s.get(Order, "SO-1")
        assert order.version == 3 and order.lines[0].qty == 300


def test_unknown_source_stores_nothing(sessions, secret):
    body = encode(order_event())
    with pytest.raises(UnknownSource):
        call(sessions, secret, body, source="nosuchcrm")
    assert dead_letters(sessions) == [] and count(sessions, InboxEvent.id) == 0
