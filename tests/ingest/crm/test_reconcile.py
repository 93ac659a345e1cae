"""Reconciliation against Odoo (a local server plays its JSON-RPC): missed updates, missed new
orders and missed cancels are repaired through the inbox, each recorded; a second run finds
nothing more."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from loopline.ingest.crm.connector import default_registry
from loopline.ingest.crm.reconcile import reconcile
from loopline.models.intake import apply_received
from loopline.models.records import AuditEntry, Order
from tests.ingest.crm.fake_api import FakeApi
from tests.ingest.crm.presets import deliver, preset, sample_json
from tests.ingest.crm.test_preset_odoo import TOKEN, odoo_in, odoo_rpc

BASE = sample_json("odoo_sale_order.json")


def shaped(record: dict) -> dict:
    """An order as search_read answers: many2one as [id, name]."""
    out = {k: v for k, v in record.items() if not k.startswith("_")}
    out["partner_id"] = [record["partner_id"], "Acme Gears BV"]
    out["user_id"] = [record["user_id"], "Li Na"]
    return out


CRM = {
    # The update of 30 Nov (a new delivery date) never arrived.
    "S00042": BASE
    | {"write_date": "2026-11-30 09:00:00", "commitment_date": "2026-12-20 08:00:00"},
    # Changed there since, in nothing Loopline keeps (Loopline's own write-back, say).
    "S00045": BASE | {"_id": 45, "id": 45, "name": "S00045", "write_date": "2026-11-30 12:00:00"},
    # Confirmed, never arrived at all.
    "S00043": BASE | {"_id": 43, "id": 43, "name": "S00043", "write_date": "2026-11-29 10:00:00"},
    # Cancelled there; the cancel never arrived.
    "S00044": BASE
    | {
        "_id": 44,
        "id": 44,
        "name": "S00044",
        "state": "cancel",
        "write_date": "2026-11-30 11:00:00",
    },
}


def rpc(call, match):
    params = call.body["params"]
    if params["service"] == "object" and params["args"][3:5] == ["sale.order", "search_read"]:
        domain = params["args"][5][0]
        rows = list(CRM.values())
        for name, _op, value in domain:
            if name == "state":
                rows = [r for r in rows if r["state"] in value]
            if name == "name":
                rows = [r for r in rows if r["name"] in value]
        return 200, {"jsonrpc": "2.0", "id": 1, "result": [shaped(r) for r in rows]}
    return odoo_rpc(call, match)


@pytest.fixture
def odoo(monkeypatch):
    monkeypatch.setenv("LOOPLINE_ODOO_WEBHOOK_TOKEN", TOKEN)
    monkeypatch.setenv("LOOPLINE_ODOO_DB", "acme")
    monkeypatch.setenv("LOOPLINE_ODOO_LOGIN", "loopline@acme.example")
    monkeypatch.setenv("LOOPLINE_ODOO_API_KEY", "odoo-api-key")
    with FakeApi().route("POST", "/jsonrpc", rpc) as api:
        monkeypatch.setenv("LOOPLINE_ODOO_URL", api.url)
        yield api


def test_missed_events_are_repaired_once_and_recorded(sessions, odoo):
    held = (
        BASE,
        BASE | {"_id": 44, "id": 44, "name": "S00044"},
        BASE | {"_id": 45, "id": 45, "name": "S00045"},
    )
    for record in held:
        deliver(sessions, preset("odoo"), odoo_in(json.dumps(record).encode()))
    apply_received(sessions, gate=None)
    result = reconcile(sessions, default_registry().get("odoo"))
    assert set(result.repaired) == {"S00042", "S00043", "S00044"}
    assert result.repaired["S00043"] == "missing" and result.failed == {}
    apply_received(sessions, gate=None)
    with sessions() as s:
        assert s.get(Order, "S00042").version == 1796029200000  # 30 Nov 09:00 UTC in ms
        assert s.get(Order, "S00042").requested_date.isoformat() == "2026-12-20"
        assert s.get(Order, "S00045").version == 1795852800000  # unchanged: not a repair
        assert s.get(Order, "S00043").status == "open"
        assert s.get(Order, "S00044").status == "cancelled"
        repairs = s.scalars(select(AuditEntry).where(AuditEntry.action == "order.repaired"))
        assert {a.entity_id for a in repairs} == {"S00042", "S00043", "S00044"}
    assert reconcile(sessions, default_registry().get("odoo")).repaired == {}


def test_a_connector_without_a_read_api_is_refused(tmp_path):
    db = tmp_path / "r.db"
    out = subprocess.run(
        [sys.executable, "-m", "loopline.cli", "reconcile", "--source", "flatcrm"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "LOOPLINE_DATABASE_URL": f"sqlite:///{db}"},
    )
    assert out.returncode == 1 and "names no CRM API" in out.stderr


def test_the_periodic_pull_survives_the_crm_being_down(sessions, odoo, live):
    """Down: logged, noted for /healthz, retried next period, an IT alert after 2 periods in a
    row; back up: the repairs are made and the alert closes."""
    from loopline.ingest.crm.reconcile import Reconciler, alert_key, read_status
    from loopline.models.alerts import active_alert

    live.redis.delete("loopline:reconcile")
    deliver(sessions, preset("odoo"), odoo_in(json.dumps(BASE).encode()))
    apply_received(sessions, gate=None)
    puller = Reconciler(
        sessions,
        [default_registry().get("odoo")],
        every_s=0.2,
        alert_after=2,
        status=live.redis,
    )
    odoo.fail(2, 503)  # the login of the first period, and of the second
    first = puller.run_once()["odoo"]
    assert isinstance(first, str) and "HTTP 503" in first
    state = read_status(live.redis)["odoo"]
    assert state["ok"] is False and state["failures"] == 1 and "503" in state["error"]
    with sessions() as s:
        assert active_alert(s, key=alert_key("odoo")) is None  # one bad period is no alert
    assert isinstance(puller.run_once()["odoo"], str)
    with sessions() as s:
        alert = active_alert(s, key=alert_key("odoo"))
        assert alert is not None and alert.role == "it" and "2 periods" in alert.message
    # Back up: the thread's next period repairs what was missed and closes the alert.
    puller.start()
    try:
        deadline = time.monotonic() + 20
        while read_status(live.redis)["odoo"].get("ok") is not True:
            assert time.monotonic() < deadline, read_status(live.redis)
            time.sleep(0.05)
    finally:
        puller.stop()
    state = read_status(live.redis)["odoo"]
    assert state["failures"] == 0 and state["repaired"] == 3  # S00042, S00043, S00045
    with sessions() as s:
        assert active_alert(s, key=alert_key("odoo")) is None
        assert s.scalars(select(AuditEntry).where(AuditEntry.action == "order.repaired")).all()


def test_reconcile_every_pulls_until_stopped_and_retries_a_down_crm(tmp_path, odoo):
    """`loopline reconcile --source odoo --every 1s`: Odoo down in the first period, the
    repairs made in a later one; Ctrl-C stops it. A bad period is refused naming --every."""
    import os
    import signal

    from loopline.models.db import make_engine, make_sessions, migrate, transaction
    from tests.factories import seed_small_factory

    db = f"sqlite:///{tmp_path / 'every.db'}"
    engine = make_engine(db)
    migrate(engine)
    sessions = make_sessions(engine)
    with transaction(sessions) as s:
        seed_small_factory(s)
    env = {**os.environ, "LOOPLINE_DATABASE_URL": db}
    env.pop("LOOPLINE_REDIS_URL", None)
    bad = subprocess.run(
        [sys.executable, "-m", "loopline.cli", "reconcile", "--source", "odoo", "--every", "soon"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert bad.returncode == 2 and "--every: 'soon'" in bad.stderr
    odoo.fail(1, 503)
    log = (tmp_path / "every.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopline.cli", "reconcile", "--source", "odoo", "--every", "1s"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env | {"COLUMNS": "200"},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with sessions() as s:
                repairs = s.scalars(
                    select(AuditEntry).where(AuditEntry.action == "order.repaired")
                ).all()
            if len(repairs) == 3:
                break
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(20)
        log.close()
    out = (tmp_path / "every.log").read_text()
    assert code == 0, out
    assert "reconcile odoo: the CRM cannot be read (HTTP 503" in out
    assert {a.entity_id for a in repairs} == {"S00042", "S00043", "S00045"}
    engine.dispose()
