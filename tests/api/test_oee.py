"""OEE and downtime over REST, fed by real MQTT messages through the ingest.

Line L1 (ideal rate 100 units/h of P1: 36 s a unit; no calendar, so the default shift
06:00-14:00 UTC). The stack's clock starts at 10:00 on a Tuesday; the sensor sends:

    06:00 running
    07:00 down, reason_code BD-MECH    -> 07:45 running   breakdown 2,700 s
    08:00 progress good 0, scrap 4, reason_code SR-WARMUP (startup rejects)
    09:00 down "jam", no code          -> 09:30 running   1,800 s unexplained
    09:40 progress good 240, scrap 4
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import paho.mqtt.client as mqtt
import pytest

from tests.factories import order_event
from tests.stack import DISPLAY_TOKEN, start_stack, wait_until

ORIGIN = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
SHIFT_START = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def stack(postgres_cluster, redis_server, mqtt_broker):
    name = postgres_cluster.create_database()
    s = start_stack(
        database_url=postgres_cluster.url_for(name),
        redis_url=redis_server,
        mqtt_url=mqtt_broker.url,
        crm_url=None,
        origin=ORIGIN,
    )
    yield s
    s.stop()


def _send(broker, messages: list[tuple[str, dict]]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-oee-sensor")
    client.connect(broker.host, broker.port)
    client.loop_start()
    for kind, body in messages:
        client.publish(f"loopline/v1/s1/L1/{kind}", json.dumps(body), qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


@pytest.fixture(scope="module")
def shift(stack, mqtt_broker):
    resp = stack.send_crm(order_event("SO-4001", 1, [("P1", 1000)]), "oee-1")
    assert resp.status_code == 202, resp.text
    wait_until(lambda: stack.runtime.live.get("work_order", "WO-4001-1"), timeout=20)
    wo = "WO-4001-1"
    day = "2026-12-01T"
    messages = [
        ("state", {"ts": day + "06:00:00Z", "state": "running"}),
        ("state", {"ts": day + "07:00:00Z", "state": "down", "reason_code": "BD-MECH"}),
        ("state", {"ts": day + "07:45:00Z", "state": "running"}),
        ("progress", {"ts": day + "08:00:00Z", "work_order": wo, "good": 0, "scrap": 4,
                      "reason_code": "SR-WARMUP"}),
        ("state", {"ts": day + "09:00:00Z", "state": "down", "reason": "jam"}),
        ("state", {"ts": day + "09:30:00Z", "state": "running"}),
        ("progress", {"ts": day + "09:40:00Z", "work_order": wo, "good": 240, "scrap": 4}),
    ]  # fmt: skip
    _send(mqtt_broker, [(k, {"seq": n + 1, **b}) for n, (k, b) in enumerate(messages)])
    return wait_until(
        lambda: (o := stack.get("/api/v1/lines/L1/oee").json()).get("good") == 240 and o,
        timeout=20,
    )


def test_line_oee_is_worked_out_from_the_messages(shift):
    assert shift["line"] == "L1" and shift["shift"] == "early" and not shift["final"]
    assert shift["shift_start"] == "2026-12-01T06:00:00Z"
    planned = shift["planned_s"]  # 06:00 up to the stack's now (10:00 and a few seconds)
    assert 4 * 3600 <= planned < 4 * 3600 + 120
    # run = planned - 2,700 breakdown - 1,800 unexplained
    assert shift["run_s"] == pytest.approx(planned - 2_700 - 1_800, abs=0.01)
    assert shift["losses"]["breakdown_s"] == 2_700
    assert shift["losses"]["unexplained_s"] == 1_800
    # ideal = (240 good + 4 scrap) x 36 s
    assert shift["ideal_s"] == pytest.approx(244 * 36)
    assert (shift["good"], shift["scrap"]) == (240, 4)
    assert shift["losses"]["startup_reject"] == 4
    assert shift["availability"] == pytest.approx((planned - 4_500) / planned, abs=1e-4)
    assert shift["performance"] == pytest.approx(244 * 36 / (planned - 4_500), abs=1e-4)
    assert shift["quality"] == pytest.approx(240 / 244, abs=1e-4)
    # OEE = good x ideal cycle / planned time
    assert shift["oee"] == pytest.approx(240 * 36 / planned, abs=2e-4)


def test_the_worker_stores_the_shift_and_puts_it_on_the_live_line(stack, shift):
    live = wait_until(
        lambda: (ln := stack.runtime.live.get("line", "L1")) and (ln.get("oee") or {}).get("oee")
        and ln["oee"],
        timeout=15,
    )  # fmt: skip
    assert live["shift"] == "early" and live["oee"] == pytest.approx(shift["oee"], abs=0.01)
    stored = wait_until(lambda: stack.get("/api/v1/lines/L1/oee/shifts").json(), timeout=15)
    assert stored[0]["shift_start"] == "2026-12-01T06:00:00Z" and stored[0]["good"] == 240


def test_an_operator_explains_a_stop_and_oee_follows(stack, shift):
    [stop] = stack.get("/api/v1/lines/L1/stops?unexplained=true").json()
    assert stop["started_at"] == "2026-12-01T09:00:00Z" and stop["sensor_reason"] == "jam"
    assert stop["duration_s"] == 1_800 and stop["loss"] == "unexplained"
    path = f"/api/v1/lines/L1/stops/{stop['id']}/reason"
    display = {"Authorization": f"Bearer {DISPLAY_TOKEN}"}
    assert httpx.post(stack.url + path, json={"code": "SS-JAM"}, headers=display).status_code == 403
    bad = stack.post(path, json={"code": "COFFEE"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["field"] == "code"
    assert "COFFEE" in bad.json()["detail"][0]["message"]
    assert (
        stack.post("/api/v1/lines/L1/stops/999999/reason", json={"code": "SS"}).status_code == 404
    )
    done = stack.post(path, json={"code": "SS-JAM"})
    assert done.status_code == 200, done.text
    assert done.json()["reason_code"] == "SS-JAM" and done.json()["loss"] == "small_stop"
    assert done.json()["assigned_by"]
    assert stack.get("/api/v1/lines/L1/stops?unexplained=true").json() == []
    after = stack.get("/api/v1/lines/L1/oee").json()
    # The jam is a small stop now: it stays in run time (performance, not availability).
    assert after["losses"]["unexplained_s"] == 0 and after["losses"]["small_stop_s"] == 1_800
    assert after["run_s"] == pytest.approx(after["planned_s"] - 2_700, abs=0.01)

    pareto = stack.get("/api/v1/lines/L1/downtime/pareto").json()
    assert pareto["week"] == "2026-W49" and pareto["start"] == "2026-11-30T00:00:00Z"
    # BD-MECH 2,700 s and SS-JAM 1,800 s of 4,500 s: 0.6 and 0.4
    assert [(r["code"], r["seconds"], r["share"], r["cumulative"]) for r in pareto["reasons"]] == [
        ("BD-MECH", 2_700, 0.6, 0.6),
        ("SS-JAM", 1_800, 0.4, 1.0),
    ]
    assert pareto["total_s"] == 4_500
    assert stack.get("/api/v1/lines/L1/downtime/pareto?week=2026-W60").status_code == 422
    assert stack.get("/api/v1/lines/L1/downtime/pareto?week=2026-W48").json()["reasons"] == []


def test_reasons_unknown_lines_and_bad_times(stack):
    tree = stack.get("/api/v1/downtime/reasons").json()
    assert tree["small_stop_max_s"] == 300
    assert {r["loss"] for r in tree["reasons"]} >= {"breakdown", "setup", "small_stop"}
    assert stack.get("/api/v1/lines/NOPE/oee").status_code == 404
    naive = stack.get("/api/v1/lines/L1/oee", params={"at": "2026-12-01T08:00:00"})
    assert naive.status_code == 422 and naive.json()["detail"][0]["field"] == "at"
    past = stack.get("/api/v1/lines/L1/oee", params={"at": "2026-11-30T23:00:00Z"}).json()
    assert past["shift"] == "night" and past["good"] == 0
