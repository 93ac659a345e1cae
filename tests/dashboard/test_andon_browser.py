"""OEE and downtime in a real browser on a whole stack (real PostgreSQL, Redis, Mosquitto):
the wall tile shows the shift's OEE, and on /andon a production manager gives an
unexplained stop its reason, which moves the week's Pareto. Screenshots: test-artifacts/.

The shift is tests/api/test_oee.py's: L1 (36 s a unit), 06:00-14:00 UTC, the stack's
clock starting at 10:00; a breakdown 07:00-07:45 (BD-MECH), a stop 09:00-09:30 the line
sent no code for ("jam"), 244 units made of which 4 scrap.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from loopline.dashboard import ids
from loopline.dashboard.i18n import fmt_pct
from tests.dashboard.test_screens_browser import (
    LOAD_TIMEOUT_MS,
    PUSH_TIMEOUT_MS,
    open_page,
    sel,
    wait_beat,
)
from tests.factories import order_event
from tests.stack import DISPLAY_TOKEN, start_stack, wait_until

pytestmark = pytest.mark.browser

MANAGER = "test-andon-manager"
ORIGIN = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def stack(postgres_url, redis_server, mqtt_broker):
    s = start_stack(
        database_url=postgres_url,
        redis_url=redis_server,
        mqtt_url=mqtt_broker.url,
        crm_url=None,
        origin=ORIGIN,
        manager_token=MANAGER,
    )
    yield s
    s.stop()


def _send_shift(stack, broker) -> None:
    assert stack.send_crm(order_event("SO-5001", 1, [("P1", 1000)]), "andon-1").status_code == 202
    wait_until(lambda: stack.runtime.live.get("work_order", "WO-5001-1"), timeout=20)
    day, wo = "2026-12-01T", "WO-5001-1"
    messages = [
        ("state", {"ts": day + "06:00:00Z", "state": "running"}),
        ("state", {"ts": day + "07:00:00Z", "state": "down", "reason_code": "BD-MECH"}),
        ("state", {"ts": day + "07:45:00Z", "state": "running"}),
        ("state", {"ts": day + "09:00:00Z", "state": "down", "reason": "jam"}),
        ("state", {"ts": day + "09:30:00Z", "state": "running"}),
        ("progress", {"ts": day + "09:40:00Z", "work_order": wo, "good": 240, "scrap": 4}),
    ]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"s-{uuid.uuid4().hex}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    for n, (kind, body) in enumerate(messages):
        payload = json.dumps({"seq": n + 1, **body})
        client.publish(f"loopline/v1/s1/L1/{kind}", payload, qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def test_wall_shows_oee_and_andon_assigns_a_reason(
    stack, mqtt_broker, page, browser, artifacts_dir: Path
):
    _send_shift(stack, mqtt_broker)
    # The worker puts the shift's OEE on the live line (every few seconds).
    oee = wait_until(
        lambda: ((stack.runtime.live.get("line", "L1") or {}).get("oee") or {}).get("oee"),
        timeout=20,
    )
    # OEE = 240 good x 36 s / ~4 h planned (06:00 to the clock's ~10:00) = 0.6 at 10:00
    assert oee == pytest.approx(240 * 36 / (4 * 3600), abs=0.01)

    tile = sel(ids.TILE, "line", "L1")
    open_page(page, f"{stack.url}/wall?token={DISPLAY_TOKEN}", tile)
    wait_beat(page, ids.WALL.heartbeat)
    shown = page.locator(sel(ids.TILE_OEE, "line", "L1"))
    shown.filter(has_text="%").wait_for(timeout=PUSH_TIMEOUT_MS)
    live_oee = stack.runtime.live.get("line", "L1")["oee"]
    assert shown.inner_text() in {fmt_pct(live_oee["oee"]), fmt_pct(oee)}
    apq = page.locator(sel(ids.TILE_APQ, "line", "L1")).inner_text()
    assert apq.startswith("A ") and " · P " in apq and " · Q 98" in apq  # 240 of 244 good
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts_dir / "wall-oee.png"))

    [stop] = stack.get("/api/v1/lines/L1/stops?unexplained=true").json()
    key = f"L1:{stop['id']}"
    item = sel(ids.ANDON_STOP, "stop", key)
    pick = sel(ids.ANDON_PICK, "stop", key)
    assign = sel(ids.ANDON_ASSIGN, "stop", key)

    def choose(p, option: str) -> None:  # type: ignore[no-untyped-def]
        p.click(pick)
        p.get_by_role("option", name=option).click()

    # A wall's read-only sign-in may look but not assign: the API's answer is shown.
    open_page(page, f"{stack.url}/andon?token={DISPLAY_TOKEN}", item)
    choose(page, "Small stop › Jam (SS-JAM)")
    page.click(assign)
    refused = page.locator(f"#{ids.ANDON_MESSAGE}")
    refused.filter(has_text="Not assigned (403)").wait_for(timeout=PUSH_TIMEOUT_MS)

    manager = browser.new_context(viewport={"width": 1920, "height": 1080}).new_page()
    errors: list[str] = []
    manager.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        open_page(manager, f"{stack.url}/andon?token={MANAGER}", item)
        wait_beat(manager, ids.ANDON.heartbeat)
        text = manager.locator(item).inner_text()
        assert "Line L1" in text and "Down 09:00–09:30 · 30 min" in text, text
        assert "line said: jam" in text
        # The Pareto of the week: the unexplained 30 min beside BD-MECH's 45.
        graph = f"#{ids.ANDON_PARETO}"
        manager.locator(f"{graph} text", has_text="BD-MECH").first.wait_for(timeout=LOAD_TIMEOUT_MS)
        manager.locator(f"{graph} text", has_text="Unexplained").first.wait_for()
        manager.wait_for_timeout(500)
        manager.screenshot(path=str(artifacts_dir / "andon.png"), full_page=True)

        choose(manager, "Small stop › Jam (SS-JAM)")
        manager.click(assign)
        message = manager.locator(f"#{ids.ANDON_MESSAGE}")
        message.filter(has_text="Line L1: SS-JAM · Jam").wait_for(timeout=PUSH_TIMEOUT_MS)
        # The stop leaves the list by push, and the Pareto names the reason.
        manager.locator(item).wait_for(state="detached", timeout=PUSH_TIMEOUT_MS)
        manager.locator(f"#{ids.ANDON_LIST}", has_text="Every stop has a reason").wait_for()
        manager.locator(f"{graph} text", has_text="SS-JAM").first.wait_for(timeout=PUSH_TIMEOUT_MS)
        assert manager.locator(f"{graph} text", has_text="Unexplained").count() == 0
        manager.wait_for_timeout(500)
        manager.screenshot(path=str(artifacts_dir / "andon-assigned.png"), full_page=True)
        [assigned] = [
            s for s in stack.get("/api/v1/lines/L1/stops").json() if s["id"] == stop["id"]
        ]
        assert assigned["reason_code"] == "SS-JAM" and assigned["assigned_by"]
        assert errors == []
    finally:
        manager.context.close()
