"""Throughput of a CRM connector through the HTTP entry point, beside the canonical path.

On real PostgreSQL and Redis, with ``loopline serve`` and ``loopline worker`` as separate
processes (the factory from ``deploy/factory.example.json``, every change auto-approved), each
path on a fresh database and fresh processes:

1. canonical: ``--n`` signed canonical ``order.upserted`` events (new orders) are POSTed to
   ``/api/v1/crm/events`` by ``--clients`` concurrent keep-alive clients;
2. connector: as many Jiandaoyun data pushes of the same orders' content (sha1-signed,
   subform lines, a local-time date widget, priority words) to
   ``/api/v1/crm/jiandaoyun/events``, mapped by the shipped connector file.

For each, the time from the first request until every event is applied by the worker (no
inbox row left ``received``) gives events/s "mapped and applied"; the answers alone give the
HTTP rate. Prints both and the connector/canonical ratio measured in this run, against the
issue's target (a connector maps and applies >= 500 events/s). Run:
``.venv/bin/python bench/connectors.py [--n 500] [--quick]``. Exits 1 when the target is
missed or an event was not accepted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import create_engine, func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._procs import (  # noqa: E402
    EVENTS_PATH,
    Procs,
    import_factory,
    loopline_env,
    signed_headers,
    start_serve,
    terminated_on_sigterm,
    wait_for,
)
from loopline.models.records import InboxEvent  # noqa: E402
from loopline.settings import new_webhook_secret  # noqa: E402
from tests.servers import PostgresServer, RedisServer  # noqa: E402

TARGET_PER_S = 500.0
JDY_SECRET = "bench-jdy-secret"
JDY_PATH = "/api/v1/crm/jiandaoyun/events"
SKUS = ["GEAR-A", "GEAR-B", "SHAFT-S", "SHAFT-L"]
PRIORITY_WORDS = {"normal": "普通", "high": "紧急", "rush": "加急"}
_local = threading.local()


def order_content(i: int, prefix: str) -> dict[str, Any]:
    """The i-th order of a run: the same content for both paths (its own id per path)."""
    due = datetime(2026, 12, 20, tzinfo=UTC).date() + timedelta(days=i % 30)
    return {
        "id": f"{prefix}-{i:05d}",
        "customer": (f"C-{i % 40}", f"Customer {i % 40}"),
        "lines": [(SKUS[i % 4], 10 + i % 50), (SKUS[(i + 1) % 4], 5 + i % 7)],
        "due": due,
        "priority": ["normal", "normal", "high", "rush"][i % 4],
    }


def canonical_body(o: dict[str, Any]) -> str:
    return json.dumps(
        {
            "type": "order.upserted",
            "occurred_at": datetime.now(UTC).isoformat(),
            "order": {
                "id": o["id"],
                "version": 1,
                "customer": {"id": o["customer"][0], "name": o["customer"][1]},
                "lines": [{"sku": s, "qty": q} for s, q in o["lines"]],
                "requested_date": o["due"].isoformat(),
                "priority": o["priority"],
                "sales_rep": "bench",
            },
        },
        separators=(",", ":"),
    )


def jdy_body(o: dict[str, Any]) -> str:
    # The date widget's value: local (Asia/Shanghai) midnight of the due day, in UTC.
    midnight = datetime(o["due"].year, o["due"].month, o["due"].day, tzinfo=UTC) - timedelta(
        hours=8
    )
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps(
        {
            "op": "data_create",
            "data": {
                "_id": uuid.uuid4().hex[:24],
                "appId": "bench-app",
                "entryId": "bench-entry",
                "creator": {"name": "bench", "username": "bench"},
                "createTime": now,
                "updateTime": now,
                "_widget_1700000000001": o["id"],
                "_widget_1700000000002": o["customer"][0],
                "_widget_1700000000003": o["customer"][1],
                "_widget_1700000000004": [
                    {
                        "_id": uuid.uuid4().hex[:24],
                        "_widget_1700000000005": s,
                        "_widget_1700000000006": q,
                    }
                    for s, q in o["lines"]
                ],
                "_widget_1700000000007": midnight.isoformat().replace("+00:00", ".000Z"),
                "_widget_1700000000008": PRIORITY_WORDS[o["priority"]],
                "_widget_1700000000009": {"name": "bench", "username": "bench"},
            },
            "opTime": int(time.time() * 1000),
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def client() -> httpx.Client:
    c = getattr(_local, "client", None)
    if c is None:
        c = _local.client = httpx.Client(timeout=30.0)
    return c


def post_canonical(url: str, secret: str, o: dict[str, Any]) -> int:
    raw = canonical_body(o)
    headers = signed_headers(secret, f"evt_{uuid.uuid4().hex}", raw)
    return client().post(url, content=raw.encode(), headers=headers).status_code


def post_jdy(url: str, secret: str, o: dict[str, Any]) -> int:
    raw = jdy_body(o)
    nonce, stamp = uuid.uuid4().hex[:12], str(int(time.time()))
    signature = hashlib.sha1(f"{nonce}:{raw}:{secret}:{stamp}".encode()).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-jdy-signature": signature,
        "x-jdy-deliverid": uuid.uuid4().hex,
    }
    return (
        client()
        .post(
            url, params={"nonce": nonce, "timestamp": stamp}, content=raw.encode(), headers=headers
        )
        .status_code
    )


def waiting(engine: Any, source: str) -> tuple[int, int]:
    """(events of ``source`` in the inbox, those still waiting for the worker)."""
    with engine.connect() as conn:
        total = conn.scalar(select(func.count()).where(InboxEvent.source == source))
        left = conn.scalar(
            select(func.count()).where(
                InboxEvent.source == source, InboxEvent.outcome == "received"
            )
        )
    return int(total or 0), int(left or 0)


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes ``pids`` used so far (Linux /proc)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run_path(
    name: str,
    post: Any,
    url: str,
    secret: str,
    prefix: str,
    args: argparse.Namespace,
    engine: Any,
    source: str,
    pids: list[int] | None = None,
) -> tuple[float, float, Counter[int]]:
    """Send ``args.n`` events; (HTTP events/s, mapped-and-applied events/s, answers).

    With ``pids`` (serve's and the worker's) also prints the CPU milliseconds they spent
    per event: on a shared machine the rates follow the other load, that figure less."""
    orders = [order_content(i, prefix) for i in range(args.n)]
    cpu_before = cpu_s(pids or [])
    began = time.monotonic()
    with ThreadPoolExecutor(args.clients) as pool:
        answers = Counter(pool.map(lambda o: post(url, secret, o), orders))
    answered = time.monotonic() - began
    done, _ = wait_for(
        lambda: (lambda t, left: t >= answers[202] and left == 0)(*waiting(engine, source)),
        args.max_s,
        0.05,
    )
    applied_s = time.monotonic() - began
    total, left = waiting(engine, source)
    applied = max(0, min(total, answers[202]) - left)
    if not done:
        print(f"{name}: {left} events still waiting after {args.max_s:.0f} s", flush=True)
    http_rate, applied_rate = args.n / answered, applied / applied_s
    cpu = (
        f"; serve+worker CPU {1000 * (cpu_s(pids) - cpu_before) / max(1, applied):.1f} ms/event"
        if pids
        else ""
    )
    print(
        f"{name:<28} {args.n} events: answered in {answered:.2f} s ({http_rate:.0f}/s), "
        f"{applied} applied in {applied_s:.2f} s ({applied_rate:.0f}/s); answers "
        + ", ".join(f"{k} x{v}" for k, v in sorted(answers.items()))
        + cpu,
        flush=True,
    )
    return http_rate, applied_rate, answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="events per path")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument(
        "--max-s", type=float, default=300.0, help="wait at most this for the worker"
    )
    parser.add_argument("--quick", action="store_true", help="--n 200")
    args = parser.parse_args()
    if args.quick:
        args.n = min(args.n, 200)
    secret = new_webhook_secret()
    workdir = Path(tempfile.mkdtemp(prefix="loopline-connectors-"))
    print(
        f"Loopline connector throughput on real PostgreSQL and Redis, serve and worker as "
        f"processes, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        flush=True,
    )
    paths = [
        ("canonical (baseline)", post_canonical, EVENTS_PATH, secret, "CAN", "crm:canonical"),
        ("jiandaoyun connector", post_jdy, JDY_PATH, JDY_SECRET, "JDY", "crm:jiandaoyun"),
    ]
    results = []
    try:
        with terminated_on_sigterm(), PostgresServer() as pg, RedisServer() as redis_srv:
            for name, post, route, path_secret, prefix, source in paths:
                # Each path on a fresh database and processes: neither pays for the other's
                # orders in the plan.
                redis.Redis.from_url(redis_srv.url).flushall()
                database_url = pg.url_for(pg.create_database(f"conn_{uuid.uuid4().hex[:8]}"))
                env = loopline_env(
                    database_url=database_url,
                    redis_url=redis_srv.url,
                    mqtt_url=None,
                    crm_url=None,
                    secret=secret,
                    data_dir=workdir,
                    auto_approve_priorities="normal,high,rush",
                    jdy_secret=JDY_SECRET,
                )
                if os.environ.get("LOOPLINE_SRC"):  # a worktree's code (/work/wt/run)
                    env["LOOPLINE_SRC"] = os.environ["LOOPLINE_SRC"]
                import_factory(env)
                engine = create_engine(database_url)
                procs = Procs(env, workdir)
                try:
                    api = start_serve(procs, secret)
                    procs.start("worker", ["worker"])
                    url = f"{api.url}{route}"
                    # Warm up (imports, the planner's first solve) before timing.
                    warm = argparse.Namespace(**{**vars(args), "n": 20})
                    run_path(
                        f"warm-up {name}",
                        post,
                        url,
                        path_secret,
                        "W" + prefix,
                        warm,
                        engine,
                        source,
                    )
                    pids = [p.pid for p in procs.procs.values()]
                    results.append(
                        run_path(name, post, url, path_secret, prefix, args, engine, source, pids)
                    )
                finally:
                    procs.stop_all()
                    engine.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    (_, base, base_answers), (http, conn, conn_answers) = results
    refused = sum(v for k, v in {**base_answers, **conn_answers}.items() if k != 202)
    ratio = conn / base if base else 0.0
    met = conn >= TARGET_PER_S and not refused
    print(
        f"connectors: the jiandaoyun connector maps and applies {conn:.0f} events/s "
        f"({ratio:.2f}x the canonical path's {base:.0f}/s; HTTP answers {http:.0f}/s); "
        f"target >= {TARGET_PER_S:.0f}/s: {'met' if met else 'missed'}"
        + (f"; {refused} events not accepted" if refused else "")
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
