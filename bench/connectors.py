"""Throughput of a CRM connector through the HTTP entry point, beside the canonical path.

On real PostgreSQL and Redis, with ``loopline serve`` and ``loopline worker`` as separate
processes (the factory from ``deploy/factory.example.json``, every change auto-approved), each
path on a fresh database and fresh processes:

1. canonical: ``--n`` signed canonical ``order.upserted`` events (new orders) are POSTed to
   ``/api/v1/crm/events`` by ``--clients`` concurrent keep-alive clients, one a request;
2. jiandaoyun: as many Jiandaoyun data pushes of the same orders' content (sha1-signed,
   subform lines, a local-time date widget, priority words) to
   ``/api/v1/crm/jiandaoyun/events``, mapped by the shipped connector file, one a request;
3. salesforce: the same orders as Salesforce Outbound Messages (SOAP, ``--batch``
   notifications a message, the OrganizationId checked, answered with the SOAP Ack), each
   opportunity's account and line items read by SOQL from a local HTTP server that plays
   Salesforce's REST API;
4. hubspot: the same orders as HubSpot webhooks v3 deliveries (v3-signed, ``--batch``
   ``deal.creation`` events a request), the delivery's deals, their associations, line
   items and companies read by batch calls from a local HTTP server that plays HubSpot's
   CRM API.

Every delivery is built and signed before the clock starts and sent with the standard
library's HTTP client (the CRM's own work happens on its own machine). For each, the time
from the first request until every event is applied by the worker (no
inbox row left ``received``) gives events/s "mapped and applied"; the answers alone give the
HTTP rate. Prints both and each connector's ratio to the canonical path measured in this run,
against the issue's target (a connector maps and applies >= 500 events/s). Run:
``.venv/bin/python bench/connectors.py [--n 500] [--quick] [--only salesforce,hubspot]``.
Exits 1 when a connector misses the target or an event was not accepted.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
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
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit

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
from tests.ingest.crm.fake_api import FakeApi  # noqa: E402
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


SF_ORG = "00D5g000004XyZaEAK"
SF_PATH = "/api/v1/crm/salesforce/events"
SF_PRIORITY = {"normal": "Normal", "high": "High", "rush": "Rush"}
HUBSPOT_SECRET = "bench-hubspot-secret"
HUBSPOT_PATH = "/api/v1/crm/hubspot/events"
# HubSpot's deal priorities (low/medium/high) have no rush: the preset maps high to high.
HUBSPOT_PRIORITY = {"normal": "medium", "high": "high", "rush": "high"}


def sf_id(i: int, prefix: str) -> str:
    """An 18-character opportunity id per order (a path's own prefix: W for the warm-up)."""
    return f"006{prefix[:3]:X<3}{i:09d}AAV"


def hubspot_id(i: int, prefix: str) -> int:
    """A numeric deal id per order (the warm-up's own range)."""
    return (9 if prefix.startswith("W") else 8) * 10**9 + i


def salesforce_body(orders: list[dict[str, Any]]) -> str:
    """One Outbound Message holding a notification per order."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    notes = "".join(
        f"<Notification><Id>04l{uuid.uuid4().hex[:15]}</Id>"
        '<sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"<sf:Id>{o['id']}</sf:Id><sf:AccountId>001{o['customer'][0]:X>12}AAV</sf:AccountId>"
        f"<sf:CloseDate>{o['due'].isoformat()}</sf:CloseDate><sf:IsDeleted>false</sf:IsDeleted>"
        f"<sf:LastModifiedDate>{now}</sf:LastModifiedDate>"
        f"<sf:Loopline_Priority__c>{SF_PRIORITY[o['priority']]}</sf:Loopline_Priority__c>"
        f"<sf:OwnerId>0055g00000AbCdEAAV</sf:OwnerId><sf:StageName>Prospecting</sf:StageName>"
        "</sObject></Notification>"
        for o in orders
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{SF_ORG}</OrganizationId><ActionId>04k5g000000TQ2uAAG</ActionId>"
        '<SessionId xsi:nil="true"/>'
        f"{notes}</notifications></soapenv:Body></soapenv:Envelope>"
    )


def hubspot_body(orders: list[dict[str, Any]]) -> str:
    """One webhooks v3 delivery: a ``deal.creation`` event per order."""
    now = int(time.time() * 1000)
    return json.dumps(
        [
            {
                "eventId": uuid.uuid4().int % 10**12,
                "subscriptionId": 2380391,
                "portalId": 46218570,
                "appId": 3520814,
                "occurredAt": now,
                "subscriptionType": "deal.creation",
                "attemptNumber": 0,
                "objectId": int(o["id"]),
                "changeFlag": "CREATED",
                "changeSource": "CRM_UI",
                "sourceId": "userId:71853204",
            }
            for o in orders
        ],
        separators=(",", ":"),
    )


class CrmApis:
    """Local HTTP servers playing Salesforce's REST API and HubSpot's CRM API for the
    orders of a run (what each fetch reads), answering any write-back, and Jiandaoyun's
    data-update API (its write-back: without it every promise failed and was retried)."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.salesforce = (
            FakeApi()
            .route("GET", r"/services/data/v60\.0/query", self._soql)
            .route(
                "PATCH",
                r"/services/data/v60\.0/sobjects/Opportunity/(\w+)",
                lambda c, m: (204, None),
            )
        )
        self.hubspot = (
            FakeApi()
            .route("GET", r"/crm/v3/objects/deals/(\d+)", self._deal)
            .route("POST", "/crm/v3/objects/line_items/batch/read", self._line_items)
            .route("GET", r"/crm/v3/objects/companies/C-(\d+)", self._company)
            .route("POST", "/crm/v3/objects/deals/batch/read", self._deals)
            .route("POST", "/crm/v4/associations/deals/line_items/batch/read", self._deal_lines)
            .route("POST", "/crm/v4/associations/deals/companies/batch/read", self._deal_company)
            .route("POST", "/crm/v3/objects/companies/batch/read", self._companies)
            .route("PATCH", r"/crm/v3/objects/deals/(\d+)", lambda c, m: (200, {"id": m.group(1)}))
        )
        self.jiandaoyun = FakeApi().route(
            "POST", "/api/v5/app/entry/data/update", lambda c, m: (200, {"data": {"_id": "x"}})
        )

    def __enter__(self) -> CrmApis:
        self.salesforce.__enter__()
        self.hubspot.__enter__()
        self.jiandaoyun.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.salesforce.__exit__(*exc)
        self.hubspot.__exit__(*exc)
        self.jiandaoyun.__exit__(*exc)

    def forget_calls(self) -> None:
        self.salesforce.calls.clear()
        self.hubspot.calls.clear()
        self.jiandaoyun.calls.clear()

    def _soql(self, call: Any, m: Any) -> tuple[int, Any]:
        opp = call.query["q"].rsplit("WHERE Id = '", 1)[1].rstrip("'")
        o = self.orders[opp]
        items = [{"ProductCode": sku, "Quantity": float(q)} for sku, q in o["lines"]]
        row = {
            "Account": {"Name": o["customer"][1], "AccountNumber": o["customer"][0]},
            "OpportunityLineItems": {"totalSize": len(items), "done": True, "records": items},
        }
        return 200, {"totalSize": 1, "done": True, "records": [row]}

    def _deal(self, call: Any, m: Any) -> tuple[int, Any]:
        deal = m.group(1)
        o = self.orders[deal]
        lines = [{"id": f"{deal}{k}", "type": "deal_to_line_item"} for k in range(len(o["lines"]))]
        company = o["customer"][0].removeprefix("C-")
        props = {
            "closedate": f"{o['due'].isoformat()}T00:00:00Z",
            "hs_priority": HUBSPOT_PRIORITY[o["priority"]],
            "hubspot_owner_id": "71853204",
            "dealstage": "contractsent",
        }
        assoc = {
            "companies": {"results": [{"id": f"C-{company}", "type": "deal_to_company"}]},
            "line items": {"results": lines},
        }
        return 200, {"id": deal, "properties": props, "associations": assoc}

    def _deals(self, call: Any, m: Any) -> tuple[int, Any]:
        results = []
        for item in call.body["inputs"]:
            deal = self._deal(call, re.match(r"(\d+)", item["id"]))[1]
            results.append({"id": deal["id"], "properties": deal["properties"]})
        return 200, {"status": "COMPLETE", "results": results}

    def _deal_lines(self, call: Any, m: Any) -> tuple[int, Any]:
        results = []
        for item in call.body["inputs"]:
            n = len(self.orders[item["id"]]["lines"])
            to = [{"toObjectId": f"{item['id']}{k}"} for k in range(n)]
            results.append({"from": {"id": item["id"]}, "to": to})
        return 200, {"status": "COMPLETE", "results": results}

    def _deal_company(self, call: Any, m: Any) -> tuple[int, Any]:
        results = []
        for item in call.body["inputs"]:
            to = [{"toObjectId": self.orders[item["id"]]["customer"][0]}]
            results.append({"from": {"id": item["id"]}, "to": to})
        return 200, {"status": "COMPLETE", "results": results}

    def _companies(self, call: Any, m: Any) -> tuple[int, Any]:
        results = []
        for item in call.body["inputs"]:
            n = item["id"].removeprefix("C-")
            results.append({"id": item["id"], "properties": {"name": f"Customer {n}"}})
        return 200, {"status": "COMPLETE", "results": results}

    def _line_items(self, call: Any, m: Any) -> tuple[int, Any]:
        results = []
        for item in call.body["inputs"]:
            deal, k = item["id"][:-1], int(item["id"][-1])
            sku, qty = self.orders[deal]["lines"][k]
            results.append({"id": item["id"], "properties": {"hs_sku": sku, "quantity": str(qty)}})
        return 200, {"status": "COMPLETE", "results": results}

    def _company(self, call: Any, m: Any) -> tuple[int, Any]:
        n = m.group(1)
        return 200, {"id": f"C-{n}", "properties": {"name": f"Customer {n}"}}


class Request(NamedTuple):
    """One webhook delivery, built and signed before the clock starts (a CRM does that on
    its own machine: here it would take the cores the processes under test need)."""

    target: str  # path and query
    body: bytes
    headers: dict[str, str]
    soap: bool = False  # answered with a SOAP Ack, not 202


def connection(url: str) -> http.client.HTTPConnection:
    """This thread's keep-alive connection to ``url``'s server.

    Why the standard library's client: httpx spent about 1.4 ms of CPU a request, on the
    same two cores as serve and the worker; http.client a fraction of that."""
    c = getattr(_local, "conn", None)
    if c is None:
        parts = urlsplit(url)
        c = _local.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30.0)
    return c


def send(url: str, request: Request) -> int:
    """POST one prepared delivery; its status (202 also for a SOAP Ack)."""
    conn = connection(url)
    try:
        conn.request("POST", request.target, body=request.body, headers=request.headers)
        answer = conn.getresponse()
        content = answer.read()
    except (OSError, http.client.HTTPException):
        conn.close()
        _local.conn = None
        raise
    if request.soap:
        # Salesforce retries a message until it reads the Ack.
        return 202 if answer.status == 200 and b"<Ack>true</Ack>" in content else answer.status
    return answer.status


def prepare_canonical(url: str, secret: str, orders: list[dict[str, Any]]) -> Request:
    (o,) = orders
    raw = canonical_body(o)
    headers = signed_headers(secret, f"evt_{uuid.uuid4().hex}", raw)
    return Request(urlsplit(url).path, raw.encode(), headers)


def prepare_jdy(url: str, secret: str, orders: list[dict[str, Any]]) -> Request:
    (o,) = orders
    raw = jdy_body(o)
    nonce, stamp = uuid.uuid4().hex[:12], str(int(time.time()))
    signature = hashlib.sha1(f"{nonce}:{raw}:{secret}:{stamp}".encode()).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-jdy-signature": signature,
        "x-jdy-deliverid": uuid.uuid4().hex,
    }
    target = f"{urlsplit(url).path}?{urlencode({'nonce': nonce, 'timestamp': stamp})}"
    return Request(target, raw.encode(), headers)


def prepare_salesforce(url: str, secret: str, orders: list[dict[str, Any]]) -> Request:
    raw = salesforce_body(orders)
    headers = {"content-type": "text/xml; charset=utf-8", "soapaction": '""'}
    return Request(urlsplit(url).path, raw.encode(), headers, soap=True)


def prepare_hubspot(url: str, secret: str, orders: list[dict[str, Any]]) -> Request:
    raw = hubspot_body(orders)
    stamp = str(int(time.time() * 1000))
    message = f"POST{url}{raw}{stamp}".encode()
    signature = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest())
    headers = {
        "content-type": "application/json",
        "x-hubspot-signature-v3": signature.decode(),
        "x-hubspot-request-timestamp": stamp,
    }
    return Request(urlsplit(url).path, raw.encode(), headers)


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


class Path_(NamedTuple):
    """One path of the bench: how its events are posted, where, and how orders are named."""

    name: str
    prepare: Any  # (url, secret, orders) -> Request
    route: str
    secret: str
    prefix: str
    source: str
    batch: int  # events a request
    ident: Any = None  # (i, prefix) -> the order id, as this CRM names it


def run_path(
    path: Path_,
    url: str,
    prefix: str,
    args: argparse.Namespace,
    engine: Any,
    apis: CrmApis,
    pids: list[int] | None = None,
    label: str | None = None,
) -> tuple[float, float, Counter[int]]:
    """Send ``args.n`` events; (HTTP events/s, mapped-and-applied events/s, answers per event).

    With ``pids`` (serve's and the worker's) also prints the CPU milliseconds they spent
    per event: on a shared machine the rates follow the other load, that figure less."""
    orders = [order_content(i, prefix) for i in range(args.n)]
    if path.ident is not None:
        for i, o in enumerate(orders):
            o["id"] = str(path.ident(i, prefix))
    apis.orders.update({o["id"]: o for o in orders})
    chunks = [orders[k : k + path.batch] for k in range(0, len(orders), path.batch)]
    requests = [path.prepare(url, path.secret, c) for c in chunks]
    cpu_before = cpu_s(pids or [])
    each_before = [cpu_s([p]) for p in pids or []]
    began = time.monotonic()
    answers: Counter[int] = Counter()
    with ThreadPoolExecutor(min(args.clients, len(chunks))) as pool:
        for chunk, status in zip(chunks, pool.map(lambda r: send(url, r), requests), strict=True):
            answers[status] += len(chunk)
    answered = time.monotonic() - began
    done, _ = wait_for(
        lambda: (lambda t, left: t >= answers[202] and left == 0)(*waiting(engine, path.source)),
        args.max_s,
        0.05,
    )
    applied_s = time.monotonic() - began
    total, left = waiting(engine, path.source)
    applied = max(0, min(total, answers[202]) - left)
    name = label or path.name
    if not done:
        print(f"{name}: {left} events still waiting after {args.max_s:.0f} s", flush=True)
    http_rate, applied_rate = args.n / answered, applied / applied_s
    cpu = ""
    if pids:
        per = [
            1000 * (cpu_s([p]) - b) / max(1, applied)
            for p, b in zip(pids, each_before, strict=True)
        ]
        cpu = (
            f"; serve+worker CPU {1000 * (cpu_s(pids) - cpu_before) / max(1, applied):.1f} ms/event"
            f" (serve {per[0]:.1f}, worker {per[1]:.1f})"
        )
    print(
        f"{name:<28} {args.n} events in {len(chunks)} requests: answered in {answered:.2f} s "
        f"({http_rate:.0f}/s), {applied} applied in {applied_s:.2f} s ({applied_rate:.0f}/s); "
        "answers (per event) " + ", ".join(f"{k} x{v}" for k, v in sorted(answers.items())) + cpu,
        flush=True,
    )
    return http_rate, applied_rate, answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="events per path")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument(
        "--batch", type=int, default=100, help="events a Salesforce message / HubSpot delivery"
    )
    parser.add_argument(
        "--max-s", type=float, default=300.0, help="wait at most this for the worker"
    )
    parser.add_argument("--quick", action="store_true", help="--n 200")
    parser.add_argument(
        "--only",
        default="",
        help="connectors to run beside the canonical baseline, e.g. salesforce,hubspot",
    )
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
        Path_(
            "canonical (baseline)",
            prepare_canonical,
            EVENTS_PATH,
            secret,
            "CAN",
            "crm:canonical",
            1,
        ),
        Path_(
            "jiandaoyun connector", prepare_jdy, JDY_PATH, JDY_SECRET, "JDY", "crm:jiandaoyun", 1
        ),
        Path_(
            "salesforce connector",
            prepare_salesforce,
            SF_PATH,
            "",
            "SFA",
            "crm:salesforce",
            args.batch,
            sf_id,
        ),
        Path_(
            "hubspot connector",
            prepare_hubspot,
            HUBSPOT_PATH,
            HUBSPOT_SECRET,
            "HUB",
            "crm:hubspot",
            args.batch,
            hubspot_id,
        ),
    ]
    only = {w.strip() for w in args.only.split(",") if w.strip()}
    if only:
        paths = [p for p in paths if p.source == "crm:canonical" or p.source[4:] in only]
    results: list[tuple[Path_, tuple[float, float, Counter[int]]]] = []
    try:
        with (
            terminated_on_sigterm(),
            PostgresServer() as pg,
            RedisServer() as redis_srv,
            CrmApis() as apis,
        ):
            for path in paths:
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
                    jdy_api_url=apis.jiandaoyun.url,
                    jdy_api_key="bench-jdy-key",
                    salesforce_org_id=SF_ORG[:15],
                    salesforce_token="00D5g!AQ4AQ.bench-token",
                    salesforce_api_url=apis.salesforce.url,
                    hubspot_client_secret=HUBSPOT_SECRET,
                    hubspot_token="pat-na1-bench-token",
                    hubspot_api_url=apis.hubspot.url,
                )
                if os.environ.get("LOOPLINE_SRC"):  # a worktree's code (/work/wt/run)
                    env["LOOPLINE_SRC"] = os.environ["LOOPLINE_SRC"]
                import_factory(env)
                engine = create_engine(database_url)
                procs = Procs(env, workdir)
                try:
                    api = start_serve(procs, secret)
                    procs.start("worker", ["worker"])
                    url = f"{api.url}{path.route}"
                    # Warm up (imports, the planner's first solve) before timing.
                    warm = argparse.Namespace(**{**vars(args), "n": min(20, args.n)})
                    run_path(
                        path,
                        url,
                        "W" + path.prefix,
                        warm,
                        engine,
                        apis,
                        label=f"warm-up {path.name}",
                    )
                    apis.forget_calls()
                    pids = [procs.procs["serve"].pid, procs.procs["worker"].pid]
                    results.append(
                        (path, run_path(path, url, path.prefix, args, engine, apis, pids))
                    )
                finally:
                    procs.stop_all()
                    engine.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    (_, (_, base, base_answers)), *connectors = results
    print(f"{'path':<22} {'events/s applied':>17} {'HTTP events/s':>14} {'x canonical':>12}")
    print(f"{'canonical (baseline)':<22} {base:>17.0f} {'':>14} {1.0:>12.2f}")
    met = True
    refused = sum(v for k, v in base_answers.items() if k != 202)
    for path, (http_rate, rate, answers) in connectors:
        refused += sum(v for k, v in answers.items() if k != 202)
        ratio = rate / base if base else 0.0
        met = met and rate >= TARGET_PER_S
        print(f"{path.name:<22} {rate:>17.0f} {http_rate:>14.0f} {ratio:>12.2f}")
    met = met and not refused and bool(connectors)
    print(
        f"connectors: target >= {TARGET_PER_S:.0f} events/s mapped and applied by every "
        f"connector: {'met' if met else 'missed'}"
        + (f"; {refused} events not accepted" if refused else "")
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
