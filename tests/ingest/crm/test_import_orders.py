"""``loopline import-orders``: a spreadsheet's rows become orders through the CRM events' path;
every bad row is named (row, column) before anything is written; codes keep leading zeros."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime

from openpyxl import Workbook
from sqlalchemy import select

from loopline.ingest.crm.connector import default_registry
from loopline.ingest.crm.sheet import known_products, plan_import, read_rows, record_plan
from loopline.models.db import make_engine, make_sessions, migrate, transaction
from loopline.models.intake import apply_received
from loopline.models.records import InboxEvent, Order, Product
from tests.factories import seed_small_factory

HEADER = ["订单号", "客户编号", "客户名称", "物料编码", "数量", "交期", "优先级", "销售"]


def workbook(path, rows):
    book = Workbook()
    ws = book.active
    ws.append(["订单导入 2026-12"])  # a title row above the header, as people make them
    ws.append([])
    ws.append(HEADER)
    for row in rows:
        ws.append(row)
    ws.cell(row=4, column=2).number_format = "@"  # a text cell
    book.save(path)
    return path


def good_rows():
    return [
        ["SO-X1", "007", "Acme 齿轮", "00123", 500, datetime(2026, 12, 10), "加急", "li.na"],
        ["SO-X1", "007", "Acme 齿轮", "P2", 20, datetime(2026, 12, 10), "加急", "li.na"],
        [1002, "C-2", "Globex", "P1", 5.0, "2026-12-20", "普通", None],
    ]


def add_product(sessions, sku):
    with transaction(sessions) as s:
        s.add(Product(sku=sku, name="coded part"))


def test_rows_group_into_orders_keeping_codes_and_dates(sessions, tmp_path):
    add_product(sessions, "00123")
    rows = read_rows(workbook(tmp_path / "orders.xlsx", good_rows()))
    assert rows[0].number == 4 and rows[0].cells["物料编码"] == "00123"
    with sessions() as s:
        known = known_products(s)
    connector = default_registry().get("orders-sheet")
    plan = plan_import(connector, rows, known, version=7)
    assert plan.errors == []
    (first, rows_1), (second, rows_2) = plan.events
    assert (first.order.id, rows_1, second.order.id, rows_2) == ("SO-X1", [4, 5], "1002", [6])
    assert [(ln.sku, ln.qty) for ln in first.order.lines] == [("00123", 500), ("P2", 20)]
    assert (first.order.customer.id, str(first.order.requested_date)) == ("007", "2026-12-10")
    assert (first.order.priority, first.order.version, second.order.priority) == (
        "rush",
        7,
        "normal",
    )
    plan.digest = "abc"
    assert [r.outcome for r in record_plan(sessions, connector, plan, actor="t")] == [
        "accepted"
    ] * 2
    assert [r.outcome for r in record_plan(sessions, connector, plan, actor="t")] == [
        "duplicate"
    ] * 2
    apply_received(sessions, gate=None)
    with sessions() as s:
        assert s.get(Order, "SO-X1").customer_id == "007"
        assert s.scalar(select(InboxEvent)).source == "crm:orders-sheet"


def test_every_bad_row_is_named_by_row_and_column(sessions, tmp_path):
    rows = good_rows()
    rows[0][5] = "2026/13/45"
    rows[1][4] = 0
    rows[2][3] = "GEAR-Z"
    rows.append([None, "C-3", "Initech", "P1", 3, "2026-12-24", None, None])
    table = read_rows(workbook(tmp_path / "bad.xlsx", rows))
    with sessions() as s:
        known = known_products(s)
    plan = plan_import(default_registry().get("orders-sheet"), table, known, version=1)
    assert set(plan.errors) == {
        'row 7, column "订单号": is empty',
        'row 4, column "交期": not a date',
        'row 5, column "数量": not a whole number above 0',
        "row 6, column \"物料编码\": unknown product 'GEAR-Z'",
    }


def test_a_gb18030_csv_with_english_headers(sessions, tmp_path):
    csv_file = tmp_path / "orders.csv"
    csv_file.write_bytes(
        "Order,Customer ID,Customer,SKU,Qty,Due date,Priority\n"
        "0042,C-1,上海客户,P1,10,2026-12-10,high\n".encode("gb18030")
    )
    rows = read_rows(csv_file)
    plan = plan_import(default_registry().get("orders-sheet"), rows, {"P1"}, version=1)
    ((event, _),) = plan.events
    assert (event.order.id, event.order.customer.name, event.order.priority) == (
        "0042",
        "上海客户",
        "high",
    )


def test_the_command_dry_runs_then_imports(tmp_path):
    db = tmp_path / "cli.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    with transaction(make_sessions(engine)) as s:
        seed_small_factory(s)
        s.add(Product(sku="00123", name="coded part"))
    env = {**os.environ, "LOOPLINE_DATABASE_URL": f"sqlite:///{db}"}
    bad = good_rows()
    bad[0][5] = "next week"
    bad_file = workbook(tmp_path / "bad.xlsx", bad)

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "loopline.cli", "import-orders", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    out = run(str(bad_file), "--dry-run")
    assert out.returncode == 1 and 'row 4, column "交期": not a date' in out.stdout
    out = run(str(bad_file))
    assert out.returncode == 1 and "nothing imported" in out.stdout
    good_file = workbook(tmp_path / "good.xlsx", good_rows())
    out = run(str(good_file), "--dry-run")
    assert out.returncode == 0 and "2 orders from 3 rows would be imported" in out.stdout
    with make_sessions(engine)() as s:
        assert s.scalar(select(InboxEvent)) is None  # the dry runs wrote nothing
    out = run(str(good_file))
    assert out.returncode == 0, out.stderr
    assert "imported 2 orders from 3 rows (2 accepted)" in out.stdout
    engine.dispose()
