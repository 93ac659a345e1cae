"""The command line as users run it: serve, ingest and worker as separate processes on real
PostgreSQL, Redis and Mosquitto; `loopline plan`; and `loopline demo` with Ctrl-C."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopline.models.live import LiveState
from loopline.seed import factory_data
from loopline.settings import new_webhook_secret
from loopline.simulators.crm import CrmFeedbackServer
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


# --- hostile files for `loopline plan` and `loopline import-factory` (issue 8, item 12) ----

GOOD_PROBLEM = {
    "start": "2026-12-01T00:00:00Z",
    "calendars": {
        "day": {
            "timezone": "Europe/Berlin",
            "shifts": [{"days": ["mon", "tue", "wed"], "start": "06:00", "end": "22:00"}],
            "closures": [{"start": "2026-12-02T06:00:00Z", "end": "2026-12-02T10:00:00Z"}],
        }
    },
    "lines": [
        {"id": "L1", "rates": {"P1": 60.0, "P2": 20}, "calendar": "day"},
        {"id": "L2", "rates": {"P1": 30.0}},
    ],
    "changeovers": {"*": {"P1": {"P2": 0.5}}},
    "materials": {
        "items": {"STEEL": {"on_hand": 10, "lead_time_days": 2}},
        "bom": {"P2": {"STEEL": 1}},
        "purchase_orders": [
            {"id": "PO-1", "material": "STEEL", "qty": 5, "arrives": "2026-12-02T00:00:00Z"}
        ],
    },
    "jobs": [
        {"id": "J1", "product": "P1", "qty": 120, "due": "2026-12-01T06:00:00Z", "weight": 3},
        {"id": "J2", "product": "P2", "qty": 12, "due": "2026-12-01T12:00:00Z", "order": "SO-1"},
    ],
}


def _run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        LOOPLINE + args,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"start": "2026-12-01T00:00:00Z", "lines": [{"id": "L\xff"}], "jobs": []}', "UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "nested"),
    ],
)
@pytest.mark.parametrize("command", ["plan", "import-factory"])
def test_undecodable_files_exit_2_with_a_reason(tmp_path, command, content, says):
    path = tmp_path / "file.json"
    path.write_bytes(content)
    args = ["plan", "--input", str(path)] if command == "plan" else ["import-factory", str(path)]
    out = _run_cli(args, {"LOOPLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"})
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert says in out.stderr


def test_nul_in_names_exits_2_naming_the_field(tmp_path, postgres_url):
    problem = copy.deepcopy(GOOD_PROBLEM)
    problem["jobs"][0]["id"] = "J\x001"
    problem["lines"][1]["id"] = "L\u00002"
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(problem))
    out = _run_cli(["plan", "--input", str(path)])
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "jobs[0].id" in out.stderr and "lines[1].id" in out.stderr

    factory = factory_data()
    factory["sites"][0]["name"] = "Suzhou\x00Gearworks"
    factory["customers"][0]["id"] = "C\x00"
    path = tmp_path / "factory.json"
    path.write_text(json.dumps(factory))
    out = _run_cli(["import-factory", str(path)], {"LOOPLINE_DATABASE_URL": postgres_url})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "sites[0].name" in out.stderr and "customers[0].id" in out.stderr


def test_a_bad_problem_file_lists_all_its_issues(tmp_path):
    problem = copy.deepcopy(GOOD_PROBLEM)
    problem["jobs"] = [
        {"id": f"J{i}", "product": "P1", "qty": "5", "due": "2026-12-01T06:00:00Z"}
        for i in range(30)
    ]
    problem["lines"][1]["id"] = "L.2"
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(problem))
    out = _run_cli(["plan", "--input", str(path)])
    assert out.returncode == 2
    for i in range(30):
        assert f"jobs[{i}].qty" in out.stderr
    assert "lines[1].id" in out.stderr and "more)" not in out.stderr


# JSON as a fuzzer writes it: any value, with strings that carry NUL, control characters,
# lone surrogates, markup and near-valid timestamps and ids.
_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "\x00",
            "L.1",
            "P1",
            "L1",
            "STEEL",
            "day",
            "*",
            "60",
            "[/]",
            "[red]",
            "\ud800",
            "2026-12-01T00:00:00",
            "2026-12-01T00:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "24:00",
            "mon",
            "Europe/Berlin",
            "x" * 300,
        ]
    ),
)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 1e-300, 1e300, 2**31, 1e6]),
    _text,
)
_json = st.recursive(
    _scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_text, children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def _mutated(draw: st.DrawFn, good: dict[str, Any]) -> Any:
    """A good document with a few values replaced, keys renamed or entries dropped."""
    data = copy.deepcopy(good)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "drop", "rename"]))
        if action == "drop":
            del parent[path[-1]]
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(_text)] = parent.pop(path[-1])
        else:
            parent[path[-1]] = draw(_json)
    return data


def _document() -> st.SearchStrategy[bytes]:
    as_bytes = st.builds(lambda v: json.dumps(v).encode(), _json)
    return st.one_of(
        as_bytes,
        st.binary(max_size=64),
        st.builds(lambda v: json.dumps(v).encode(), _mutated(GOOD_PROBLEM)),
        st.builds(lambda v: json.dumps(v).encode(), _mutated(factory_data())),
        # a byte of a good file flipped: broken UTF-8, broken JSON or a changed value
        st.builds(
            lambda raw, at, byte: raw[: at % len(raw)] + bytes([byte]) + raw[at % len(raw) + 1 :],
            st.sampled_from(
                [json.dumps(GOOD_PROBLEM).encode(), json.dumps(factory_data()).encode()]
            ),
            st.integers(min_value=0),
            st.integers(0, 255),
        ),
    )


def _clean_exit(result: Any) -> None:
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(content=_document())
def test_fuzzed_files_never_give_a_traceback(tmp_path, postgres_url, content):
    from typer.testing import CliRunner

    from loopline.cli import app

    path = tmp_path / "fuzz.json"
    path.write_bytes(content)
    runner = CliRunner()
    _clean_exit(runner.invoke(app, ["plan", "--input", str(path), "--rounds", "3"]))
    _clean_exit(
        runner.invoke(
            app, ["import-factory", str(path)], env={"LOOPLINE_DATABASE_URL": postgres_url}
        )
    )
