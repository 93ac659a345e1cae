"""Column mappings made on the /import screen: built from the headers chosen, refused with
the missing field named, saved as a connector file that ``loopline import-orders --mapping``
reads, and an upload's bytes go through the same ``import_sheet`` as the CLI's file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from loopline.ingest.crm.connector import ConnectorFileError, Registry, default_registry
from loopline.ingest.crm.sheet import (
    columns_of,
    import_sheet,
    mapping_from_columns,
    save_mapping,
)
from loopline.models.db import make_engine, make_sessions, migrate, transaction
from loopline.models.intake import apply_received
from loopline.models.records import InboxEvent, Order
from tests.factories import seed_small_factory

CSV = (
    'Auftrag,Kunde,Kundenname,Artikel,Menge,"Liefer ""Termin"""\n'
    "A-1,0042,Müller GmbH,P1,10,2026-12-18\n"
    "A-1,0042,Müller GmbH,P2,3,2026-12-18\n"
    "A-2,C-7,Schmidt AG,P1,4,bald\n"
)
COLUMNS = {
    "order_id": "Auftrag",
    "customer_id": "Kunde",
    "customer_name": "Kundenname",
    "sku": "Artikel",
    "qty": "Menge",
    "requested_date": 'Liefer "Termin"',  # a quote in a header is kept
}


def test_a_missing_column_or_a_bad_source_name_is_named():
    with pytest.raises(ConnectorFileError, match="columns.qty"):
        mapping_from_columns("erp", "erp", {**COLUMNS, "qty": None})
    with pytest.raises(ConnectorFileError, match="^name:"):
        mapping_from_columns("Has Space", "x", COLUMNS)


def test_the_shipped_mapping_finds_its_headers():
    headers = ["订单号", "客户编号", "客户名称", "物料编码", "数量", "交期"]
    found = columns_of(default_registry().get("orders-sheet"), headers)
    assert found["order_id"] == "订单号" and found["requested_date"] == "交期"
    assert found["priority"] is None


def test_saved_mapping_is_read_back_and_used_by_the_cli(sessions, tmp_path):
    connector = mapping_from_columns("erp-de", "erp-de", COLUMNS)
    path = save_mapping(connector, tmp_path / "connectors")
    again = Registry(tmp_path / "connectors").get("erp-de")
    assert again == connector
    assert columns_of(again, list(CSV.splitlines()[0].split(","))[:5])["sku"] == "Artikel"
    # An upload's bytes: row 4's date is named, nothing is written.
    data = CSV.encode()
    done = import_sheet(sessions, again, tmp_path / "u.csv", actor="t", dry_run=False, data=data)
    assert done.plan.errors == ['row 4, column "Liefer "Termin"": not a date']
    assert not done.written
    # The fixed file through the CLI with the saved mapping: the same path.
    db = tmp_path / "cli.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    with transaction(make_sessions(engine)) as s:
        seed_small_factory(s)
    engine.dispose()
    fixed = tmp_path / "orders.csv"
    fixed.write_text(CSV.replace("bald", "2026-12-21"), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "loopline.cli", "import-orders", str(fixed), "--mapping", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LOOPLINE_DATABASE_URL": f"sqlite:///{db}"},
    )
    assert out.returncode == 0, out.stderr + out.stdout
    assert "imported 2 orders from 3 rows (2 accepted)" in out.stdout
    # And the screen's call with the same bytes: duplicates of what the CLI wrote.
    engine = make_engine(f"sqlite:///{db}")
    cli_sessions = make_sessions(engine)
    done = import_sheet(
        cli_sessions, again, fixed, actor="screen", dry_run=False, data=fixed.read_bytes()
    )
    assert done.counts() == {"duplicate": 2}
    apply_received(cli_sessions, gate=None)
    with cli_sessions() as s:
        assert s.get(Order, "A-1").customer_id == "0042"
        assert {e.source for e in s.query(InboxEvent)} == {"crm:erp-de"}
    engine.dispose()
