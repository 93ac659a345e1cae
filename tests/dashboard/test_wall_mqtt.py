"""The issue's browser check on the whole loop: a line sensor publishes ``down`` with a
reason over MQTT (real Mosquitto), and the wall screen shows it without a reload; the
orders board shows the CRM's order with its promise. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from loopline.dashboard import ids
from tests.dashboard.test_screens_browser import open_page, sel, wait_beat
from tests.factories import order_event
from tests.stack import DISPLAY_TOKEN, start_stack, wait_until

pytestmark = pytest.mark.browser


@pytest.fixture
def stack(postgres_url, redis_server, mqtt_broker):
    s = start_stack(
        database_url=postgres_url, redis_url=redis_server, mqtt_url=mqtt_broker.url, crm_url=None
    )
    yield s
    s.stop()


def _publish(broker, topic: str, body: dict) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sensor-{uuid.uuid4().hex}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, json.dumps(body), qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def test_down_reason_over_mqtt_reaches_the_wall_live(stack, mqtt_broker, page, artifacts_dir: Path):
    requested = (datetime.now(UTC) + timedelta(days=2)).date()
    assert (
        stack.send_crm(order_event("SO-4242", 1, [("P1", 400)], requested), "w-1").status_code
        == 202
    )
    # The worker applies the recorded event: until then the order is a 404 without an eta.
    order = wait_until(lambda: (o := stack.get("/api/v1/orders/SO-4242").json()).get("eta") and o)
    line = order["work_orders"][0]["line"]
    now = datetime.now(UTC)
    _publish(
        mqtt_broker,
        f"loopline/v1/s1/{line}/state",
        {"seq": 1, "ts": now.isoformat(), "state": "running"},
    )
    _publish(
        mqtt_broker,
        f"loopline/v1/s1/{line}/progress",
        {"seq": 2, "ts": now.isoformat(), "work_order": "WO-4242-1", "good": 120, "scrap": 2},
    )

    # A kiosk signs in once with the display token in the URL.
    open_page(page, f"{stack.url}/wall?token={DISPLAY_TOKEN}", sel(ids.TILE, "line", line))
    wait_beat(page, ids.WALL.heartbeat)
    tile = page.locator(sel(ids.TILE, "line", line))
    page.wait_for_function(
        "s => document.querySelector(s).innerText.includes('WO-4242-1')",
        arg=sel(ids.TILE, "line", line),
        timeout=5000,
    )
    page.evaluate("window.__marker = 'same page'")

    reason = "jam on feeder"
    _publish(
        mqtt_broker,
        f"loopline/v1/s1/{line}/state",
        {"seq": 3, "ts": datetime.now(UTC).isoformat(), "state": "down", "reason": reason},
    )
    page.wait_for_function(
        "([s, r]) => document.querySelector(s).innerText.includes(r)",
        arg=[sel(ids.TILE, "line", line), reason],
        timeout=5000,
    )
    assert "tile--down" in tile.get_attribute("class")
    assert page.evaluate("window.__marker") == "same page"  # no reload happened
    page.screenshot(path=str(artifacts_dir / "wall-live-mqtt.png"))

    page.goto(f"{stack.url}/board", wait_until="load")
    page.wait_for_function("() => document.body.innerText.includes('SO-4242')", timeout=15000)
    # The Gantt shows the order's work order on its line.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot text')]"
        ".some(t => t.textContent.includes('WO-4242-1'))",
        timeout=15000,
    )
    page.screenshot(path=str(artifacts_dir / "board-live.png"))


def test_acknowledge_on_the_alert_panel_goes_through_the_api(stack, page, browser):
    from loopline.models.alerts import open_alert
    from loopline.models.db import transaction
    from loopline.models.watch import mirror_alerts
    from tests.stack import API_TOKEN

    rt = stack.runtime
    with transaction(rt.sessions) as s:
        # A kind no rule closes by itself (rules resolve conditions that stop holding).
        alert = open_alert(
            s,
            key="mqtt_disconnected",
            kind="mqtt_disconnected",
            entity="ingest",
            entity_id="mqtt",
            severity="critical",
            message="feed down",
            details={"reason": "broker unreachable"},
        )
        s.flush()
        mirror_alerts(s, rt.live)
        alert_id = str(alert.id)
    button = sel(ids.ALERT_ACK, "alert", alert_id)

    # A wall screen's read-only sign-in cannot acknowledge.
    open_page(page, f"{stack.url}/alerts?token={DISPLAY_TOKEN}", button)
    page.click(button)
    page.wait_for_timeout(1000)
    assert stack.get("/api/v1/alerts").json()[0]["status"] == "open"

    manager = browser.new_context(viewport={"width": 1920, "height": 1080}).new_page()
    open_page(manager, f"{stack.url}/alerts?token={API_TOKEN}", button)
    assert "Shop-floor feed disconnected from the broker: broker unreachable" in (
        manager.inner_text("body")
    )
    manager.click(button)
    wait_until(lambda: stack.get("/api/v1/alerts").json()[0]["status"] == "acked")
    [acked] = stack.get("/api/v1/alerts").json()
    assert acked["acked_by"] == "admin"
    # The change comes back by push: the item greys out and loses its button.
    manager.wait_for_function(
        "s => !document.querySelector(s) || document.querySelector(s).offsetParent === null",
        arg=button,
        timeout=5000,
    )
    manager.context.close()
