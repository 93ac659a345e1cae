"""The in-app notification inbox on /inbox (issue 11), in headless Chromium on a whole
stack (real PostgreSQL and Redis, the worker's notification sweep from a rules file).

A sales rep on a phone (390 px, zh-CN) sees the entries told to their role about their
own customer's orders, never one about another customer's, marks one read, and a new one
arrives while the page is open. The production manager acknowledges the critical alert
the escalation told them of: the alert is acked and its escalation stops.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from loopline.models.alerts import open_alert
from loopline.models.clock import utcnow
from loopline.models.db import transaction
from loopline.models.escalation import escalate
from loopline.models.notify_records import AlertEscalation, Notification
from loopline.models.records import Alert, Customer
from loopline.models.users import add_user
from loopline.runtime import build_notifier
from tests.factories import order_event
from tests.stack import start_stack, wait_until

pytestmark = pytest.mark.browser

FOREIGN, MINE = "SO-9301", "SO-9401"
SECRETS = (FOREIGN, "Acme")
PASSWORD = "correct horse battery staple"
TIMEOUT_MS = 15_000
RULES = {
    "people": [],
    "rules": [
        {
            "name": "quotes",
            "event": "alert",
            "kinds": ["quote_overdue"],
            "to": ["role:sales"],
            "via": ["inbox"],
        },
    ],
    "escalation": [
        {
            "severity": "critical",
            "ack_within_min": 10,
            "levels": [["role:production_manager"], ["role:admin"]],
        }
    ],
}


def globex(order_id: str) -> dict:  # type: ignore[type-arg]
    body = order_event(order_id)
    body["order"]["customer"] = {"id": "C-2", "name": "Globex"}
    body["order"]["sales_rep"] = "li.lei"
    return body


def quote_overdue(stack, order_id: str, key: str, customer: str) -> int:
    with transaction(stack.runtime.sessions) as s:
        return open_alert(
            s,
            key=key,
            kind="quote_overdue",
            entity="order",
            entity_id=order_id,
            severity="warning",
            message=f"Quote for {order_id} ({customer}) is overdue",
            details={"order": order_id},
            role="sales",
            at=stack.runtime.clock.now(),
        ).id


@pytest.fixture
def inbox_stack(postgres_url, redis_server, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES), encoding="utf-8")
    stack = start_stack(
        database_url=postgres_url,
        redis_url=redis_server,
        mqtt_url=None,
        crm_url=None,
        notify_rules=rules,
    )
    with transaction(stack.runtime.sessions) as s:
        s.add(Customer(id="C-2", name="Globex", importance=1))
        s.flush()
        add_user(
            s,
            username="li.lei",
            name="Li Lei",
            roles=["sales"],
            customers=["C-2"],
            password=PASSWORD,
            lang="zh-CN",
            actor="test",
        )
        add_user(
            s,
            username="wang",
            name="Wang Fang",
            roles=["production_manager"],
            password=PASSWORD,
            actor="test",
        )
    assert stack.send_crm(order_event(FOREIGN), "i-1").status_code == 202
    assert stack.send_crm(globex(MINE), "i-2").status_code == 202
    for o in (FOREIGN, MINE):
        wait_until(lambda o=o: stack.get(f"/api/v1/orders/{o}").json().get("promised_date"), 30)
    yield stack
    stack.stop()


def sign_in(page, url: str, username: str) -> None:
    page.goto(url, wait_until="load")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")


def test_a_rep_reads_their_notifications_on_a_phone(inbox_stack, browser, artifacts_dir: Path):
    stack = inbox_stack
    notifier = build_notifier(stack.runtime)
    assert notifier is not None
    quote_overdue(stack, MINE, f"quote_overdue:{MINE}", "Globex")
    quote_overdue(stack, FOREIGN, f"quote_overdue:{FOREIGN}", "Acme")
    notifier.sweep()
    # Both were told to role:sales (li.lei's inbox): the screen must leave Acme's out.
    told = stack.get("/api/v1/notifications", params={"person": "li.lei"}).json()
    assert {FOREIGN, MINE} <= {n["details"].get("order") for n in told}

    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        sign_in(page, f"{stack.url}/inbox?lang=zh-CN", "li.lei")
        notes = page.locator("#inbox-notes")
        notes.filter(has_text=MINE).wait_for(timeout=TIMEOUT_MS)
        page.wait_for_selector("#inbox-heartbeat[title]", state="attached", timeout=TIMEOUT_MS)
        text = page.inner_text("body")
        assert "通知" in text and "1 条未读" in text and "标为已读" in text
        assert not [s for s in SECRETS if s in text], text
        # Cards, not a wide table: nothing scrolls sideways at 390 px.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width
        page.screenshot(path=str(artifacts_dir / "inbox-notes-phone-zh.png"), full_page=True)

        page.locator(".note--unread button", has_text="标为已读").first.click()
        page.locator("#inbox-note-msg").filter(has_text="已标为已读").wait_for(timeout=TIMEOUT_MS)
        page.locator(".note--read").first.wait_for(timeout=TIMEOUT_MS)  # redrawn live
        assert page.locator(".note--unread").count() == 0
        with stack.runtime.sessions() as s:
            read = s.scalars(select(Notification).where(Notification.address == "li.lei")).all()
        assert {n.details["order"]: n.read_at is not None for n in read} == {
            MINE: True,
            FOREIGN: False,  # another customer's: the rep's "read" never touched it
        }

        # A new entry arrives while the page is open: pushed, no reload.
        quote_overdue(stack, MINE, f"quote_overdue:{MINE}:again", "Globex")
        notifier.sweep()
        page.locator(".note--unread").first.wait_for(timeout=TIMEOUT_MS)
        assert page.locator(".note").count() == 2
        text = page.inner_text("body")
        assert not [s for s in SECRETS if s in text], text
        page.screenshot(path=str(artifacts_dir / "inbox-notes-phone-zh-new.png"), full_page=True)
    finally:
        context.close()


def test_the_manager_acknowledges_an_escalated_alert(inbox_stack, browser, artifacts_dir: Path):
    stack = inbox_stack
    notifier = build_notifier(stack.runtime)
    assert notifier is not None
    with transaction(stack.runtime.sessions) as s:
        alert_id = open_alert(
            s,
            key="mqtt_disconnected",
            kind="mqtt_disconnected",
            entity="line",
            entity_id="L1",
            severity="critical",
            message="MQTT broker unreachable",
            role="production",
            at=stack.runtime.clock.now(),
        ).id
    result = notifier.sweep()
    assert result is not None and result.escalation_steps == 1

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    try:
        sign_in(page, f"{stack.url}/inbox?lang=en", "wang")
        card = page.locator(".note").filter(has_text="MQTT broker unreachable")
        card.wait_for(timeout=TIMEOUT_MS)
        assert "Alert open" in card.inner_text()
        card.locator("button", has_text="Acknowledge").click()
        page.locator("#inbox-note-msg").filter(has_text="acknowledged").wait_for(timeout=TIMEOUT_MS)
        card.filter(has_text="Alert acknowledged").wait_for(timeout=TIMEOUT_MS)
        assert card.locator("button").count() == 0  # acked and read: nothing left to do
        page.screenshot(path=str(artifacts_dir / "inbox-notes-ack-en.png"), full_page=True)
    finally:
        page.context.close()
    with stack.runtime.sessions() as s:
        alert = s.get(Alert, alert_id)
        esc = s.get(AlertEscalation, alert_id)
        assert alert is not None and alert.status == "acked" and alert.acked_by == "wang"
        assert esc is not None and esc.stopped_at is not None and "wang" in (esc.stop_reason or "")
    # The escalation stopped: a round 15 min on, past its 10 min deadline, tells the next
    # level nothing (without the ack it would: the same round on another alert does).
    later = utcnow() + timedelta(minutes=15)
    with transaction(stack.runtime.sessions) as s:
        other = open_alert(
            s,
            key="ingest_offline",
            kind="ingest_offline",
            entity="line",
            entity_id="L1",
            severity="critical",
            message="ingest offline",
            role="production",
            at=utcnow(),
        ).id
        escalate(s, notifier.config, notifier.directory, now=utcnow(), wall_now=utcnow())
        escalate(s, notifier.config, notifier.directory, now=later, wall_now=later)
    with stack.runtime.sessions() as s:
        second = s.scalars(select(Notification).where(Notification.rule == "escalation:1")).all()
    assert {n.alert_id for n in second} == {other}
