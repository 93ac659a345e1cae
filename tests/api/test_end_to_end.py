"""The whole loop on real parts: CRM event -> order -> plan -> promise -> feedback to the CRM;
MQTT progress -> ETA; all against real PostgreSQL, Redis and Mosquitto."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
from standardwebhooks import Webhook

from loopline.settings import new_webhook_secret
from loopline.simulators.crm import CrmFeedbackServer
from tests.factories import order_event
from tests.stack import start_stack, wait_until


@pytest.fixture
def crm_secret():
    return new_webhook_secret()


@pytest.fixture
def crm(crm_secret):
    server = CrmFeedbackServer(crm_secret)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stack(postgres_url, redis_server, mqtt_broker, crm, crm_secret):
    s = start_stack(
        database_url=postgres_url,
        redis_url=redis_server,
        mqtt_url=mqtt_broker.url,
        crm_url=crm.url,
        secret=crm_secret,
    )
    yield s
    s.stop()


def publish(broker, topic: str, payload: dict) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sensor")
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def test_crm_event_to_promise_to_feedback_and_mqtt_moves_eta(stack, crm, crm_secret, mqtt_broker):
    requested = (datetime.now(UTC) + timedelta(days=3)).date()
    resp = stack.send_crm(order_event("SO-1001", 1, [("P1", 500)], requested), "evt-1")
    assert resp.status_code == 202, resp.text
    assert resp.json()["outcome"] == "accepted"  # recorded; the worker applies it

    order = wait_until(
        lambda: (
            (o := stack.get("/api/v1/orders/SO-1001").json()).get("promised_date")
            and o["eta"]
            and o
        )
    )
    assert order["customer"] == {"id": "C-1", "name": "Acme"}
    [wo] = order["work_orders"]
    assert wo["id"] == "WO-1001-1" and wo["line"] in ("L1", "L2") and wo["planned_end"]
    assert [h["action"] for h in order["history"]][:2] == ["order.created", "order.promised"]

    # The promise went back to the CRM, signed, and the signature verifies.
    delivery = crm.wait_for(
        lambda d: (
            json.loads(d.body)["data"]["order_id"] == "SO-1001"
            and json.loads(d.body)["data"]["promised_date"]
        ),
        timeout=10,
    )
    assert delivery.verified
    Webhook(crm_secret).verify(delivery.body, delivery.headers)
    assert json.loads(delivery.body)["data"]["promised_date"] == order["promised_date"]

    # Shop floor: the line reports progress; the ETA follows the observed rate.
    line = wo["line"]
    eta_before = order["eta"]
    t0 = datetime.now(UTC)
    publish(
        mqtt_broker,
        f"loopline/v1/s1/{line}/state",
        {"seq": 1, "ts": t0.isoformat(), "state": "running"},
    )
    publish(
        mqtt_broker,
        f"loopline/v1/s1/{line}/progress",
        {"seq": 2, "ts": t0.isoformat(), "work_order": "WO-1001-1", "good": 100, "scrap": 1},
    )
    publish(
        mqtt_broker,
        f"loopline/v1/s1/{line}/progress",
        {
            "seq": 3,
            "ts": int((t0 + timedelta(minutes=30)).timestamp() * 1000),
            "work_order": "WO-1001-1",
            "good": 110,
            "scrap": 1,
        },
    )
    moved = wait_until(
        lambda: (
            (o := stack.get("/api/v1/orders/SO-1001").json())["work_orders"][0]["good"] == 110 and o
        )
    )
    assert moved["status"] == "in_progress"
    assert moved["progress"] == pytest.approx(110 / 500)
    # 390 left at the observed 20/h (smoothed from nothing to 20/h) is far later than planned.
    assert moved["eta"] > eta_before
    lines = {ln["id"]: ln for ln in stack.get("/api/v1/lines").json()}
    assert lines[line]["state"] == "running" and lines[line]["work_order"] == "WO-1001-1"
    assert lines["L1"]["rates"] == {"P1": 100.0, "P2": 50.0}

    plan = stack.get("/api/v1/plan").json()
    assert any(a["job"] == "WO-1001-1" for a in plan["assignments"])


def test_each_order_change_replans_and_repromises(stack, crm):
    requested = (datetime.now(UTC) + timedelta(days=2)).date()
    stack.send_crm(order_event("SO-2", 1, [("P2", 100)], requested), "e1")
    first = wait_until(
        lambda: (o := stack.get("/api/v1/orders/SO-2").json()).get("promised_date") and o
    )
    stack.send_crm(order_event("SO-2", 2, [("P2", 5000)], requested), "e2")
    second = wait_until(
        lambda: (
            (o := stack.get("/api/v1/orders/SO-2").json())["promised_date"]
            != first["promised_date"]
            and o
        ),
        timeout=10,
    )
    # 2 h of work meets the requested date with margin: it is the promise.
    assert first["promised_date"] == requested.isoformat()
    assert second["work_orders"][0]["qty"] == 5000
    # 5000 at 50/h is 100 h: the requested date is missed, so the promise is later.
    assert second["promised_date"] > first["promised_date"]
    stack.send_crm(order_event("SO-2", 3, event_type="order.cancelled"), "e3")
    wait_until(lambda: stack.get("/api/v1/orders/SO-2").json()["status"] == "cancelled")
    crm.wait_for(
        lambda d: (
            json.loads(d.body)["data"]["order_id"] == "SO-2"
            and json.loads(d.body)["data"]["status"] == "cancelled"
        ),
        timeout=10,
    )
