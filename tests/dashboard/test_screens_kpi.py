"""/kpi in a real browser on a whole stack with weeks of history, and its live push."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from loopline.history import backfill_history
from loopline.models.clock import utcnow
from loopline.models.db import transaction
from loopline.models.records import BomLine, Material
from tests.dashboard.test_screens_browser import LOAD_TIMEOUT_MS, open_page, sel, wait_beat
from tests.factories import order_event
from tests.stack import API_TOKEN, start_stack, wait_until

pytestmark = pytest.mark.browser

PUSH_TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def kpi_stack(postgres_cluster, redis_server):
    name = postgres_cluster.create_database()
    s = start_stack(
        database_url=postgres_cluster.url_for(name),
        redis_url=redis_server,
        mqtt_url=None,
        crm_url=None,
    )
    with transaction(s.runtime.sessions) as session:
        session.add(
            Material(id="M1", name="Steel bar", unit="kg", on_hand=60_000, lead_time_days=4)
        )
        session.flush()
        session.add(BomLine(sku="P1", material_id="M1", qty_per_unit=2.0))
        backfill_history(session, now=utcnow(), rng=random.Random(5))
    yield s
    s.stop()


def _text(page, kind: str, key: str) -> str:  # type: ignore[no-untyped-def]
    return page.locator(sel(kind, "kpi", key)).inner_text()


def test_kpi_screen_shows_figures_with_trends_and_follows_a_delivery(
    kpi_stack, page, artifacts_dir: Path
):
    open_page(page, f"{kpi_stack.url}/kpi?token={API_TOKEN}&lang=en", ".kpi-card")
    wait_beat(page, "kpi-heartbeat")
    assert page.locator(".kpi-card").count() == 8
    for key in ("on_time_delivery", "lead_time_avg", "promise_reliability", "satisfaction"):
        assert _text(page, "kpi-value", key) != "—", key
    # Each card has its weekly bars: 8 weeks by default.
    page.wait_for_selector(f"{sel('kpi-fig', 'kpi', 'on_time_delivery')} .bars .point")
    bars = page.locator(f"{sel('kpi-fig', 'kpi', 'on_time_delivery')} .bars .point").count()
    assert 6 <= bars <= 8
    assert page.locator(".table--oee tbody tr").count() == 2  # L1, L2
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts_dir / "kpi.png"), full_page=True)

    # A delivery now moves this week's figures without a reload.
    before = _text(page, "kpi-sub", "on_time_delivery")
    assert kpi_stack.send_crm(order_event("SO-9501"), "kpi-1").status_code == 202
    wait_until(lambda: kpi_stack.get("/api/v1/orders/SO-9501").status_code == 200)
    assert kpi_stack.post("/api/v1/orders/SO-9501/deliver").status_code == 200
    n = int(before.split()[0])
    page.locator(sel("kpi-sub", "kpi", "on_time_delivery")).filter(
        has_text=f"{n + 1} measured"
    ).wait_for(timeout=PUSH_TIMEOUT_MS)

    # The period selector: 4 weeks, 4 bars at most.
    page.click(sel("kpi-period", "kpi", "4"))
    page.wait_for_selector(".period--active >> text=4 weeks", timeout=LOAD_TIMEOUT_MS)
    page.wait_for_function(
        "s => { const g = document.querySelector(s); return g &&"
        " g.querySelectorAll('.bars .point').length > 0 &&"
        " g.querySelectorAll('.bars .point').length <= 4; }",
        arg=sel("kpi-fig", "kpi", "lead_time_avg"),
        timeout=LOAD_TIMEOUT_MS,
    )
    assert not [e for e in page.console_errors if "favicon" not in e]


def test_kpi_screen_in_chinese(kpi_stack, page, artifacts_dir: Path):
    open_page(page, f"{kpi_stack.url}/kpi?token={API_TOKEN}&lang=zh-CN&weeks=13", ".kpi-card")
    assert "准时交付率" in page.inner_text(".kpi-grid")
    assert "13 周" in page.inner_text(".period--active")
    page.wait_for_timeout(800)
    page.screenshot(path=str(artifacts_dir / "kpi-zh-CN.png"), full_page=True)


# -- the phone lookup (/orders at 390 px) and an order's detail ---------------------------
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def phone(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()


def _open_orders(kpi_stack) -> None:  # type: ignore[no-untyped-def]
    from datetime import date, timedelta

    for n, (lines, days) in enumerate([([("P1", 400)], 6), ([("P2", 300), ("P1", 100)], 3)]):
        body = order_event(f"SO-96{n:02d}", 1, lines, date.today() + timedelta(days=days))
        assert kpi_stack.send_crm(body, f"phone-{n}").status_code == 202
    for n in range(2):
        wait_until(
            lambda n=n: kpi_stack.get(f"/api/v1/orders/SO-96{n:02d}").json().get("promised_date")
        )


def _no_sideways_scroll(tab) -> None:  # type: ignore[no-untyped-def]
    width = tab.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways: {width} px wide"


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_orders_on_a_phone_are_cards_and_open_their_detail(
    kpi_stack, phone, lang, artifacts_dir: Path
):
    _open_orders(kpi_stack)
    open_page(phone, f"{kpi_stack.url}/orders?token={API_TOKEN}&lang={lang}", ".order-card")
    card = phone.locator(".order-card").filter(has_text="SO-9601")
    card.wait_for(timeout=LOAD_TIMEOUT_MS)
    _no_sideways_scroll(phone)
    # Promised and ETA are on the card, each label on one line (not a character a line).
    text = card.inner_text()
    assert ("Promised" if lang == "en" else "承诺交期") in text
    lines = phone.evaluate(
        "() => [...document.querySelectorAll('.order-facts dt, .order-facts dd')]"
        ".map(e => [e.tagName, e.innerText, e.getBoundingClientRect().height"
        " / parseFloat(getComputedStyle(e).fontSize)])"
    )
    # In font sizes: one line is about 1.3. A label keeps to one line; a value may wrap
    # once at a space ("tomorrow / 01:05" in a third of a phone), never a word a line.
    assert lines and all(h < (2.0 if tag == "DT" else 3.0) for tag, _, h in lines), lines
    phone.wait_for_timeout(300)
    phone.screenshot(path=str(artifacts_dir / f"orders-phone-{lang}.png"), full_page=True)

    card.click()
    phone.wait_for_url("**/orders/SO-9601**", timeout=LOAD_TIMEOUT_MS)
    phone.wait_for_selector(".detail-wos .wo", timeout=LOAD_TIMEOUT_MS)
    assert phone.locator(".detail-wos .wo").count() == 2  # two order lines
    assert phone.locator(".detail-promises .promise").count() >= 1
    timeline = phone.inner_text(".detail-timeline")
    assert ("Order received" if lang == "en" else "收到订单") in timeline
    _no_sideways_scroll(phone)
    phone.screenshot(path=str(artifacts_dir / f"order-detail-phone-{lang}.png"), full_page=True)


def test_a_delivered_order_shows_its_follow_up_and_timeline(kpi_stack, phone, artifacts_dir):
    open_page(phone, f"{kpi_stack.url}/orders/SO-H0001?token={API_TOKEN}&lang=en", ".detail-head")
    assert "Delivered" in phone.inner_text(".detail-head")
    assert "Confirm delivery" in phone.inner_text(".detail-tasks")
    timeline = phone.inner_text(".detail-timeline")
    for step in ("Order received", "Delivery date promised", "Production completed", "Delivered"):
        assert step in timeline
    open_page(phone, f"{kpi_stack.url}/orders/NOPE?lang=en", ".detail-none")
    assert "No order NOPE" in phone.inner_text(".detail-none")


def test_inbox_completes_a_satisfaction_follow_up_through_the_api(
    kpi_stack, page, artifacts_dir: Path
):
    open_tasks = kpi_stack.get("/api/v1/tasks").json()
    task = next(t for t in open_tasks if t["kind"] == "satisfaction")
    rep, task_id = task["assignee"], str(task["id"])
    open_page(page, f"{kpi_stack.url}/inbox?token={API_TOKEN}&lang=en&rep={rep}", ".inbox-task")
    wait_beat(page, "inbox-heartbeat")
    shown = page.locator(".inbox-task").count()
    assert shown == len([t for t in open_tasks if t["assignee"] == rep])
    assert rep in page.inner_text(".inbox-tasks")
    page.fill(sel("task-score", "task", task_id), "150")
    page.click(sel("task-done", "task", task_id))
    page.locator("#inbox-msg.decision--refused").filter(has_text="score").wait_for(
        timeout=PUSH_TIMEOUT_MS
    )
    page.fill(sel("task-score", "task", task_id), "80")
    page.fill(sel("task-note", "task", task_id), "Happy with the gears")
    page.screenshot(path=str(artifacts_dir / "inbox.png"), full_page=True)
    page.click(sel("task-done", "task", task_id))
    page.locator("#inbox-msg.decision--ok").wait_for(timeout=PUSH_TIMEOUT_MS)
    # The API announces it: the stream takes the task off the list.
    page.locator(sel("task", "task", task_id)).wait_for(state="detached", timeout=PUSH_TIMEOUT_MS)
    done = kpi_stack.get(f"/api/v1/tasks/{task_id}").json()
    assert (done["status"], done["score"], done["note"]) == ("done", 80, "Happy with the gears")


def test_kpi_screen_reads_on_a_phone(kpi_stack, phone, artifacts_dir: Path):
    open_page(phone, f"{kpi_stack.url}/kpi?token={API_TOKEN}&lang=zh-CN", ".kpi-card")
    phone.wait_for_selector(".kpi-trend .main-svg", timeout=LOAD_TIMEOUT_MS)
    phone.wait_for_timeout(500)
    _no_sideways_scroll(phone)
    phone.screenshot(path=str(artifacts_dir / "kpi-phone-zh-CN.png"), full_page=True)
