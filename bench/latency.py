"""End-to-end latency of the loop on real servers (PostgreSQL, Redis, Mosquitto).

1. CRM event -> promised date received back by the CRM: a signed POST of a new order to
   the webhook, until the signed feedback carrying its promise reaches a CRM server.
   Baseline: a bare signed POST round trip to that same CRM server.
2. MQTT message -> screen: a line-state message published to the broker, until the change
   arrives on the live stream the screens follow (``/api/v1/stream``), and, with Chromium,
   until the reason shows on the wall screen's tile in a real browser.
   Baseline: the broker's own publish -> subscribe round trip.

Run: ``.venv/bin/python bench/latency.py [--n 50]``. Prints median and p99 with the ratio
to the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loopline.settings import new_webhook_secret  # noqa: E402
from loopline.simulators.crm import CrmFeedbackServer  # noqa: E402
from tests.factories import order_event  # noqa: E402
from tests.servers import MosquittoServer, PostgresServer, RedisServer  # noqa: E402
from tests.stack import API_TOKEN, post_signed, start_stack  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def row(name: str, values: list[float], baseline: list[float] | None = None) -> str:
    med, p99 = statistics.median(values), pct(values, 0.99)
    text = f"{name:<44} n={len(values):<4} median {med * 1000:8.1f} ms   p99 {p99 * 1000:8.1f} ms"
    if baseline:
        text += f"   x{med / statistics.median(baseline):.1f} of baseline median"
    return text


class Sensor:
    """A paho publisher and a raw subscriber on the same broker."""

    def __init__(self, host: str, port: int) -> None:
        self.got: dict[str, float] = {}
        self.pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
        self.pub.connect(host, port)
        self.pub.loop_start()
        self.sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub")
        self.sub.on_message = lambda c, u, m: self.got.setdefault(
            json.loads(m.payload).get("reason", ""), time.perf_counter()
        )
        self.sub.connect(host, port)
        self.sub.subscribe("loopline/v1/+/+/state", qos=1)
        self.sub.loop_start()
        time.sleep(0.3)

    def state(self, line: str, seq: int, reason: str) -> float:
        body = {"seq": seq, "ts": datetime.now(UTC).isoformat(), "state": "down", "reason": reason}
        sent = time.perf_counter()
        self.pub.publish(f"loopline/v1/s1/{line}/state", json.dumps(body), qos=1)
        return sent

    def close(self) -> None:
        for c in (self.pub, self.sub):
            c.loop_stop()
            c.disconnect()


def crm_latency(stack, crm: CrmFeedbackServer, n: int) -> tuple[list[float], list[float]]:
    """Signed order event -> signed promise received by the CRM; baseline bare POST."""
    samples, baseline = [], []
    requested = (datetime.now(UTC) + timedelta(days=30)).date()
    for i in range(n):
        order_id = f"SO-B{i}"
        body = order_event(order_id, 1, [("P1", 100 + i)], requested)
        start = time.perf_counter()
        resp = stack.send_crm(body, f"bench-{uuid.uuid4().hex}")
        assert resp.status_code == 202, resp.text
        crm.wait_for(lambda d, o=order_id: _promise_for(d, o), timeout=30)
        samples.append(time.perf_counter() - start)
        start = time.perf_counter()
        post_signed(crm.url, json.dumps({"ping": i}), f"base-{i}", stack.secret)
        baseline.append(time.perf_counter() - start)
    return samples, baseline


def _promise_for(delivery, order_id: str) -> bool:
    data = json.loads(delivery.body).get("data", {})
    return data.get("order_id") == order_id and bool(data.get("promised_date"))


def stream_latency(stack, sensor: Sensor, n: int) -> tuple[list[float], list[float]]:
    """MQTT state -> change on /api/v1/stream; baseline MQTT publish -> raw subscriber."""
    ws_url = stack.url.replace("http", "ws") + "/api/v1/stream?entity=line"
    arrivals: dict[str, float] = {}
    ready = threading.Event()
    done = threading.Event()

    async def listen() -> None:
        bearer = {"Authorization": f"Bearer {API_TOKEN}"}
        async with websockets.connect(ws_url, additional_headers=bearer) as ws:
            ready.set()
            while not done.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                change = json.loads(raw)
                reason = change["new"].get("reason")
                if reason:
                    arrivals.setdefault(reason, time.perf_counter())

    thread = threading.Thread(target=lambda: asyncio.run(listen()), daemon=True)
    thread.start()
    ready.wait(10)
    time.sleep(0.3)
    samples, baseline = [], []
    seq = 1000
    for i in range(n):
        reason = f"bench-{i}-{uuid.uuid4().hex[:6]}"
        seq += 1
        sent = sensor.state("L1", seq, reason)
        deadline = time.monotonic() + 10
        while reason not in arrivals and time.monotonic() < deadline:
            time.sleep(0.001)
        samples.append(arrivals[reason] - sent)
        baseline.append(sensor.got[reason] - sent)
        time.sleep(0.02)
    done.set()
    thread.join(5)
    return samples, baseline


def browser_latency(stack, sensor: Sensor, n: int) -> list[float]:
    """MQTT state -> the reason visible on the wall tile in headless Chromium."""
    from playwright.sync_api import sync_playwright

    samples = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        page = browser.new_page()
        page.goto(f"{stack.url}/wall?token={API_TOKEN}", wait_until="load")
        page.wait_for_selector("text=L1", timeout=20000)
        time.sleep(2)  # let the page's live stream connect
        seq = 5000
        for i in range(n):
            reason = f"browser-{i}-{uuid.uuid4().hex[:6]}"
            seq += 1
            sent = sensor.state("L1", seq, reason)
            page.wait_for_function(
                "r => document.body.innerText.includes(r)", arg=reason, timeout=10000, polling="raf"
            )
            samples.append(time.perf_counter() - sent)
            time.sleep(0.05)
        browser.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--browser-n", type=int, default=20)
    args = parser.parse_args()
    secret = new_webhook_secret()
    with RedisServer() as redis_srv, MosquittoServer() as broker, PostgresServer() as pg:
        crm = CrmFeedbackServer(secret)
        crm.start()
        stack = start_stack(
            database_url=pg.url_for(pg.create_database()),
            redis_url=redis_srv.url,
            mqtt_url=broker.url,
            crm_url=crm.url,
            secret=secret,
            replan_debounce_ms=300,
        )
        sensor = Sensor("127.0.0.1", broker.port)
        try:
            print(
                f"Loopline latency on real servers, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
                f"replan debounce 300 ms"
            )
            crm_s, crm_b = crm_latency(stack, crm, args.n)
            print(row("CRM event -> promise received by the CRM", crm_s, crm_b))
            print(row("  baseline: signed POST to the CRM", crm_b))
            st_s, st_b = stream_latency(stack, sensor, args.n * 4)
            print(row("MQTT state -> live stream (/api/v1/stream)", st_s, st_b))
            print(row("  baseline: MQTT publish -> subscriber", st_b))
            if shutil.which("chromium") and args.browser_n:
                br = browser_latency(stack, sensor, args.browser_n)
                print(row("MQTT state -> wall tile in Chromium", br, st_b))
        finally:
            sensor.close()
            stack.stop()
            crm.stop()


if __name__ == "__main__":
    main()
