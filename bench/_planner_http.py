"""Quotes and incremental replans through the HTTP API (part of bench/planner_scale.py).

A factory like ``planner_scale.factory`` (lines on two calendars, changeovers between product
families, a BOM) is written as a factory file and imported with ``loopline import-factory``;
``loopline serve`` and ``loopline worker`` run as processes on real PostgreSQL and Redis;
the orders arrive through the signed CRM webhook, one work order each. Then:

- quote: ``POST /api/v1/quotes`` round trips;
- incremental replan: one order's quantity changed through ``/api/v1/crm/events`` (a new
  version), timed until the plan revision it triggers is announced on ``/api/v1/stream``;
  the revision's ``solve_ms`` is the planner's share;
- baseline: ``GET /api/v1/healthz`` round trips on the same server in the same run.

Not a benchmark itself (``scripts/bench`` skips ``bench/_*.py``).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import websockets

from bench._procs import (
    API_TOKEN,
    EVENTS_PATH,
    Procs,
    import_factory,
    loopline_env,
    new_webhook_id,
    seed_orders,
    signed_headers,
    start_serve,
    terminated_on_sigterm,
    wait_for,
)
from loopline.settings import new_webhook_secret
from tests.servers import PostgresServer, RedisServer

DAYS = ["mon", "tue", "wed", "thu", "fri"]


def factory_file(path: Path, n_lines: int, n_products: int, seed: int) -> list[str]:
    """A factory file like ``planner_scale.factory``'s; returns the SKUs some line makes."""
    rnd = random.Random(seed)
    products = [f"P{i:02d}" for i in range(n_products)]
    two_shifts = {
        "timezone": "Europe/Berlin",
        "shifts": [{"days": DAYS, "start": "06:00", "end": "22:00"}],
        "breaks": [{"days": DAYS, "start": "12:00", "end": "12:30"}],
    }
    lines = []
    for i in range(n_lines):
        made = sorted(rnd.sample(products, k=max(1, n_products // 5)))
        family = {p: int(p[1:]) % 4 for p in made}
        line: dict[str, Any] = {
            "id": f"L{i:02d}",
            "site": "plant-1",
            "name": f"Line {i:02d}",
            "rates": {p: round(rnd.uniform(40, 120), 2) for p in made},
            "changeovers": {
                a: {b: 0.25 if family[a] == family[b] else 1.0 for b in made if b != a}
                for a in made
            },
        }
        if i % 3 == 0:
            line["calendar"] = two_shifts
        lines.append(line)
    makeable = sorted({p for ln in lines for p in ln["rates"]})
    factory = {
        "sites": [{"id": "plant-1", "name": "Bench plant"}],
        "products": [{"sku": p, "name": f"Product {p}"} for p in products],
        "lines": lines,
        "customers": [{"id": f"C-{k}", "name": f"Customer {k}", "importance": 1} for k in range(8)],
        "materials": {
            "items": {
                "STEEL": {"name": "Steel", "unit": "kg", "on_hand": 1e7, "lead_time_days": 7.0},
            },
            "bom": {p: {"STEEL": 1.0} for p in makeable},
            "purchase_orders": [],
        },
    }
    path.write_text(json.dumps(factory))
    return makeable


class Orders:
    """The CRM's open orders: id -> [version, sku, qty, requested date, customer]."""

    def __init__(self, n: int, skus: list[str], n_lines: int, rnd: random.Random) -> None:
        today = datetime.now(UTC).date()
        days = max(2, int(n * 3.0 / n_lines * 1.6 / 24))  # as planner_scale.factory's due dates
        self.rnd = rnd
        self.orders = {
            f"SO-{i:05d}": [
                1,
                rnd.choice(skus),
                rnd.randint(100, 400),
                (today + timedelta(days=rnd.randint(1, days))).isoformat(),
                f"C-{i % 8}",
            ]
            for i in range(n)
        }

    def event(self, order_id: str) -> str:
        version, sku, qty, requested, customer = self.orders[order_id]
        body = {
            "type": "order.upserted",
            "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "order": {
                "id": order_id,
                "version": version,
                "customer": {"id": customer, "name": f"Customer {customer[2:]}"},
                "lines": [{"sku": sku, "qty": qty}],
                "requested_date": requested,
                "priority": "normal",
                "sales_rep": "bench.planner",
            },
        }
        return json.dumps(body, separators=(",", ":"))

    def change(self) -> tuple[str, str]:
        """A new version of a random order with its quantity up by half."""
        order_id = self.rnd.choice(sorted(self.orders))
        entry = self.orders[order_id]
        entry[0] += 1
        entry[2] = int(entry[2] * 1.5)
        return order_id, self.event(order_id)


def _post_event(client: httpx.Client, url: str, raw: str, secret: str) -> int:
    headers = signed_headers(secret, new_webhook_id(), raw)
    return client.post(url, content=raw, headers=headers, timeout=30).status_code


class PlanWatch:
    """Plan revisions announced on ``/api/v1/stream?entity=plan``, with arrival times."""

    def __init__(self, url: str) -> None:
        self.ws_url = url.replace("http", "ws", 1) + "/api/v1/stream?entity=plan"
        self.seen: dict[int, float] = {}
        self._ready = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._listen()), daemon=True)

    async def _listen(self) -> None:
        bearer = {"Authorization": f"Bearer {API_TOKEN}"}
        async with websockets.connect(self.ws_url, additional_headers=bearer) as ws:
            self._ready.set()
            while not self._done.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                change = json.loads(raw)
                revision = (change.get("new") or {}).get("revision")
                if revision is not None:
                    self.seen.setdefault(int(revision), time.perf_counter())

    def __enter__(self) -> PlanWatch:
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("the plan stream did not open")
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(5)

    def after(self, revision: int, timeout_s: float) -> tuple[int, float] | None:
        """The first revision above ``revision`` and when it arrived, or None."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            newer = [(r, t) for r, t in self.seen.items() if r > revision]
            if newer:
                return min(newer)
            time.sleep(0.001)
        return None


def _ms(values: list[float]) -> str:
    return f"median {statistics.median(values):7.1f} ms, max {max(values):7.1f} ms"


def run_http(
    n_jobs: int, n_lines: int, n_products: int, repeat: int, targets: dict[str, float]
) -> dict[str, float]:
    """Start the processes, seed ``n_jobs`` orders, time quotes and incremental replans."""
    secret = new_webhook_secret()
    workdir = Path(tempfile.mkdtemp(prefix="loopline-planscale-"))
    path = workdir / "factory.json"
    skus = factory_file(path, n_lines, n_products, seed=7)
    orders = Orders(n_jobs, skus, n_lines, random.Random(n_jobs))
    print(
        f"\nThrough the HTTP API: {n_jobs} orders on {n_lines} lines, serve and worker as "
        f"processes on PostgreSQL and Redis",
        flush=True,
    )
    with terminated_on_sigterm(), PostgresServer() as pg, RedisServer() as redis_srv:
        env = loopline_env(
            database_url=pg.url_for(pg.create_database(f"planscale_{uuid.uuid4().hex[:8]}")),
            redis_url=redis_srv.url,
            mqtt_url=None,
            crm_url=None,
            secret=secret,
            data_dir=workdir,
            # One change, one replan, at once; a change that slips others' promises is let
            # in (auto-approved) rather than parked, so every change ends in a replan.
            replan_debounce_ms="0",
            auto_approve_max_slip_h="100000",
        )
        import_factory(env, path)
        procs = Procs(env, workdir)
        try:
            api = start_serve(procs, secret)
            hook = f"{api.url}{EVENTS_PATH}"
            began = time.monotonic()
            if failed := seed_orders(hook, list(orders.orders), orders.event, secret):
                raise RuntimeError(f"{failed} orders could not be seeded")
            print(f"  seeded {n_jobs} orders in {time.monotonic() - began:.0f} s", flush=True)
            procs.start("worker", ["worker"])

            def settled() -> bool:
                plan = api.get_json("/plan") or {}
                return len(plan.get("assignments", [])) >= n_jobs

            ok, took = wait_for(settled, 900, 2.0)
            if not ok:
                raise RuntimeError(f"no plan of {n_jobs} jobs:\n{procs.log_tail('worker')}")
            print(f"  first full plan after {took:.0f} s", flush=True)
            client = api.client
            health = []
            for _ in range(max(repeat, 10)):
                t = time.perf_counter()
                client.get(f"{api.url}/api/v1/healthz").raise_for_status()
                health.append((time.perf_counter() - t) * 1000)
            quotes = []
            rnd = random.Random(1)
            for k in range(repeat + 1):
                body = {
                    "sku": rnd.choice(skus),
                    "qty": 300,
                    "requested_date": (datetime.now(UTC).date() + timedelta(days=5)).isoformat(),
                    "priority": "normal",
                }
                t = time.perf_counter()
                resp = client.post(f"{api.url}/api/v1/quotes", json=body, timeout=30)
                took_ms = (time.perf_counter() - t) * 1000
                if resp.status_code != 200:
                    raise RuntimeError(f"quote: {resp.status_code} {resp.text[:300]}")
                if k:  # the first one warms the server's caches
                    quotes.append(took_ms)
            e2e, solve_ms, wts = [], [], []
            with PlanWatch(api.url) as watch:
                time.sleep(0.5)
                for _ in range(repeat):
                    current = int((api.get_json("/plan") or {}).get("revision") or 0)
                    order_id, raw = orders.change()
                    t = time.perf_counter()
                    if _post_event(client, hook, raw, secret) != 202:
                        raise RuntimeError(f"change of {order_id} refused")
                    got = watch.after(current, 120)
                    if got is None:
                        raise RuntimeError(
                            f"no replan after {order_id}:\n{procs.log_tail('worker')}"
                        )
                    e2e.append((got[1] - t) * 1000)
                    plan = api.get_json("/plan") or {}
                    solve_ms.append(float(plan.get("solve_ms") or 0.0))
                    wts.append(float(plan.get("total_weighted_tardiness_h") or 0.0))
                    time.sleep(0.3)
        finally:
            procs.stop_all()
    base = statistics.median(health)
    q, s, e = statistics.median(quotes), statistics.median(solve_ms), statistics.median(e2e)
    print(f"  baseline GET /healthz:        {_ms(health)}")
    print(
        f"  quote POST /quotes:           {_ms(quotes)}  ({q / base:.1f} x baseline; target <= "
        f"{targets['quote_ms']:g} ms)"
    )
    print(
        f"  incremental replan, planner:  {_ms(solve_ms)}  (the revision's solve_ms; target <= "
        f"{targets['incremental_2k_ms']:g} ms)"
    )
    print(
        f"  one change, webhook -> plan published on the stream: {_ms(e2e)}  "
        f"({e / base:.0f} x baseline; includes the approval gate's previews and SQL)"
    )
    print(f"  weighted tardiness of those revisions: {', '.join(f'{w:.0f}' for w in wts)} h")
    return {"quote_ms": q, "incremental_ms": s, "e2e_ms": e}
