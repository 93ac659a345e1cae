"""Latency of the signed CRM webhook with 2,000 open orders, beside a bare signed POST.

On real PostgreSQL and Redis, with ``loopline serve`` and ``loopline worker`` as separate
processes (the factory from ``loopline import-factory deploy/factory.example.json``):

1. seed ``--orders`` open orders (default 2,000) through the signed webhook, then start the
   worker and wait until every one of them has a promised date;
2. send ``--n`` signed ``order.upserted`` changes (a new version of a random open order,
   its quantity changed) to ``POST /api/v1/crm/events`` at ``--rate`` per second, and
   time each answer;
3. interleaved with them, from the same HTTP client, send the same kind of signed body to
   a trivial local HTTP server (uvicorn, like ``serve``) that verifies the signature and
   answers 202: the baseline, measured in the same run.

Prints p50/p99/max of both and their ratio, and the issue's target (webhook p99 < 50 ms
with 2,000 open orders). Run: ``.venv/bin/python bench/webhook.py [--quick]``. Exits 1 when
the target is missed, a request failed, or a changed order ends up neither holding the
last version sent nor waiting for approval with it.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._procs import (  # noqa: E402
    EVENTS_PATH,
    Api,
    Procs,
    RecordingCrm,
    import_factory,
    loopline_env,
    new_webhook_id,
    pct,
    seed_orders,
    signed_headers,
    start_baseline,
    start_serve,
    terminated_on_sigterm,
    wait_for,
)
from loopline.settings import new_webhook_secret  # noqa: E402
from tests.servers import PostgresServer, RedisServer  # noqa: E402

TARGET_P99_S = 0.050
SKUS = ["GEAR-A", "GEAR-B", "SHAFT-S", "SHAFT-L", "HOUSING-X", "PUMP-P7"]
CUSTOMERS = [
    ("C-1", "Acme Gears"), ("C-2", "Nordic Drives"), ("C-3", "Huatai Machinery"),
    ("C-4", "Rhein Automotive"), ("C-5", "Pacific Pumps"), ("C-6", "Osaka Robotics"),
]  # fmt: skip
WARMUP = 1
REQUEST_TIMEOUT_S = 30.0


def order_event(order_id: str, version: int, sku: str, qty: int, requested: str, n: int) -> str:
    """A canonical ``order.upserted`` body (DESIGN.md), as the CRM would send it."""
    cid, cname = CUSTOMERS[n % len(CUSTOMERS)]
    body = {
        "type": "order.upserted",
        "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "order": {
            "id": order_id,
            "version": version,
            "customer": {"id": cid, "name": cname},
            "lines": [{"sku": sku, "qty": qty}],
            "requested_date": requested,
            "priority": "normal",
            "sales_rep": "bench.webhook",
        },
    }
    return json.dumps(body, separators=(",", ":"))


class Book:
    """The CRM's open orders: id -> (version, sku, qty, requested date)."""

    def __init__(self, n: int, rng: random.Random) -> None:
        today = datetime.now(UTC).date()
        self.rng = rng
        self.orders: dict[str, list[Any]] = {}
        self.changed: set[str] = set()
        for i in range(n):
            requested = (today + timedelta(days=14 + i * 120 // max(n, 1))).isoformat()
            qty = rng.randrange(20, 120, 10)
            self.orders[f"SO-W{i:05d}"] = [1, SKUS[i % len(SKUS)], qty, requested]

    def event(self, order_id: str) -> str:
        version, sku, qty, requested = self.orders[order_id]
        return order_event(order_id, version, sku, qty, requested, int(order_id[-5:]))

    def change(self) -> str:
        """A new version of a random order: its quantity up or down by 10."""
        order_id = self.rng.choice(list(self.orders))
        self.changed.add(order_id)
        entry = self.orders[order_id]
        entry[0] += 1
        entry[2] = max(10, entry[2] + self.rng.choice((-10, 10)))
        return self.event(order_id)


def post(client: httpx.Client, url: str, raw: str, secret: str) -> tuple[float, httpx.Response]:
    headers = signed_headers(secret, new_webhook_id(), raw)
    began = time.perf_counter()
    resp = client.post(url, content=raw, headers=headers, timeout=REQUEST_TIMEOUT_S)
    return time.perf_counter() - began, resp


def settle(api: Api, book: Book, timeout_s: float) -> tuple[int, int, int]:
    """After the samples, every changed order must hold the last version sent, or that
    version must wait for approval: ``(applied, parked, neither)`` once all settled or at
    ``timeout_s`` (the webhook may apply asynchronously, so this polls)."""
    counts = (0, 0, len(book.changed))

    def check() -> bool:
        nonlocal counts
        stored = {o["id"]: o.get("version") for o in api.orders()}
        waiting = {
            (c.get("order_id"), c.get("version"))
            for c in api.get_json("/changes", status="pending", limit=1000) or []
        }
        applied = parked = 0
        for order_id in book.changed:
            version = book.orders[order_id][0]
            if stored.get(order_id) == version:
                applied += 1
            elif (order_id, version) in waiting:
                parked += 1
        counts = (applied, parked, len(book.changed) - applied - parked)
        return counts[2] == 0

    wait_for(check, timeout_s, 2.0)
    return counts


def planned(api: Api) -> int:
    """How many jobs the current plan revision places (``GET /api/v1/plan``)."""
    plan = api.get_json("/plan") or {}
    return len(plan.get("assignments", []))


def row(name: str, values: list[float], baseline: list[float] | None = None) -> str:
    text = (
        f"{name:<40} n={len(values):<4} p50 {statistics.median(values) * 1000:8.1f} ms"
        f"   p99 {pct(values, 0.99) * 1000:8.1f} ms   max {max(values) * 1000:8.1f} ms"
    )
    if baseline:
        text += (
            f"   x{statistics.median(values) / statistics.median(baseline):.1f} p50"
            f", x{pct(values, 0.99) / pct(baseline, 0.99):.1f} p99 of baseline"
        )
    return text


def main() -> int:
    try:
        return run()
    except (RuntimeError, OSError, httpx.HTTPError) as exc:
        print(f"webhook: could not run: {type(exc).__name__}: {exc}")
        return 1


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000, help="open orders to seed")
    parser.add_argument("--n", type=int, default=300, help="webhook samples (and as many baseline)")
    parser.add_argument("--rate", type=float, default=10.0, help="order changes per second")
    parser.add_argument("--max-s", type=float, default=240.0, help="stop sampling after this")
    parser.add_argument("--quick", action="store_true", help="--n 50 --max-s 40")
    args = parser.parse_args()
    if args.quick:
        args.n, args.max_s = min(args.n, 50), min(args.max_s, 40.0)
    secret = new_webhook_secret()
    workdir = Path(tempfile.mkdtemp(prefix="loopline-webhook-"))
    book = Book(args.orders, random.Random(2000))
    print(
        f"Loopline webhook latency on real PostgreSQL and Redis, serve and worker as "
        f"processes, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        flush=True,
    )
    code = 0
    try:
        with (
            terminated_on_sigterm(),
            PostgresServer() as pg,
            RedisServer() as redis_srv,
            RecordingCrm(secret) as crm,
        ):
            env = loopline_env(
                database_url=pg.url_for(pg.create_database(f"webhook_{uuid.uuid4().hex[:8]}")),
                redis_url=redis_srv.url,
                mqtt_url=None,
                crm_url=crm.url,
                secret=secret,
                data_dir=workdir,
            )
            import_factory(env)
            procs = Procs(env, workdir)
            baseline_proc = None
            try:
                api = start_serve(procs, secret)
                hook = f"{api.url}{EVENTS_PATH}"
                began = time.monotonic()
                failed = seed_orders(hook, list(book.orders), book.event, secret)
                if failed:
                    raise RuntimeError(f"{failed} orders could not be seeded")
                took = time.monotonic() - began
                print(f"seeded {args.orders} orders in {took:.0f} s", flush=True)
                began = time.monotonic()
                procs.start("worker", ["worker"])
                # The plan first (cheap to poll), then the promises it gave.
                wait_for(lambda: planned(api) >= args.orders, 600, 1.0)
                promised, _ = wait_for(
                    lambda: sum(bool(o.get("promised_date")) for o in api.orders()) >= args.orders,
                    120,
                    3.0,
                )
                if not promised:
                    raise RuntimeError("the worker did not promise every order within 600 s")
                print(
                    f"worker planned and promised them in {time.monotonic() - began:.0f} s",
                    flush=True,
                )
                baseline_proc, base_url = start_baseline(env, workdir)
                samples, baseline, outcomes, errors = measure(args, book, hook, base_url, secret)
                applied, parked, neither = settle(api, book, 45.0 if args.quick else 180.0)
            finally:
                procs.stop_all()
                if baseline_proc is not None:
                    baseline_proc.terminate()
                    baseline_proc.wait(10)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not samples:
        print("webhook: no samples")
        return 1
    print(row("signed order change -> 202 from serve", samples, baseline))
    print(row("  baseline: signed POST -> trivial 202", baseline))
    print("answers: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    print(
        f"afterwards: {applied} changed orders hold the last version sent, {parked} wait "
        f"for approval, {neither} neither"
    )
    p99 = pct(samples, 0.99)
    met = p99 < TARGET_P99_S and not errors and not neither
    print(
        f"webhook: p99 {p99 * 1000:.1f} ms with {args.orders} open orders "
        f"(target < {TARGET_P99_S * 1000:.0f} ms: {'met' if met else 'missed'})"
        + (f", {errors} failed requests" if errors else "")
        + (f", {neither} changes neither applied nor waiting" if neither else "")
    )
    if not met:
        code = 1
    return code


def measure(
    args: argparse.Namespace, book: Book, hook: str, base_url: str, secret: str
) -> tuple[list[float], list[float], Counter[str], int]:
    """Interleaved samples from one keep-alive client: (webhook, baseline, outcomes, errors)."""
    samples: list[float] = []
    baseline: list[float] = []
    outcomes: Counter[str] = Counter()
    errors = 0
    began = time.monotonic()
    with httpx.Client() as client:
        for i in range(WARMUP + args.n):
            if time.monotonic() - began > args.max_s:
                print(f"stopped after {args.max_s:.0f} s with {len(samples)} samples", flush=True)
                break
            started = time.monotonic()
            raw = book.change()
            try:
                base_s, base = post(client, base_url, raw, secret)
                hook_s, resp = post(client, hook, raw, secret)
            except httpx.HTTPError as exc:
                errors += 1
                print(f"request failed: {type(exc).__name__}: {exc}", flush=True)
                continue
            if base.status_code != 202:
                raise RuntimeError(f"baseline answered {base.status_code}")
            if resp.status_code != 202:
                errors += 1
                outcomes[f"HTTP {resp.status_code}"] += 1
            elif i >= WARMUP:
                try:
                    outcomes[str(resp.json().get("outcome", "?"))] += 1
                except ValueError:
                    outcomes["?"] += 1
            if i >= WARMUP:
                samples.append(hook_s)
                baseline.append(base_s)
            pause = 1.0 / args.rate - (time.monotonic() - started)
            if pause > 0:
                time.sleep(pause)
    return samples, baseline, outcomes, errors


if __name__ == "__main__":
    sys.exit(main())
