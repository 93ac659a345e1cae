"""`loopline worker` with LOOPLINE_RECONCILE_SOURCES as users run it (separate serve and worker
processes, a local server playing Odoo's JSON-RPC): the first period finds Odoo down, which
the log and /healthz show; the next period repairs the orders whose webhooks never came, and
the worker applies them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import redis

from loopline.models.db import make_engine, make_sessions, migrate, transaction
from loopline.settings import new_webhook_secret
from tests.factories import seed_small_factory
from tests.ingest.crm.fake_api import FakeApi
from tests.ingest.crm.test_reconcile import rpc
from tests.stack import free_port, wait_until

LOOPLINE = [sys.executable, "-m", "loopline.cli"]
ROOT = Path(__file__).resolve().parents[1]


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        LOOPLINE + args,
        env=env,
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _health(url: str) -> dict:
    try:
        return httpx.get(f"{url}/api/v1/healthz", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return {}


def test_the_worker_pulls_odoo_each_period_and_survives_it_being_down(tmp_path, redis_server):
    db = f"sqlite:///{tmp_path / 'loopline.db'}"
    engine = make_engine(db)
    migrate(engine)
    with transaction(make_sessions(engine)) as s:
        seed_small_factory(s)
    engine.dispose()
    redis.Redis.from_url(redis_server).flushdb()
    port = free_port()
    with FakeApi().route("POST", "/jsonrpc", rpc) as odoo:
        odoo.fail(1, 503)  # the first period's login
        env = {
            **os.environ,
            "LOOPLINE_DATABASE_URL": db,
            "LOOPLINE_REDIS_URL": redis_server,
            "LOOPLINE_API_TOKEN": "proc-token",
            "LOOPLINE_CRM_SECRET": new_webhook_secret(),
            "LOOPLINE_RECONCILE_SOURCES": "odoo",
            "LOOPLINE_RECONCILE_EVERY_S": "10",
            "LOOPLINE_ODOO_URL": odoo.url,
            "LOOPLINE_ODOO_DB": "acme",
            "LOOPLINE_ODOO_LOGIN": "loopline@acme.example",
            "LOOPLINE_ODOO_API_KEY": "odoo-api-key",
            "LOOPLINE_ODOO_WEBHOOK_TOKEN": "unused",
        }
        procs = [
            _spawn(["serve", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path / "s.log"),
            _spawn(["worker"], env, tmp_path / "worker.log"),
        ]
        url = f"http://127.0.0.1:{port}"
        try:
            down = wait_until(
                lambda: (r := _health(url).get("crm_reads", {}).get("odoo")) and r, timeout=60
            )
            assert down["ok"] is False and down["failures"] == 1 and "503" in down["error"]
            assert _health(url)["status"] == "ok"  # a CRM down is not Loopline down
            log = (tmp_path / "worker.log").read_text()
            assert "reconcile odoo: the CRM cannot be read" in log
            up = wait_until(
                lambda: (r := _health(url)["crm_reads"]["odoo"])["ok"] and r, timeout=40
            )
            assert up["failures"] == 0 and up["repaired"] == 3  # S00042, S00043, S00045
            auth = {"Authorization": "Bearer proc-token"}
            order = wait_until(
                lambda: (
                    (r := httpx.get(f"{url}/api/v1/orders/S00043", headers=auth)).status_code == 200
                    and r.json()
                ),
                timeout=30,
            )
            assert order["id"] == "S00043"
        finally:
            for proc in procs:
                _stop(proc)
