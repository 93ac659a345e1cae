"""The /import screen (issue 12) in headless Chromium on a whole stack: an admin uploads a
real xlsx with one bad row, the dry run names the row and column and writes nothing; the row
fixed, the dry run lists the orders, the mapping is saved as a source, the import goes through
``import_sheet`` (the CLI's code) into the inbox and the loop applies it. A sales person is
told the page does not exist."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from loopline.ingest.crm.connector import load_file
from loopline.models.db import transaction
from loopline.models.records import InboxEvent, Order
from loopline.models.users import add_user
from tests.stack import start_stack, wait_until

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"
TIMEOUT_MS = 20_000


@pytest.fixture
def import_stack(postgres_url, redis_server, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPLINE_CONNECTORS_DIR", str(tmp_path / "connectors"))
    stack = start_stack(
        database_url=postgres_url, redis_url=redis_server, mqtt_url=None, crm_url=None
    )
    with transaction(stack.runtime.sessions) as s:
        add_user(s, username="it", name="Zhao IT", roles=["admin"], password=PASSWORD, actor="t")
        add_user(
            s,
            username="li.na",
            name="Li Na",
            roles=["sales"],
            customers=["C-1"],
            password=PASSWORD,
            actor="t",
        )
    yield stack
    stack.stop()


def workbook(path: Path, due_of_row_4: object) -> Path:
    """Orders as a factory keeps them: Chinese headers, a code with leading zeros."""
    book = Workbook()
    ws = book.active
    ws.append(["订单号", "客户编号", "客户名称", "物料编码", "数量", "交期", "优先级"])
    ws.append(["SO-7001", "00042", "上海精密齿轮", "P1", 120, date(2026, 12, 18), "紧急"])
    ws.append(["SO-7001", "00042", "上海精密齿轮", "P2", 30, date(2026, 12, 18), "紧急"])
    ws.append(["SO-7002", "C-1", "Acme Gears", "P1", 40, due_of_row_4, "普通"])
    ws["B2"].number_format = ws["B3"].number_format = "@"  # text cells: zeros kept
    book.save(path)
    return path


def sign_in(page, url: str, username: str, path: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{url}{path}", wait_until="load")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")


def test_upload_dry_run_errors_then_import(import_stack, browser, artifacts_dir, tmp_path):
    url, sessions = import_stack.url, import_stack.runtime.sessions
    bad = workbook(tmp_path / "orders-bad.xlsx", "next week")
    good = workbook(tmp_path / "orders.xlsx", date(2026, 12, 21))
    context = browser.new_context(viewport={"width": 1440, "height": 1200})
    page = context.new_page()
    errors: list[str] = []
    try:
        sign_in(page, url, "it", "/import?lang=zh-CN")
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.wait_for_selector("#import-upload", timeout=TIMEOUT_MS)
        page.set_input_files("#import-upload input[type=file]", str(bad))
        page.locator("#import-file-name").filter(has_text="orders-bad.xlsx").wait_for(
            timeout=TIMEOUT_MS
        )
        page.locator(".import-columns").wait_for(timeout=TIMEOUT_MS)
        # The shipped mapping's headers are found in the file.
        assert "交期" in page.inner_text(".import-columns")
        page.click("#import-dry-run")
        page.locator(".import-error").first.wait_for(timeout=TIMEOUT_MS)
        shown = page.inner_text("#import-result")
        assert 'row 4, column "交期": not a date' in shown and "未写入任何数据" in shown
        assert page.is_disabled("#import-apply")
        page.screenshot(path=str(artifacts_dir / "import-dry-run-error.png"), full_page=True)
        with sessions() as s:
            assert s.scalar(select(func.count(InboxEvent.id))) == 0  # nothing written
        # The fixed file: the dry run lists the orders, then the import.
        page.set_input_files("#import-upload input[type=file]", str(good))
        page.locator("#import-file-name").filter(has_text="orders.xlsx").wait_for(
            timeout=TIMEOUT_MS
        )
        page.fill("#import-source", "acme-erp")
        page.click("#import-save")
        page.locator("#import-message").filter(has_text="acme-erp").wait_for(timeout=TIMEOUT_MS)
        page.click("#import-dry-run")
        page.locator(".import-ok").filter(has_text="2").wait_for(timeout=TIMEOUT_MS)
        assert "SO-7001" in page.inner_text("#import-result")
        with sessions() as s:
            assert s.scalar(select(func.count(InboxEvent.id))) == 0  # a dry run writes nothing
        page.screenshot(path=str(artifacts_dir / "import-dry-run-ok.png"), full_page=True)
        wait_until(lambda: not page.is_disabled("#import-apply"), timeout=10)
        page.click("#import-apply")
        page.locator(".import-done").wait_for(timeout=TIMEOUT_MS)
        assert "2 accepted" in page.inner_text(".import-done")
        page.screenshot(path=str(artifacts_dir / "import-done.png"), full_page=True)

        def applied() -> bool:
            with sessions() as s:
                return s.get(Order, "SO-7002") is not None and s.get(Order, "SO-7001") is not None

        wait_until(applied, timeout=20)
        with sessions() as s:
            order = s.get(Order, "SO-7001")
            assert order.customer_id == "00042" and order.priority == "high"
            assert [(ln.sku, ln.qty) for ln in order.lines] == [("P1", 120), ("P2", 30)]
            sources = set(s.scalars(select(InboxEvent.source)))
            assert sources == {"crm:acme-erp"}
        # The saved mapping is a connector file the CLI can use (--mapping acme-erp).
        saved = load_file(tmp_path / "connectors" / "acme-erp.yaml")
        assert saved.auth.kind == "import" and saved.fields is not None
        assert not errors
    finally:
        context.close()


def test_a_sales_person_is_told_the_page_does_not_exist(import_stack, browser):
    context = browser.new_context()
    page = context.new_page()
    try:
        sign_in(page, import_stack.url, "li.na", "/import")
        page.get_by_text("Page not found.").wait_for(timeout=TIMEOUT_MS)
        assert page.locator("#import-upload").count() == 0
    finally:
        context.close()
