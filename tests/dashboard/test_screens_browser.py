"""The screens in a real browser: they render from the live state and follow it by push."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loopline.dashboard import ids
from loopline.dashboard.i18n import fmt_eta
from loopline.models.live import Change, Update, index_key, key

pytestmark = pytest.mark.browser

PUSH_TIMEOUT_MS = 5_000
LOAD_TIMEOUT_MS = 15_000


def sel(kind: str, key: str, entity_id: str) -> str:
    """The CSS selector of a dict-id component (Dash writes the id as sorted JSON)."""
    dom_id = json.dumps(ids.part(kind, key, entity_id), sort_keys=True, separators=(",", ":"))
    return f"[id='{dom_id}']"


def open_page(page, url: str, ready: str) -> None:  # type: ignore[no-untyped-def]
    # A live page never reaches network idle: wait for the load event, then the content.
    page.goto(url, wait_until="load")
    page.wait_for_selector(ready, timeout=LOAD_TIMEOUT_MS)


def wait_beat(page, heartbeat_id: str) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "id => { const e = document.getElementById(id); return e && e.title; }",
        arg=heartbeat_id,
        timeout=LOAD_TIMEOUT_MS,
    )


def test_wall_shows_a_line_going_down_without_reload(live_server, page, artifacts_dir: Path):
    open_page(page, f"{live_server.url}/wall", sel(ids.TILE, "line", "L2"))
    wait_beat(page, ids.WALL.heartbeat)
    assert page.locator(sel(ids.TILE_NAME, "line", "L1")).inner_text() == "Line 1 · Press"
    assert "tile--running" in page.locator(sel(ids.TILE, "line", "L2")).get_attribute("class")
    page.evaluate("window.__marker = 'same page'")

    live_server.live.apply(
        [
            Update(
                "line",
                "L2",
                {
                    "state": "down",
                    "reason": "jam on feeder",
                    "since": datetime.now(UTC).isoformat(),
                },
            )
        ]
    )

    reason = page.locator(sel(ids.TILE_REASON, "line", "L2"))
    reason.filter(has_text="jam on feeder").wait_for(timeout=PUSH_TIMEOUT_MS)
    tile = page.locator(sel(ids.TILE, "line", "L2"))
    page.wait_for_function(
        "s => document.querySelector(s).className.includes('tile--down')",
        arg=sel(ids.TILE, "line", "L2"),
        timeout=PUSH_TIMEOUT_MS,
    )
    assert page.locator(sel(ids.TILE_STATE, "line", "L2")).inner_text().lower() == "down"
    assert page.evaluate("window.__marker") == "same page"  # pushed, not reloaded
    assert page.console_errors == []

    # Progress on the current work order moves the bar and the count.
    live_server.live.apply([Update("work_order", "WO-1001-1", {"good": 1900, "progress": 0.95})])
    page.locator(sel(ids.TILE_PCT, "line", "L1")).filter(has_text="95 %").wait_for(
        timeout=PUSH_TIMEOUT_MS
    )
    page.wait_for_timeout(700)  # let the bar's width transition settle for the screenshot
    assert tile.is_visible()
    page.screenshot(path=str(artifacts_dir / "wall.png"))


def test_wall_in_chinese(live_server, page, artifacts_dir: Path):
    open_page(page, f"{live_server.url}/wall?lang=zh-CN", sel(ids.TILE, "line", "L1"))
    assert page.locator(sel(ids.TILE_STATE, "line", "L1")).inner_text() == "运行中"
    assert page.locator(sel(ids.TILE_STATE, "line", "L4")).inner_text() == "无数据"
    assert page.locator("#wall-root").get_attribute("lang") == "zh-CN"
    page.screenshot(path=str(artifacts_dir / "wall-zh-CN.png"))


def test_alerts_panel_adds_and_removes_live(live_server, page, artifacts_dir: Path):
    open_page(page, f"{live_server.url}/alerts", sel(ids.ALERT, "alert", "A-1"))
    wait_beat(page, ids.ALERTS.heartbeat)
    opened = (datetime.now(UTC) - timedelta(minutes=3)).isoformat()
    live_server.live.apply(
        [
            Update(
                "alert",
                "A-9",
                {
                    "kind": "line_down",
                    "severity": "critical",
                    "message": "Line 2 down: jam on feeder",
                    "entity": "line",
                    "entity_id": "L2",
                    "status": "open",
                    "opened_at": opened,
                    "role": "supervisor",
                },
            )
        ]
    )
    item = page.locator(sel(ids.ALERT_MESSAGE, "alert", "A-9"))
    item.filter(has_text="Line 2 down: jam on feeder").wait_for(timeout=PUSH_TIMEOUT_MS)
    # The critical alert goes to the top.
    first = page.locator("#alerts-list > li").first
    assert "alert--critical" in first.get_attribute("class")
    page.screenshot(path=str(artifacts_dir / "alerts.png"))
    assert page.console_errors == []

    live_server.live.remove("alert", ["A-9"])
    item.wait_for(state="detached", timeout=PUSH_TIMEOUT_MS)


def test_board_follows_an_order_eta(live_server, page, artifacts_dir: Path):
    open_page(page, f"{live_server.url}/board", sel(ids.ROW, "order", "SO-1002"))
    wait_beat(page, ids.BOARD.heartbeat)
    page.wait_for_selector("#board-gantt .main-svg", timeout=LOAD_TIMEOUT_MS)
    rows = page.locator("#board-rows > tr")
    assert rows.first.get_attribute("id") and "SO-1003" in rows.first.get_attribute("id")

    new_eta = (datetime.now(UTC) + timedelta(days=4)).replace(
        hour=6, minute=10, second=0, microsecond=0
    )
    expected = fmt_eta(new_eta.isoformat(), "en", tz=None, now=datetime.now(UTC))
    live_server.live.apply([Update("order", "SO-2001", {"eta": new_eta.isoformat()})])
    eta = page.locator(sel(ids.ROW_ETA, "order", "SO-2001"))
    eta.filter(has_text=expected).wait_for(timeout=PUSH_TIMEOUT_MS)

    # A risk change re-sorts: SO-2011 becomes late and moves up.
    live_server.live.apply(
        [Update("order", "SO-2011", {"risk": "late", "risk_reason": "material short"})]
    )
    page.locator(sel(ids.ROW_REASON, "order", "SO-2011")).filter(
        has_text="material short"
    ).wait_for(timeout=PUSH_TIMEOUT_MS)
    order = [r.get_attribute("id") for r in rows.all()]
    assert order.index(next(i for i in order if "SO-2011" in i)) < 2

    # A new plan is published: the work order is written without a change of its own,
    # then the plan is announced; the Gantt is rebuilt from the work orders.
    start = datetime.now(UTC) + timedelta(hours=3)
    write_silently(
        live_server.live,
        "work_order",
        "WO-NEW-1",
        {
            "id": "WO-NEW-1",
            "order_id": "SO-2011",
            "line": "L4",
            "sku": "GEAR-H",
            "qty": 300,
            "status": "planned",
            "planned_start": start.isoformat(),
            "planned_end": (start + timedelta(hours=4)).isoformat(),
        },
    )
    live_server.live.announce(Change("plan", "plan-2", {}, {"published_at": start.isoformat()}))
    page.locator("#board-gantt text", has_text="WO-NEW-1").wait_for(timeout=PUSH_TIMEOUT_MS)
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts_dir / "board.png"))


def write_silently(live, entity: str, entity_id: str, fields: dict) -> None:  # type: ignore[no-untyped-def]
    """Store an entity without publishing a change (as a plan publish step may)."""
    live.redis.hset(key(entity, entity_id), mapping={k: json.dumps(v) for k, v in fields.items()})
    live.redis.sadd(index_key(entity), entity_id)


def test_orders_lookup_searches_by_customer(live_server, page, artifacts_dir: Path):
    open_page(page, f"{live_server.url}/orders?lang=zh-CN", "#orders-search")
    page.fill("#orders-search", "globex")
    page.locator("#orders-results .order-card").filter(has_text="SO-1002").wait_for(
        timeout=PUSH_TIMEOUT_MS
    )
    page.wait_for_function(
        "() => document.querySelectorAll('#orders-results .order-card').length === 1",
        timeout=PUSH_TIMEOUT_MS,
    )
    assert "有风险" in page.locator("#orders-results").inner_text()
    page.screenshot(path=str(artifacts_dir / "orders-zh-CN.png"))


# -- /plan on a whole stack (records, API and roles) ---------------------------------------
# Last in this module on purpose: a stack mounts its own Dash app, and Dash keeps the page
# registry in module globals, so pages rendered after it come from the stack's state.
PLAN_MANAGER = "test-manager-token"
PLAN_ORIGIN = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)  # the scenario of tests/api/test_changes


def seed_plan_scenario(stack) -> int:
    """A purchase request for M1, and SO-H parked: it would push SO-V past its promise."""
    from tests.factories import order_event
    from tests.stack import wait_until

    day1 = PLAN_ORIGIN.date()
    short = order_event("SO-8001", 1, [("P1", 100)], day1 + timedelta(days=2))
    assert stack.send_crm(short, "p-1").status_code == 202
    assert stack.send_crm(order_event("SO-A", 1, [("P2", 800)], day1), "a1").status_code == 202
    victim = order_event("SO-V", 1, [("P2", 500)], day1 + timedelta(days=2))
    assert stack.send_crm(victim, "v1").json()["outcome"] == "accepted"
    wait_until(lambda: stack.get("/api/v1/orders/SO-V").json().get("promised_date"))
    wait_until(lambda: stack.get("/api/v1/purchase-requests").json())
    stack.runtime.live.apply(
        [Update("work_order", "WO-A-1", {"status": "running", "line": "L1", "good": 0})]
    )
    rush = order_event("SO-H", 1, [("P2", 1500)], day1, priority="high")
    answer = stack.send_crm(rush, "h1").json()
    assert answer["outcome"] == "accepted", answer
    # The worker's approval gate parks it: it shows among the pending changes.
    [change] = wait_until(lambda: stack.get("/api/v1/changes?status=pending").json())
    assert change["order_id"] == "SO-H", change
    return int(change["id"])


def test_plan_shows_a_pending_change_and_a_manager_approves_it(
    plan_stack, page, browser, artifacts_dir: Path
):
    from tests.stack import DISPLAY_TOKEN

    change_id = str(seed_plan_scenario(plan_stack))
    card = sel(ids.CHANGE, "change", change_id)
    approve = sel(ids.CHANGE_APPROVE, "change", change_id)

    # A wall screen's read-only sign-in is refused, and the API's reason is shown.
    open_page(page, f"{plan_stack.url}/plan?token={DISPLAY_TOKEN}", approve)
    page.click(approve)
    refused = page.locator(f"#{ids.PLAN_DECISION_MSG}")
    refused.filter(has_text="Not allowed: role 'display' may not do this").wait_for(
        timeout=PUSH_TIMEOUT_MS
    )
    assert "decision--refused" in refused.get_attribute("class")
    assert page.locator(card).is_visible()  # still pending
    page.screenshot(path=str(artifacts_dir / "plan-refused.png"))

    manager = browser.new_context(viewport={"width": 1920, "height": 1080}).new_page()
    manager.console_errors = []
    manager.on(
        "console", lambda m: manager.console_errors.append(m.text) if m.type == "error" else None
    )
    try:
        open_page(manager, f"{plan_stack.url}/approvals?token={PLAN_MANAGER}", card)
        wait_beat(manager, ids.PLAN.heartbeat)
        text = manager.locator(card).inner_text()
        assert "SO-H" in text and "1,500 × P2" in text and "SO-V" in text
        assert "Would break 1 promise" in text
        requests = manager.locator(f"#{ids.PLAN_REQUESTS}").inner_text()
        assert "Steel bar" in requests and "WO-8001-1" in requests and "SO-8001" in requests
        revision = manager.locator(f"#{ids.PLAN_REVISION}").inner_text()
        assert "Plan #" in revision
        manager.screenshot(path=str(artifacts_dir / "plan.png"), full_page=True)

        manager.click(approve)
        manager.locator(card).wait_for(state="detached", timeout=PUSH_TIMEOUT_MS)
        message = manager.locator(f"#{ids.PLAN_DECISION_MSG}")
        message.filter(has_text=f"Change #{change_id} for SO-H: Approved").wait_for(
            timeout=PUSH_TIMEOUT_MS
        )
        changes = manager.locator(f"#{ids.PLAN_CHANGES}")
        changes.filter(has_text="Approved by production_manager").wait_for(timeout=PUSH_TIMEOUT_MS)
        [decided] = plan_stack.get("/api/v1/changes?status=approved").json()
        assert decided["id"] == int(change_id)
        # The approval asks for a replan; the new revision arrives by push.
        manager.locator(f"#{ids.PLAN_REVISION}").filter(
            has_text=f"change {change_id} approved (SO-H)"
        ).wait_for(timeout=LOAD_TIMEOUT_MS)
        manager.wait_for_timeout(300)
        manager.screenshot(path=str(artifacts_dir / "plan-approved.png"), full_page=True)
        assert manager.console_errors == []
    finally:
        manager.context.close()
