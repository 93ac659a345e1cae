"""The screens through a Redis outage, in a real browser: the stack's own Redis is stopped
and started again. Open pages grey under "stale since HH:MM" and recover without a reload;
a page opened during the outage shows the last good data greyed, or says since when live
data is unavailable; never a blank page."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loopline.dashboard import ids
from loopline.models.live import Update
from tests.dashboard.test_screens_browser import LOAD_TIMEOUT_MS, open_page, sel, wait_beat
from tests.servers import RedisServer
from tests.stack import DISPLAY_TOKEN, start_stack

pytestmark = pytest.mark.browser

OUTAGE_SEEN_MS = 15_000  # the stream notices within a retry or two, the watchdog within 5 s
RECOVERY_MS = 20_000
HHMM = re.compile(r"\b\d{2}:\d{2}\b")


@pytest.fixture
def outage_stack(postgres_url, artifacts_dir):
    # Append-only, as in production: what Redis held comes back when it restarts.
    redis = RedisServer(extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    redis.start()
    stack = start_stack(database_url=postgres_url, redis_url=redis.url, mqtt_url=None, crm_url=None)
    now = datetime.now(UTC)
    stack.runtime.live.apply(
        [
            Update("line", "L1", {"name": "Line 1", "state": "running", "last_seen": now}),
            Update("line", "L2", {"name": "Line 2", "state": "idle", "last_seen": now}),
        ]
    )
    try:
        yield stack, redis
    finally:
        if not redis.running:
            redis.restart()
        stack.stop()
        redis.stop()
        redis.save_log(artifacts_dir / "servers")
        redis.close()


def banner_shown(page, stale_id: str, timeout: float = OUTAGE_SEEN_MS) -> str:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "id => { const e = document.getElementById(id);"
        " return e && e.className.includes('stale-banner--show'); }",
        arg=stale_id,
        timeout=timeout,
    )
    return str(page.locator(f"#{stale_id}").inner_text())


def banner_hidden(page, stale_id: str, timeout: float = RECOVERY_MS) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "id => { const e = document.getElementById(id);"
        " return e && !e.className.includes('stale-banner--show'); }",
        arg=stale_id,
        timeout=timeout,
    )


def test_screens_grey_in_a_redis_outage_and_recover_by_themselves(
    outage_stack, page, browser, artifacts_dir: Path
):
    stack, redis = outage_stack
    open_page(page, f"{stack.url}/wall?token={DISPLAY_TOKEN}", sel(ids.TILE, "line", "L2"))
    wait_beat(page, ids.WALL.heartbeat)
    page.evaluate("window.__marker = 'same page'")
    assert not page.locator(f"#{ids.WALL.stale}").is_visible()

    redis.stop()
    text = banner_shown(page, ids.WALL.stale)
    assert text.startswith("Live data stale since") and HHMM.search(text), text
    assert page.locator(sel(ids.TILE_NAME, "line", "L2")).inner_text() == "Line 2"  # kept
    assert "tile--idle" in page.locator(sel(ids.TILE, "line", "L2")).get_attribute("class")
    page.screenshot(path=str(artifacts_dir / "outage-wall-stale.png"))

    # Pages opened during the outage: the wall from this process's last good reading, the
    # alert panel (never read before) with a clear notice; both in the other language too.
    context = page.context
    fresh = context.new_page()
    fresh.goto(f"{stack.url}/wall?lang=zh-CN", wait_until="load")
    fresh.wait_for_selector(sel(ids.TILE, "line", "L1"), timeout=LOAD_TIMEOUT_MS)
    text = banner_shown(fresh, ids.WALL.stale)
    assert "实时数据自" in text and "起未更新" in text and HHMM.search(text), text
    fresh.screenshot(path=str(artifacts_dir / "outage-wall-opened-during.png"))

    alerts = context.new_page()
    alerts.goto(f"{stack.url}/alerts", wait_until="load")
    text = banner_shown(alerts, ids.ALERTS.stale, timeout=LOAD_TIMEOUT_MS)
    assert text.startswith("Live data unavailable since") and HHMM.search(text), text
    assert alerts.locator(".nav").is_visible()  # the frame is there, not a blank page
    alerts.screenshot(path=str(artifacts_dir / "outage-alerts-unavailable.png"))

    lookup = context.new_page()
    lookup.goto(f"{stack.url}/orders?lang=zh-CN", wait_until="load")
    note = lookup.locator("#orders-results .stale-note")
    note.wait_for(timeout=LOAD_TIMEOUT_MS)
    assert "实时数据自" in note.inner_text() and "起不可用" in note.inner_text()
    lookup.screenshot(path=str(artifacts_dir / "outage-orders-zh-CN.png"))

    redis.restart()
    # Each open page recovers alone: the banner goes and new data arrives by push.
    banner_hidden(page, ids.WALL.stale)
    banner_hidden(fresh, ids.WALL.stale)
    banner_hidden(alerts, ids.ALERTS.stale)
    stack.runtime.live.apply(
        [
            Update(
                "line",
                "L2",
                {
                    "state": "down",
                    "reason": "back after outage",
                    "since": datetime.now(UTC),
                    "last_seen": datetime.now(UTC),
                },
            )
        ]
    )
    page.locator(sel(ids.TILE_REASON, "line", "L2")).filter(has_text="back after outage").wait_for(
        timeout=RECOVERY_MS
    )
    fresh.locator(sel(ids.TILE_REASON, "line", "L2")).filter(has_text="back after outage").wait_for(
        timeout=RECOVERY_MS
    )
    assert page.evaluate("window.__marker") == "same page"  # recovered without a reload
    alerts.locator("#alerts-list").filter(has_text="No open alerts").wait_for(timeout=RECOVERY_MS)
    page.wait_for_timeout(700)
    page.screenshot(path=str(artifacts_dir / "outage-wall-recovered.png"))
    fresh.screenshot(path=str(artifacts_dir / "outage-wall-zh-recovered.png"))
    alerts.screenshot(path=str(artifacts_dir / "outage-alerts-recovered.png"))
