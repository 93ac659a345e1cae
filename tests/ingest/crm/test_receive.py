"""receive(): content type, size, signature, body, then record for the worker, in that
order; rejected authentic bodies are kept, unauthenticated ones write nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from loopline.ingest.crm.receive import (
    DEAD_LETTER_PAYLOAD_BYTES,
    BadBody,
    BadSignature,
    TooLarge,
    UnknownSource,
    UnsupportedMediaType,
    receive,
)
from loopline.models.intake import apply_received
from loopline.models.records import AuditEntry, DeadLetter, InboxEvent, Order, WorkOrder
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


def worker(sessions):
    """What the worker does next: apply the received events (no approval gate here)."""
    return apply_received(sessions, gate=None)


def count(sessions, column) -> int:
    with sessions() as s:
        return s.scalar(select(func.count(column)))


def dead_letters(sessions) -> list[DeadLetter]:
    with sessions() as s:
        return list(s.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def test_happy_path_records_then_the_worker_creates_order_work_orders_and_audit(sessions, secret):
    body = encode(order_event("SO-1001", 1, [("P1", 500), ("P2", 20)]))
    receipt = call(sessions, secret, body, sign(body, secret, "evt_a"))

    assert (receipt.outcome, receipt.order_id, receipt.version) == ("accepted", "SO-1001", 1)
    assert receipt.webhook_id == "evt_a" and receipt.event_type == "order.upserted"
    with sessions() as s:
        assert s.get(Order, "SO-1001") is None  # recorded only: the worker applies it
        assert s.scalar(select(InboxEvent.outcome)) == "received"
    assert [r.order_id for r in worker(sessions).applied] == ["SO-1001"]
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
    worker(sessions)
    body = encode(order_event("SO-1", 2, event_type="order.cancelled"))
    assert call(sessions, secret, body, sign(body, secret, "evt_2")).outcome == "accepted"
    worker(sessions)
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
    assert call(sessions, secret, body, headers).outcome == "accepted"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_content_type_that_is_not_json_is_refused(sessions, secret, content_type):
    body = encode(order_event())
    headers = sign(body, secret) | {"content-type": content_type}
    with pytest.raises(UnsupportedMediaType, match="application/json"):
        call(sessions, secret, body, headers)
    assert count(sessions, InboxEvent.id) == 0 and dead_letters(sessions) == []


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/x+json"]
)
def test_json_content_types_are_accepted(sessions, secret, content_type):
    body = encode(order_event())
    headers = sign(body, secret) | {"Content-Type": content_type}
    assert call(sessions, secret, body, headers).outcome == "accepted"


def test_body_not_utf8_cannot_be_verified(sessions, secret):
    with pytest.raises(BadSignature, match="UTF-8"):
        call(sessions, secret, b"\xff\xfe{}", {"webhook-id": "x"})


def test_oversized_body_is_413_before_the_signature_and_writes_nothing(sessions, secret):
    body = b"x" * (MAX_BODY + 1)
    for _ in range(3):  # unauthenticated: a flood of these must not fill the database
        with pytest.raises(TooLarge) as info:
            call(sessions, secret, body, {})  # no signature: size is checked first
    assert info.value.limit == MAX_BODY and info.value.size == MAX_BODY + 1
    assert dead_letters(sessions) == [] and count(sessions, InboxEvent.id) == 0


def test_declared_content_length_over_the_limit_is_too_large(sessions, secret):
    with pytest.raises(TooLarge):
        call(sessions, secret, b"{", {}, content_length=MAX_BODY * 4)
    assert dead_letters(sessions) == []


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
    worker(sessions)
    # A replay, even of a different (newer) body under the same id, is a duplicate.
    again = encode(order_event("SO-1", 2, [("P1", 999)]))
    receipt = call(sessions, secret, again, sign(again, secret, "evt_same"))
    assert receipt.outcome == "duplicate" and receipt.webhook_id == "evt_same"
    assert count(sessions, InboxEvent.id) == 1
    worker(sessions)
    with sessions() as s:
        order = s.get(Order, "SO-1")
        assert order.version == 1 and order.lines[0].qty == 100


def test_older_version_is_recorded_as_stale_and_ignored(sessions, secret):
    newer = encode(order_event("SO-1", 3, [("P1", 300)]))
    call(sessions, secret, newer, sign(newer, secret, "evt_3"))
    worker(sessions)
    older = encode(order_event("SO-1", 2, [("P1", 200)]))
    receipt = call(sessions, secret, older, sign(older, secret, "evt_2"))
    assert receipt.outcome == "stale"
    worker(sessions)
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


def test_an_older_version_received_before_the_worker_ran_is_stale_after_it(sessions, secret):
    for version, webhook_id in ((3, "evt_3"), (2, "evt_2")):
        body = encode(order_event("SO-1", version, [("P1", version * 100)]))
        assert call(sessions, secret, body, sign(body, secret, webhook_id)).outcome == "accepted"
    worker(sessions)
    with sessions() as s:
        outcomes = s.execute(select(InboxEvent.webhook_id, InboxEvent.outcome)).all()
        assert sorted(outcomes) == [("evt_2", "stale"), ("evt_3", "applied")]
        assert s.get(Order, "SO-1").lines[0].qty == 300


@pytest.fixture
def both(any_sessions):
    """SQLite and PostgreSQL (whose text cannot hold a NUL)."""
    return any_sessions


@pytest.mark.parametrize(
    "where, field",
    [
        (("order", "customer", "name"), "order.customer.name"),
        (("order", "lines", 0, "sku"), "order.lines[0].sku"),
        (("order", "sales_rep"), "order.sales_rep"),
        (("occurred_at",), "occurred_at"),
        (("note",), "note"),  # a field nobody reads is still refused: nothing half-stored
    ],
)
def test_an_escaped_nul_anywhere_is_422_naming_the_field(both, secret, where, field):
    event = order_event()
    target = event
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = "x\u0000y"
    body = json.dumps(event).encode()  # the NUL travels escaped, as \\u0000
    assert b"\\u0000" in body
    for _ in range(2):  # the same answer on every retry
        with pytest.raises(BadBody) as info:
            call(both, secret, body)
        assert info.value.errors == [
            {"field": field, "message": "must not contain a NUL character"}
        ]
    assert count(both, InboxEvent.id) == 0
    assert [d.reason for d in dead_letters(both)] == ["invalid_body"] * 2


def test_a_nul_in_a_key_is_named_and_kept(both, secret):
    body = b'{"type": "order.upserted", "or\\u0000der": 1}'
    with pytest.raises(BadBody) as info:
        call(both, secret, body)
    assert info.value.errors[0]["field"] == "or\\u0000der"
    [dead] = dead_letters(both)
    assert "u0000der" in dead.detail


def test_a_raw_nul_is_invalid_json_and_its_dead_letter_is_stored(both, secret):
    body = encode(order_event()).replace(b"Acme", b"Ac\x00me")
    with pytest.raises(BadBody) as info:
        call(both, secret, body)
    assert info.value.errors[0]["field"] == "body"
    [dead] = dead_letters(both)
    assert dead.reason == "invalid_json" and "Ac\\u0000me" in dead.payload
