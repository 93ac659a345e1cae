"""Jiandaoyun data push: recorded pushes map to canonical events; the sha1 signature, the
DeliverId dedupe and the write-back through its data-update API (a local server plays it)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from loopline.ingest.crm.auth import BadSignature
from loopline.ingest.crm.check import check_sample
from loopline.ingest.crm.connector import default_registry
from loopline.ingest.crm.receive import BadBody
from loopline.models.clock import utcnow
from loopline.models.db import transaction
from loopline.models.intake import apply_received
from loopline.models.outbox import UNREACHABLE_KEY, enqueue, requeue_dead
from loopline.models.records import Alert, InboxEvent, Order, OutboxEvent
from loopline.settings import new_webhook_secret
from tests.factories import connector_relay
from tests.ingest.crm.fake_api import FakeApi
from tests.ingest.crm.presets import deliver, jdy_incoming, preset, sample, sample_json

SECRET = "jdy-push-secret"


@pytest.fixture(autouse=True)
def jdy_env(monkeypatch):
    monkeypatch.setenv("LOOPLINE_JDY_SECRET", SECRET)
    monkeypatch.setenv("LOOPLINE_JDY_API_KEY", "jdy-api-key")


def test_recorded_update_maps_subform_lines_local_date_and_priority_words():
    result = check_sample(preset("jiandaoyun"), sample("jiandaoyun_update.json"))
    assert result.ok, result.errors
    (event,) = result.events
    order = event["order"]
    assert (event["type"], order["id"], order["version"]) == (
        "order.upserted",
        "SO-JDY-0042",
        1795852800123,  # updateTime in ms
    )
    assert order["lines"] == [{"sku": "P1", "qty": 500}, {"sku": "P2", "qty": 20}]
    # 2026-12-09T16:00Z is midnight of 10 Dec in Shanghai: the day the widget shows.
    assert (order["requested_date"], order["priority"]) == ("2026-12-10", "rush")
    assert order["customer"] == {"id": "C-9", "name": "上海精密齿轮有限公司"}
    assert order["sales_rep"] == "li.na" and result.refs == ["6747f3a2b1c9d80007e4a1f2"]


def test_recorded_remove_is_a_cancel_later_than_the_last_update():
    result = check_sample(preset("jiandaoyun"), sample("jiandaoyun_remove.json"))
    (event,) = result.events
    assert event["type"] == "order.cancelled"
    assert event["order"]["version"] > 1795852800123


def test_other_ops_are_ignored():
    body = json.dumps({"op": "form_update", "data": {"name": "订单"}}).encode()
    assert check_sample(preset("jiandaoyun"), body).events == [None]


def test_a_bad_subform_cell_is_named_as_the_form_names_it():
    body = sample_json("jiandaoyun_update.json")
    body["data"]["_widget_1700000000004"][1]["_widget_1700000000006"] = -3
    result = check_sample(preset("jiandaoyun"), json.dumps(body).encode())
    assert [e["field"] for e in result.errors] == [
        "data._widget_1700000000004[1]._widget_1700000000006"
    ]


def test_signed_push_is_recorded_once_per_deliver_id_and_applied(sessions):
    body = sample("jiandaoyun_update.json")
    c = preset("jiandaoyun")
    first = deliver(sessions, c, jdy_incoming(body, SECRET, "deliver-1"))
    again = deliver(sessions, c, jdy_incoming(body, SECRET, "deliver-1"))  # a retry
    assert [r.outcome for r in first.receipts + again.receipts] == ["accepted", "duplicate"]
    apply_received(sessions, gate=None)
    with sessions() as s:
        order = s.get(Order, "SO-JDY-0042")
        assert order.priority == "rush" and str(order.requested_date) == "2026-12-10"
        inbox = s.scalar(select(InboxEvent))
        assert inbox.webhook_id == "deliver-1" and inbox.event["ref"] == "6747f3a2b1c9d80007e4a1f2"


def test_a_wrong_signature_or_secret_is_refused(sessions):
    body = sample("jiandaoyun_update.json")
    with pytest.raises(BadSignature, match="X-JDY-Signature"):
        deliver(sessions, preset("jiandaoyun"), jdy_incoming(body, "not-the-secret"))
    tampered = jdy_incoming(body, SECRET)
    tampered = type(tampered)(body.replace(b"500", b"900"), *list(vars(tampered).values())[1:])
    with pytest.raises(BadSignature):
        deliver(sessions, preset("jiandaoyun"), tampered)


def test_an_unknown_product_is_refused_naming_the_subform_cell(sessions):
    body = sample("jiandaoyun_update.json").replace(b'"P2"', b'"GEAR-Z"')
    with pytest.raises(BadBody) as info:
        deliver(sessions, preset("jiandaoyun"), jdy_incoming(body, SECRET))
    assert info.value.errors[0]["field"] == "data._widget_1700000000004[1]._widget_1700000000005"


def jdy_api() -> FakeApi:
    return FakeApi().route(
        "POST", "/api/v5/app/entry/data/update", lambda call, m: (200, {"data": {"_id": "x"}})
    )


def test_feedback_is_written_back_through_the_data_update_api(sessions, monkeypatch):
    c = preset("jiandaoyun")
    deliver(sessions, c, jdy_incoming(sample("jiandaoyun_update.json"), SECRET))
    apply_received(sessions, gate=None)
    with jdy_api() as api:
        monkeypatch.setenv("LOOPLINE_JDY_API_URL", api.url)
        feedback = {"order_id": "SO-JDY-0042", "promised_date": "2026-12-10"}
        feedback |= {"eta_date": "2026-12-08", "risk": "at_risk", "status": "in_progress"}
        with transaction(sessions) as s:
            enqueue(s, event_type="order.updated", order_id="SO-JDY-0042", payload=feedback)
        with connector_relay(
            sessions, registry=default_registry(), url=None, secret=new_webhook_secret()
        ) as relay:
            assert relay.deliver_due() == 1
        (call,) = api.written("POST")
    assert call.headers["authorization"] == "Bearer jdy-api-key"
    assert call.body["data_id"] == "6747f3a2b1c9d80007e4a1f2"
    assert call.body["is_start_trigger"] is False
    data = call.body["data"]
    assert data["_widget_1700000000010"] == {"value": "2026-12-10T00:00:00+08:00"}
    assert data["_widget_1700000000012"] == {"value": "有风险"}
    assert data["_widget_1700000000013"] == {"value": "生产中"}


def test_write_back_retries_then_dead_letters_like_the_outbox(sessions, monkeypatch):
    deliver(sessions, preset("jiandaoyun"), jdy_incoming(sample("jiandaoyun_update.json"), SECRET))
    apply_received(sessions, gate=None)
    clock = [utcnow() + timedelta(seconds=1)]
    with jdy_api() as api:
        monkeypatch.setenv("LOOPLINE_JDY_API_URL", api.url)
        api.fail(2, 503)
        with transaction(sessions) as s:
            payload = {"order_id": "SO-JDY-0042", "risk": "on_track"}
            enqueue(s, event_type="order.updated", order_id="SO-JDY-0042", payload=payload)
        relay = connector_relay(
            sessions,
            registry=default_registry(),
            url=None,
            secret=new_webhook_secret(),
            max_attempts=2,
            backoff_base_s=30.0,
            now=lambda: clock[0],
        )
        with relay:
            assert relay.deliver_due() == 0
            with sessions() as s:
                row = s.scalar(select(OutboxEvent))
                assert (row.status, row.attempts) == ("pending", 1)
                assert "jiandaoyun: HTTP 503" in row.last_error
            clock[0] += timedelta(seconds=60)
            assert relay.deliver_due() == 0
            with sessions() as s:
                assert s.scalar(select(OutboxEvent)).status == "dead"
                assert s.scalar(select(Alert).where(Alert.key == UNREACHABLE_KEY)) is not None
            with transaction(sessions) as s:
                requeue_dead(s, now=clock[0])
            assert relay.deliver_due() == 1  # the CRM is back
        assert len(api.written("POST")) == 3
