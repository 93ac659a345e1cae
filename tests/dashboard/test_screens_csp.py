"""Every screen works under the security headers (api/security.py) in headless Chromium:
no CSP violation, the pages render, push keeps flowing over the websocket, and the buttons
whose code Dash inlines (acknowledge, approve) still work. Screenshots go to test-artifacts/.

A module of its own after test_screens_browser.py: a stack mounts its own Dash app, and Dash
keeps the page registry in module globals.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loopline.dashboard import ids
from tests.dashboard.test_screens_browser import (
    LOAD_TIMEOUT_MS,
    PUSH_TIMEOUT_MS,
    open_page,
    seed_plan_scenario,
    sel,
    wait_beat,
)

pytestmark = pytest.mark.browser

# Collects what the browser itself reports: CSP violations are events, not only console text.
WATCH_VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(
    `${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`
    + ` at ${e.sourceFile}:${e.lineNumber}`));
"""


def _open_alert(stack) -> str:  # type: ignore[no-untyped-def]
    from loopline.models.alerts import open_alert
    from loopline.models.db import transaction
    from loopline.models.watch import mirror_alerts

    with transaction(stack.runtime.sessions) as s:
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
        mirror_alerts(s, stack.runtime.live)
        return str(alert.id)


def test_every_screen_works_under_the_content_security_policy(
    plan_stack, browser, artifacts_dir: Path
):
    from tests.stack import API_TOKEN

    change_id = str(seed_plan_scenario(plan_stack))
    alert_id = _open_alert(plan_stack)
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    context.add_init_script(WATCH_VIOLATIONS)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    responses: dict[str, dict[str, str]] = {}  # each page's own HTML response

    def keep(r) -> None:  # type: ignore[no-untyped-def]
        if r.request.resource_type == "document" and r.status == 200:
            responses[r.url.split("?")[0].rsplit("/", 1)[-1]] = r.all_headers()

    page.on("response", keep)
    try:
        open_page(page, f"{plan_stack.url}/wall?token={API_TOKEN}", sel(ids.TILE, "line", "L1"))
        wait_beat(page, ids.WALL.heartbeat)  # the push websocket runs under connect-src
        page.screenshot(path=str(artifacts_dir / "csp-wall.png"))

        open_page(page, f"{plan_stack.url}/board", f"#{ids.BOARD_GANTT} .main-svg")
        wait_beat(page, ids.BOARD.heartbeat)
        page.locator(f"#{ids.BOARD_GANTT} text", has_text="WO-").first.wait_for(
            timeout=LOAD_TIMEOUT_MS
        )
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts_dir / "csp-board.png"))

        open_page(page, f"{plan_stack.url}/orders", f"#{ids.ORDERS_SEARCH}")
        page.fill(f"#{ids.ORDERS_SEARCH}", "SO-V")
        page.locator(f"#{ids.ORDERS_RESULTS} .order-card").filter(has_text="SO-V").first.wait_for(
            timeout=PUSH_TIMEOUT_MS
        )
        page.screenshot(path=str(artifacts_dir / "csp-orders.png"))

        # The KPI charts (Plotly) and the inbox's clientside script.
        open_page(page, f"{plan_stack.url}/kpi", ".kpi-card")
        page.wait_for_selector(".kpi-trend .main-svg", timeout=LOAD_TIMEOUT_MS)
        open_page(page, f"{plan_stack.url}/inbox", "#inbox-list")

        # Acknowledge runs code Dash inlines in the page: allowed by its hash, nothing else.
        button = sel(ids.ALERT_ACK, "alert", alert_id)
        open_page(page, f"{plan_stack.url}/alerts", button)
        wait_beat(page, ids.ALERTS.heartbeat)
        page.screenshot(path=str(artifacts_dir / "csp-alerts.png"))
        page.click(button)
        page.wait_for_function(
            "s => !document.querySelector(s) || document.querySelector(s).offsetParent === null",
            arg=button,
            timeout=PUSH_TIMEOUT_MS,
        )

        card = sel(ids.CHANGE, "change", change_id)
        open_page(page, f"{plan_stack.url}/approvals", card)
        wait_beat(page, ids.PLAN.heartbeat)
        page.screenshot(path=str(artifacts_dir / "csp-approvals.png"), full_page=True)
        page.click(sel(ids.CHANGE_APPROVE, "change", change_id))
        page.locator(card).wait_for(state="detached", timeout=PUSH_TIMEOUT_MS)
        page.locator(f"#{ids.PLAN_DECISION_MSG}").filter(has_text="Approved").wait_for(
            timeout=PUSH_TIMEOUT_MS
        )
        violations = page.evaluate("window.__csp")
    finally:
        context.close()
    assert violations == [], violations
    assert not [c for c in console if "Content Security Policy" in c or "Refused" in c], console
    assert not [c for c in console if c.startswith(("error", "pageerror"))], console
    for name in ("wall", "board", "orders", "alerts", "approvals"):
        csp = responses[name].get("content-security-policy", "")
        assert "script-src 'self' 'sha256-" in csp and "unsafe-eval" not in csp, (name, csp)
        assert responses[name].get("x-frame-options") == "DENY"
