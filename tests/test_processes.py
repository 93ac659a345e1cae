"""The command line as users run it: serve, ingest and worker as separate processes on real
PostgreSQL, Redis and Mosquitto; `loopline plan`; and `loopline demo` with Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import redis

from loopline.seed import factory_data
from loopline.settings import new_webhook_secret
from loopline.simulators.crm import CrmFeedbackServer
from models.live import LiveState
from tests.factories import order_event
from tests.stack import free_port, post_signed, wait_until

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


def _stop(proc: subprocess.Popen, timeout: float = 15) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode


def test_serve_ingest_worker_as_separate_processes(
    tmp_path, postgres_url, redis_server, mqtt_broker
):
    secret = new_webhook_secret()
    crm = CrmFeedbackServer(secret)
    crm.start()
    port = free_port()
    env = {
        **os.environ,
        "LOOPLINE_DATABASE_URL": postgres_url,
        "LOOPLINE_REDIS_URL": redis_server,
        "LOOPLINE_MQTT_URL": mqtt_broker.url,
        "LOOPLINE_CRM_SECRET": secret,
        "LOOPLINE_CRM_URL": crm.url,
        "LOOPLINE_API_TOKEN": "proc-token",
        "LOOPLINE_REPLAN_DEBOUNCE_MS": "100",
        "LOOPLINE_MQTT_CLIENT_ID": f"proc-test-{os.getpid()}-{port}",
    }
    redis.Redis.from_url(redis_server).flushdb()  # the session's Redis, shared with other tests
    factory = tmp_path / "factory.json"
    factory.write_text(json.dumps(factory_data()))
    imported = subprocess.run(
        LOOPLINE + ["import-factory", str(factory)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    procs = [
        _spawn(["serve", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path / "serve.log"),
        _spawn(["ingest"], env, tmp_path / "ingest.log"),
        _spawn(["worker"], env, tmp_path / "worker.log"),
    ]
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer proc-token"}
    try:
        wait_until(lambda: _ok(f"{url}/api/v1/healthz"), timeout=60, step=0.2)
        body = order_event(
            "SO-9001", 1, [("GEAR-A", 600)], (datetime.now(UTC) + timedelta(days=4)).date()
        )
        body["order"]["customer"] = {"id": "C-1", "name": "Acme Gears"}
        resp = post_signed(f"{url}/api/v1/crm/events", json.dumps(body), "p-1", secret)
        assert resp.status_code == 202, resp.text
        order = wait_until(
            lambda: (
                (o := httpx.get(f"{url}/api/v1/orders/SO-9001", headers=auth).json()).get("eta")
                and o["promised_date"]
                and o
            ),
            timeout=20,
        )
        assert order["promised_date"]
        crm.wait_for(lambda d: d.json()["data"].get("order_id") == "SO-9001", timeout=20)
        line = order["work_orders"][0]["line"]
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.connect(mqtt_broker.host, mqtt_broker.port)
        client.loop_start()
        now = datetime.now(UTC).isoformat()
        client.publish(
            f"loopline/v1/plant-1/{line}/state",
            json.dumps({"seq": 1, "ts": now, "state": "down", "reason": "jam"}),
            qos=1,
        ).wait_for_publish(5)
        client.publish(
            f"loopline/v1/plant-1/{line}/progress",
            json.dumps({"seq": 2, "ts": now, "work_order": "WO-9001-1", "good": 42, "scrap": 0}),
            qos=1,
        ).wait_for_publish(5)
        client.loop_stop()
        client.disconnect()
        wait_until(
            lambda: (
                httpx.get(f"{url}/api/v1/orders/SO-9001", headers=auth).json()["work_orders"][0][
                    "good"
                ]
                == 42
            ),
            timeout=10,
        )
        lines = {ln["id"]: ln for ln in httpx.get(f"{url}/api/v1/lines", headers=auth).json()}
        assert (lines[line]["state"], lines[line]["reason"]) == ("down", "jam")

        # ingest dies hard: the broker sends its Will and the worker raises an alert.
        assert not _alert_kinds(url, auth) & {"ingest_offline"}
        os.killpg(procs[1].pid, signal.SIGKILL)
        wait_until(lambda: "ingest_offline" in _alert_kinds(url, auth), timeout=20, step=0.2)
    finally:
        codes = [_stop(p) for p in procs]
        crm.stop()
    logs = {p.name: p.read_text() for p in tmp_path.glob("*.log")}
    assert codes == [0, -signal.SIGKILL, 0], logs

    # Redis lost: `loopline rebuild-state` restores the live state from SQL.
    client = redis.Redis.from_url(redis_server, decode_responses=True)
    client.flushdb()
    rebuilt = subprocess.run(
        LOOPLINE + ["rebuild-state"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    live = LiveState(client)
    assert live.get("order", "SO-9001")["promised_date"] == order["promised_date"]
    assert live.get("work_order", "WO-9001-1")["good"] == 42  # the worker's checkpoint
    assert len(live.ids("line")) == 5


def _alert_kinds(url: str, auth: dict[str, str]) -> set[str]:
    return {a["kind"] for a in httpx.get(f"{url}/api/v1/alerts", headers=auth).json()}


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_plan_command_prints_a_schedule(tmp_path):
    problem = {
        "start": "2026-12-01T00:00:00Z",
        "lines": [{"id": "L1", "rates": {"P1": 60.0}}],
        "jobs": [
            {"id": "J1", "product": "P1", "qty": 120, "due": "2026-12-01T06:00:00Z", "weight": 3}
        ],
    }
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(problem))
    out = subprocess.run(
        LOOPLINE + ["plan", "--input", str(path), "--time-limit", "1"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    result = json.loads(out.stdout)
    assert result["assignments"] == [
        {
            "job": "J1",
            "line": "L1",
            "start": "2026-12-01T00:00:00Z",
            "end": "2026-12-01T02:00:00Z",
            "changeover_h": 0.0,
        }
    ]
    assert result["total_weighted_tardiness_h"] == 0.0
    problem["jobs"][0]["qty"] = -1
    path.write_text(json.dumps(problem))
    bad = subprocess.run(
        LOOPLINE + ["plan", "--input", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert bad.returncode == 2 and "jobs[0].qty" in bad.stderr


def test_plan_command_explains_a_material_shortage():
    scenarios = ROOT / "tests" / "models" / "planning" / "scenarios"
    out = subprocess.run(
        LOOPLINE
        + ["plan", "--input", str(scenarios / "material_shortage.problem.json"), "--rounds", "200"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=120,
    )
    result = json.loads(out.stdout)
    assert result == json.loads((scenarios / "material_shortage.expected.json").read_text())
    assert result["total_weighted_tardiness_h"] > 0
    assert {lj["cause"]["kind"] for lj in result["late_jobs"]} == {"material"}
    assert result["purchase_requests"][0]["material"] == "STEEL"


@pytest.mark.timeout(120)
def test_demo_runs_on_embedded_defaults_and_stops_on_ctrl_c(tmp_path):
    port, mqtt_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_")}
    env["LOOPLINE_DATA_DIR"] = str(tmp_path)
    log = tmp_path / "demo.log"
    proc = _spawn(
        ["demo", "--port", str(port), "--mqtt-port", str(mqtt_port), "--speed", "120"], env, log
    )
    try:
        wait_until(
            lambda: "Display token" in log.read_text() or proc.poll() is not None,
            timeout=90,
            step=0.2,
        )
        text = log.read_text()
        assert proc.poll() is None, text
        token = next(
            ln.split()[-1]
            for ln in text.splitlines()
            if "API token" in ln and ln.strip().startswith("API token")
        )
        assert f"http://127.0.0.1:{port}/wall?token=" in text
        auth = {"Authorization": f"Bearer {token}"}
        orders = httpx.get(f"http://127.0.0.1:{port}/api/v1/orders", headers=auth).json()
        assert len(orders) >= 30
        lines = httpx.get(f"http://127.0.0.1:{port}/api/v1/lines", headers=auth).json()
        assert len(lines) >= 4
        # The simulated lines report over MQTT within seconds.
        wait_until(
            lambda: any(
                ln["state"] == "running"
                for ln in httpx.get(f"http://127.0.0.1:{port}/api/v1/lines", headers=auth).json()
            ),
            timeout=30,
        )
    finally:
        code = _stop(proc, timeout=30)
    assert code == 0, log.read_text()
    assert "stopped" in log.read_text()
