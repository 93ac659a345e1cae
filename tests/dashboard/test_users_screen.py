"""The admin's people screen (issue 11) in headless Chromium on a whole stack: an admin
signed in with a password lists, adds and disables users, and the audit names them; a
sales person is told the page does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from loopline.models.db import transaction
from loopline.models.records import AuditEntry
from loopline.models.users import add_user, get_user
from tests.stack import start_stack

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"
TIMEOUT_MS = 15_000


@pytest.fixture
def people_stack(postgres_url, redis_server):
    stack = start_stack(
        database_url=postgres_url, redis_url=redis_server, mqtt_url=None, crm_url=None
    )
    with transaction(stack.runtime.sessions) as s:
        add_user(
            s, username="boss", name="Wang Boss", roles=["admin"], password=PASSWORD, actor="test"
        )
        add_user(
            s,
            username="li.na",
            name="Li Na",
            roles=["sales"],
            customers=["C-1"],
            password=PASSWORD,
            actor="test",
        )
    yield stack
    stack.stop()


def sign_in(page, url: str, username: str, path: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{url}{path}", wait_until="load")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")


def test_admin_adds_and_disables_a_user_on_the_screen(people_stack, browser, artifacts_dir: Path):
    url = people_stack.url
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    try:
        sign_in(page, url, "boss", "/users")  # the sign-in form answers 401 (logged)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        table = page.locator("#users-table")
        table.filter(has_text="Li Na").wait_for(timeout=TIMEOUT_MS)
        assert "C-1" in table.inner_text() and "all orders" in table.inner_text()
        # A bad name is refused with the field named; nothing is added.
        page.fill("#users-username", "has space")
        page.fill("#users-name", "Zhou Min")
        page.click("#users-add")
        page.locator("#users-message").filter(has_text="username:").wait_for(timeout=TIMEOUT_MS)
        page.fill("#users-username", "zhou.min")
        page.fill("#users-customers", "C-7, C-8")
        page.click("#users-add")
        page.locator("#users-message").filter(has_text="Added zhou.min").wait_for(
            timeout=TIMEOUT_MS
        )
        row = page.locator("tr.user-row", has_text="zhou.min")
        assert "C-7, C-8" in row.inner_text() and "active" in row.inner_text()
        page.screenshot(path=str(artifacts_dir / "users-admin.png"), full_page=True)
        row.locator("button").click()
        page.locator("#users-message").filter(has_text="Disabled zhou.min").wait_for(
            timeout=TIMEOUT_MS
        )
        assert "disabled" in page.locator("tr.user-row", has_text="zhou.min").inner_text()
        assert not errors, errors
    finally:
        context.close()
    with people_stack.runtime.sessions() as s:
        user = get_user(s, username="zhou.min")
        assert (
            user is not None and user.disabled_at is not None and user.customers == ["C-7", "C-8"]
        )
        actors = dict(
            s.execute(
                select(AuditEntry.action, AuditEntry.actor).where(
                    AuditEntry.entity_id == "zhou.min"
                )
            ).all()
        )
    assert actors == {"user.added": "boss", "user.disabled": "boss"}

    rep = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    try:
        sign_in(rep, url, "li.na", "/users")
        rep.locator("text=Not found").wait_for(timeout=TIMEOUT_MS)
        assert "zhou.min" not in rep.inner_text("body")
    finally:
        rep.context.close()
