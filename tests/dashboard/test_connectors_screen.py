"""The field mapping screen: pick a connector, paste a sample, see the canonical event or the
failing fields (the same code path as ``loopline connectors check``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopline.dashboard.pages.connectors import mapping_rows, render_check
from loopline.ingest.crm.check import check_sample
from loopline.ingest.crm.connector import default_registry

SAMPLES = Path(__file__).parents[1] / "ingest" / "crm" / "samples"
LOAD_TIMEOUT_MS = 15_000


def texts(component) -> list[str]:  # type: ignore[no-untyped-def]
    """Every string in a Dash component tree."""
    if isinstance(component, str):
        return [component]
    children = getattr(component, "children", None)
    if children is None:
        return []
    if not isinstance(children, list):
        children = [children]
    return [t for c in children for t in texts(c)]


def test_the_screen_shows_what_check_sample_returns():
    body = (SAMPLES / "jiandaoyun_update.json").read_text()
    shown = texts(render_check(default_registry(), "jiandaoyun", body, "en"))
    result = check_sample(default_registry().get("jiandaoyun"), body.encode())
    assert shown[0] == "Canonical event"
    assert json.loads(shown[1]) == {**result.events[0], "ref": result.refs[0]}


def test_the_screen_says_what_reconciliation_reads():
    from dash import html

    from loopline.dashboard.pages.connectors import describe

    shown = " ".join(texts(html.Div(describe(default_registry().get("odoo"), "en"))))
    assert "Reconciliation reads: odoo (state in sale, done)" in shown
    shown = " ".join(texts(html.Div(describe(default_registry().get("flatcrm"), "zh-CN"))))
    assert "对账读取: 无" in shown


def test_the_mapping_table_names_the_crm_paths():
    rows = dict(mapping_rows(default_registry().get("flatcrm")))
    assert rows["order.id"] == "deal_id" and rows["order.lines[].qty"] == "items[].quantity"


@pytest.mark.browser
def test_paste_a_sample_and_see_the_event_or_the_failing_field(live_server, page, artifacts_dir):
    page.goto(f"{live_server.url}/connectors?connector=flatcrm&lang=zh-CN", wait_until="load")
    page.wait_for_selector("#connectors-sample", timeout=LOAD_TIMEOUT_MS)
    deal = {"event": "deal.updated", "deal_id": 9, "rev": 1, "account_id": "C-1"}
    deal |= {"account_name": "Acme", "items": [{"product_code": "P1", "quantity": 5}]}
    deal |= {"need_by": "2026-12-10", "urgency": "rush"}
    page.fill("#connectors-sample", json.dumps(deal, indent=1))
    page.click("#connectors-check")
    page.wait_for_selector(".check-event", timeout=LOAD_TIMEOUT_MS)
    assert '"priority": "rush"' in page.inner_text(".check-event")
    assert "deal_id" in page.inner_text("#connectors-fields")
    page.screenshot(path=str(artifacts_dir / "connectors-ok.png"), full_page=True)
    deal["items"][0]["quantity"] = "many"
    page.fill("#connectors-sample", json.dumps(deal, indent=1))
    page.click("#connectors-check")
    page.wait_for_selector(".check-error", timeout=LOAD_TIMEOUT_MS)
    assert "items[0].quantity" in page.inner_text("#connectors-result")
    page.screenshot(path=str(artifacts_dir / "connectors-error.png"), full_page=True)
    assert not page.console_errors
