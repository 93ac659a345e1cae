"""Chaos on real servers: kills, outages and races of issue 8, and what each of them lost.

Each scenario gets a fresh Redis (AOF on), a fresh Mosquitto (persistence on, explicit
``max_queued_messages``) and a fresh database on one PostgreSQL (copied from a template
that ``loopline import-factory deploy/factory.example.json`` filled once), and runs
``loopline serve``, ``ingest`` and ``worker`` as separate processes. Faults are real:
``kill -9`` of a process, a server stopped and started again (Redis also with its data
wiped). Traffic is what users send: QoS 1 progress over MQTT, signed CRM webhooks (a CRM
retries a non-2xx with the same ``webhook-id``), feedback POSTed to a local CRM. The end
state is read through the REST API (polled until consistent or a deadline), plus SQL for
dead letters and the outbox.

Columns: ``sent`` what was sent; ``lost`` what never took effect (MQTT: units of progress
missing from the final counters, one per message since each message adds one; CRM:
events not applied; outbox: owed events never delivered); ``dups`` duplicates (sent on
purpose, or delivered twice: at-least-once allows it); ``mismatch`` entities whose final
state differs from the truth; ``recovery`` seconds from the fault's end until the system
was consistent again (``>N`` when it never was within the deadline).

Run: ``.venv/bin/python bench/chaos.py [--quick] [--only NAME ...]``. Exits 1 when anything
was lost or mismatched, or a scenario could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._procs import (  # noqa: E402
    Api,
    Procs,
    Publisher,
    RecordingCrm,
    free_port,
    import_factory,
    loopline_env,
    new_webhook_id,
    start_serve,
    terminated_on_sigterm,
    wait_for,
)
from loopline.settings import new_webhook_secret  # noqa: E402
from tests.servers import MosquittoServer, PostgresServer, RedisServer  # noqa: E402

SITE = "plant-1"  # deploy/factory.example.json
CUSTOMERS = [("C-1", "Acme Gears"), ("C-2", "Nordic Drives"), ("C-3", "Huatai Machinery")]
# One SKU per line family, so progress flows on several lines at once.
SKUS = ["GEAR-A", "SHAFT-S", "HOUSING-X", "GEAR-B", "SHAFT-L", "PUMP-P7"]
MQTT_QUEUE_LIMIT = 1_000_000  # Mosquitto's default (1000) silently drops QoS 1 (DESIGN.md)
SETTLE_S = 0.5


# --- results -------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    sent: str = ""
    lost: int = 0
    dups: int | None = None
    mismatches: int = 0
    recovery_s: float | None = None
    recovered: bool = True
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def recovery_text(self) -> str:
        if self.recovery_s is None:
            return "-"
        return f"{self.recovery_s:.1f}" if self.recovered else f">{self.recovery_s:.0f}"


@dataclass(frozen=True)
class Sizes:
    """Counts and deadlines of one run (``--quick`` or full)."""

    quick: bool
    mqtt_messages: int
    mqtt_rate: float  # messages per second
    ingest_kills: int
    outage_s: float
    pg_outage_s: float
    crm_events: int
    outbox_orders: int
    replan_burst: int
    replan_rounds: int
    perm_orders: int
    perm_versions: int
    recover_s: float  # how long a scenario may take to become consistent after its fault
    outbox_recover_s: float

    @staticmethod
    def of(quick: bool) -> Sizes:
        if quick:
            return Sizes(True, 2400, 80.0, 4, 8.0, 4.0, 40, 24, 30, 2, 8, 8, 20.0, 30.0)
        return Sizes(False, 10_000, 150.0, 10, 15.0, 8.0, 120, 60, 100, 3, 12, 10, 90.0, 200.0)


# --- one scenario's world --------------------------------------------------------------------


class Rig:
    """Fresh Redis and Mosquitto, a database copied from the factory template, a local CRM
    and the ``loopline`` processes, for one scenario; everything stopped on exit."""

    def __init__(
        self,
        pg: PostgresServer,
        template: str,
        workdir: Path,
        *,
        crm_delay_s: float = 0.0,
        keep_logs: Path | None = None,
    ) -> None:
        self.keep_logs = keep_logs
        self.pg = pg
        self.template = template
        self.workdir = Path(tempfile.mkdtemp(prefix="rig-", dir=workdir))
        self.secret = new_webhook_secret()
        self.crm_delay_s = crm_delay_s
        self.redis: RedisServer | None = None
        self.broker: MosquittoServer | None = None
        self.crm: RecordingCrm | None = None
        self.procs: Procs | None = None
        self.api: Api | None = None
        self.dbname = ""

    def __enter__(self) -> Rig:
        try:
            self._open()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _open(self) -> None:
        self.redis = RedisServer(
            port=free_port(), extra_args=["--appendonly", "yes", "--appendfsync", "everysec"]
        ).start()
        broker = MosquittoServer(port=free_port())
        broker.options.update(
            persistence="true",
            persistence_location=f"{broker.workdir}/",
            autosave_interval="1",
            max_queued_messages=str(MQTT_QUEUE_LIMIT),
        )
        self.broker = broker.start()
        self.crm = RecordingCrm(self.secret, delay_s=self.crm_delay_s).start()
        self.dbname = f"chaos_{uuid.uuid4().hex[:10]}"
        self._admin(f'CREATE DATABASE "{self.dbname}" TEMPLATE "{self.template}"')
        env = loopline_env(
            database_url=self.pg.url_for(self.dbname),
            redis_url=self.redis.url,
            mqtt_url=self.broker.url,
            crm_url=self.crm.url,
            secret=self.secret,
            data_dir=self.workdir,
            replan_debounce_ms="200",
            mqtt_client_id=f"chaos-ingest-{uuid.uuid4().hex[:8]}",
            outbox_backoff_base_s="0.2",
            outbox_backoff_max_s="2",
            outbox_max_attempts="50",
            # Approval would park changes that slip others; these scenarios test ordering.
            auto_approve_max_slip_h="100000",
        )
        self.procs = Procs(env, self.workdir)

    def start_all(self) -> Api:
        """serve, ingest and worker, started together; the API once serve answers."""
        assert self.procs is not None
        self.procs.start("ingest", ["ingest"])
        self.procs.start("worker", ["worker"])
        self.api = start_serve(self.procs, self.secret)
        return self.api

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on this scenario's database."""
        with pg_connect(self.pg, self.dbname) as conn:
            return list(conn.execute(query, params).fetchall())

    def _admin(self, statement: str) -> None:
        with pg_connect(self.pg, "postgres") as conn:
            conn.execute(statement)

    def __exit__(self, *exc: object) -> None:
        if self.procs is not None:
            self.procs.stop_all()
        if self.keep_logs is not None:
            self.keep_logs.mkdir(parents=True, exist_ok=True)
            logs = [*self.workdir.glob("*.log")]
            logs += [s.log_path for s in (self.redis, self.broker) if s is not None]
            for log in logs:
                if log.exists():
                    shutil.copyfile(log, self.keep_logs / log.name)
        if self.crm is not None:
            self.crm.stop()
        for server in (self.broker, self.redis):
            if server is not None:
                server.close()
        if not self.pg.running:
            self.pg.start()
        if self.dbname:
            # A leftover database in a throwaway cluster is harmless.
            with contextlib.suppress(Exception):
                self.pg.drop_database(self.dbname)
        shutil.rmtree(self.workdir, ignore_errors=True)


def pg_connect(pg: PostgresServer, dbname: str) -> psycopg.Connection[Any]:
    """An autocommit connection to ``dbname`` on the bench's PostgreSQL."""
    return psycopg.connect(
        host=pg.host, port=pg.port, user="postgres", dbname=dbname, connect_timeout=5,
        autocommit=True,
    )  # fmt: skip


# --- CRM events ------------------------------------------------------------------------------


def order_body(
    order_id: str, version: int, sku: str, qty: int, requested: date, customer: int = 0
) -> dict[str, Any]:
    """A canonical ``order.upserted`` (DESIGN.md)."""
    cid, cname = CUSTOMERS[customer % len(CUSTOMERS)]
    return {
        "type": "order.upserted",
        "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "order": {
            "id": order_id,
            "version": version,
            "customer": {"id": cid, "name": cname},
            "lines": [{"sku": sku, "qty": qty}],
            "requested_date": requested.isoformat(),
            "priority": "normal",
            "sales_rep": "chaos.bench",
        },
    }


def cancel_body(order_id: str, version: int) -> dict[str, Any]:
    return {
        "type": "order.cancelled",
        "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "order": {"id": order_id, "version": version},
    }


def far_date(days: int = 60) -> date:
    return (datetime.now(UTC) + timedelta(days=days)).date()


def seed_orders(api: Api, prefix: str, n: int, qty: int, timeout_s: float) -> list[str]:
    """``n`` new orders through the webhook, spread over the SKUs; their ids."""
    ids = []
    deadline = time.monotonic() + timeout_s
    for i in range(n):
        order_id = f"SO-{prefix}{i:04d}"
        body = order_body(order_id, 1, SKUS[i % len(SKUS)], qty, far_date(60 + i % 30), i)
        status, _ = api.send_until_accepted(body, new_webhook_id(), deadline)
        if status is None or status >= 300:
            raise RuntimeError(f"seeding {order_id}: webhook answered {status}")
        ids.append(order_id)
    return ids


def wait_promised(api: Api, ids: list[str], timeout_s: float) -> tuple[set[str], float]:
    """Wait until every order has a promised date and planned lines; the ones still without."""
    want = set(ids)

    def missing() -> set[str]:
        got = {
            o["id"]
            for o in api.orders()
            if o["id"] in want
            and o.get("promised_date")
            and o["work_orders"]
            and all(w.get("line") for w in o["work_orders"])
        }
        return want - got

    left: set[str] = set(want)

    def done() -> bool:
        nonlocal left
        left = missing()
        return not left

    _, waited = wait_for(done, timeout_s, 0.3)
    return left, waited


# --- MQTT progress ---------------------------------------------------------------------------


@dataclass
class Target:
    work_order: str
    line: str
    good: int = 0  # the last value sent
    scrap: int = 0


class Sensors:
    """The lines' sensors: cumulative counters per work order, ``seq`` per line, QoS 1."""

    def __init__(self, rig: Rig, targets: list[Target]) -> None:
        assert rig.broker is not None
        self.pub = Publisher(rig.broker.host, rig.broker.port)
        self.targets = targets
        self.seq: dict[str, int] = {}
        self.sent = 0
        self.stop = threading.Event()

    def _next_seq(self, line: str) -> int:
        self.seq[line] = self.seq.get(line, 0) + 1
        return self.seq[line]

    def states(self, state: str = "running") -> None:
        """One state message per line (a probe whose effect shows in ``GET /lines``)."""
        for line in sorted({t.line for t in self.targets}):
            body = {"seq": self._next_seq(line), "ts": _now(), "state": state}
            self.pub.publish(f"loopline/v1/{SITE}/{line}/state", body)
        self.pub.flush()

    def progress(self, n: int, rate: float, max_s: float | None = None) -> int:
        """Send up to ``n`` progress messages at ``rate`` per second (round robin over the
        work orders, each adding one good unit); stops early on ``stop`` or ``max_s``."""
        began = time.monotonic()
        for i in range(n):
            if self.stop.is_set() or (max_s is not None and time.monotonic() - began >= max_s):
                return i
            self._send(self.targets[self.sent % len(self.targets)])
            ahead = (i + 1) / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
        return n

    def finals_spread(self, duration_s: float, rate: float) -> None:
        """Progress at ``rate`` for ``duration_s``, each work order retiring (getting no more
        messages) at its own moment, spread evenly over the span: the final values of all
        of them are sent at different times, so a loss anywhere in the span shows."""
        began = time.monotonic()
        retire = {
            t.work_order: (k + 1) * duration_s / len(self.targets)
            for k, t in enumerate(self.targets)
        }
        sent = 0
        while (now := time.monotonic() - began) < duration_s and not self.stop.is_set():
            active = [t for t in self.targets if retire[t.work_order] > now]
            if not active:
                break
            self._send(active[sent % len(active)])
            sent += 1
            ahead = sent / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)

    def _send(self, target: Target) -> None:
        target.good += 1
        target.scrap = target.good // 50
        body = {
            "seq": self._next_seq(target.line),
            "ts": _now(),
            "work_order": target.work_order,
            "good": target.good,
            "scrap": target.scrap,
        }
        self.pub.publish(f"loopline/v1/{SITE}/{target.line}/progress", body)
        self.sent += 1

    def close(self) -> None:
        self.pub.close()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def progress_targets(api: Api, ids: list[str]) -> list[Target]:
    targets = []
    for order_id in ids:
        order = api.order(order_id)
        assert order is not None
        for wo in order["work_orders"]:
            targets.append(Target(wo["id"], wo["line"]))
    return targets


def counters(api: Api, ids: list[str]) -> dict[str, tuple[int, int]]:
    """``{work order: (good, scrap)}`` as ``GET /api/v1/orders/{id}`` shows them."""
    out = {}
    for order_id in ids:
        order = api.order(order_id)
        if order is None:
            continue
        for wo in order["work_orders"]:
            out[wo["id"]] = (int(wo["good"]), int(wo["scrap"]))
    return out


def compare(targets: list[Target], seen: dict[str, tuple[int, int]]) -> tuple[int, int, int]:
    """``(units missing, units in excess, work orders that differ)`` against what was sent."""
    missing = excess = differ = 0
    for t in targets:
        good, scrap = seen.get(t.work_order, (0, 0))
        missing += max(0, t.good - good)
        excess += max(0, good - t.good)
        differ += (good, scrap) != (t.good, t.scrap)
    return missing, excess, differ


def wait_counters(
    api: Api, ids: list[str], targets: list[Target], timeout_s: float
) -> tuple[bool, float, tuple[int, int, int]]:
    """Poll until the API shows the last counters sent; ``(consistent, waited, compare)``."""
    last: list[tuple[int, int, int]] = [(0, 0, 0)]

    def ok() -> bool:
        last[0] = compare(targets, counters(api, ids))
        return last[0][2] == 0

    good, waited = wait_for(ok, timeout_s, 0.3)
    if not good:  # the last poll may have failed; read once more for the numbers
        with contextlib.suppress(Exception):
            last[0] = compare(targets, counters(api, ids))
    return bool(good), waited, last[0]


def lines_running(api: Api, lines: set[str]) -> bool:
    return lines <= {ln["id"] for ln in api.get_json("/lines") if ln["state"] == "running"}


def mqtt_ready(
    rig: Rig, n_orders: int, sizes: Sizes
) -> tuple[Api, list[str], list[Target], Sensors]:
    """Processes up, orders planned, and ingest consuming (a state probe came through)."""
    api = rig.start_all()
    ids = seed_orders(api, "M", n_orders, qty=sizes.mqtt_messages * 4 + 1000, timeout_s=60)
    left, _ = wait_promised(api, ids, 90)
    if left:
        raise RuntimeError(f"{len(left)} orders never planned: {sorted(left)[:5]}")
    targets = progress_targets(api, ids)
    sensors = Sensors(rig, targets)
    try:
        sensors.states()
        ok, _ = wait_for(lambda: lines_running(api, {t.line for t in targets}), 60, 0.3)
        if not ok:
            raise RuntimeError("ingest never applied the state probe")
    except BaseException:
        sensors.close()
        raise
    return api, ids, targets, sensors


def dead_letters(rig: Rig, reasons: tuple[str, ...]) -> dict[str, int]:
    rows = rig.sql("select reason, count(*) from dead_letter where source = 'mqtt' group by reason")
    counts = {str(r): int(c) for r, c in rows}
    return {r: counts.get(r, 0) for r in reasons} | {
        k: v for k, v in counts.items() if k not in reasons
    }


def finish_mqtt(
    res: Result,
    rig: Rig,
    api: Api,
    ids: list[str],
    targets: list[Target],
    sizes: Sizes,
    shown: tuple[str, ...] = (),
) -> None:
    consistent, waited, (missing, excess, differ) = wait_counters(
        api, ids, targets, sizes.recover_s
    )
    res.recovery_s, res.recovered = waited, consistent
    res.lost = missing
    res.mismatches = differ
    if excess:
        res.notes.append(f"{excess} units over what was sent")
    # The system's own loss detector: a seq gap it reported (informational: a message
    # that overtook another also opens one, and cumulative counters may mask a loss).
    with contextlib.suppress(Exception):
        gaps = [a for a in api.get_json("/alerts") if a.get("kind") == "mqtt_gap"]
        if gaps:
            res.notes.append(f"seq-gap alerts on {len(gaps)} lines")
    dl = dead_letters(rig, shown)
    if dl:
        res.notes.append("dead letters " + ", ".join(f"{k}={v}" for k, v in sorted(dl.items())))


# --- scenarios -------------------------------------------------------------------------------


def ingest_kill(rig: Rig, sizes: Sizes, res: Result) -> None:
    """kill -9 ingest again and again while a sensor sends QoS 1 progress."""
    api, ids, targets, sensors = mqtt_ready(rig, 12, sizes)
    assert rig.procs is not None
    rng = random.Random(8)
    try:
        span_s = sizes.mqtt_messages / sizes.mqtt_rate
        sender = threading.Thread(
            target=sensors.finals_spread, args=(span_s, sizes.mqtt_rate), daemon=True
        )
        sender.start()
        kills = 0
        deadline = time.monotonic() + sizes.mqtt_messages / sizes.mqtt_rate + 120
        while kills < sizes.ingest_kills and sender.is_alive() and time.monotonic() < deadline:
            # Kill a consumer that is working: wait until it applied something new.
            before = sum(g for g, _ in counters(api, ids).values())
            wait_for(lambda b=before: sum(g for g, _ in counters(api, ids).values()) > b, 20, 0.3)
            time.sleep(rng.uniform(0.1, 0.6))
            if not sender.is_alive():
                break
            rig.procs.kill9("ingest")
            kills += 1
            time.sleep(rng.uniform(0.2, 1.0))
            rig.procs.start("ingest", ["ingest"])
        sender.join(sizes.mqtt_messages / sizes.mqtt_rate + 120)
        sensors.stop.set()
        sensors.pub.flush()
    finally:
        sensors.close()
    res.sent = f"{sensors.sent} msgs, {kills} kill -9"
    finish_mqtt(res, rig, api, ids, targets, sizes)


# Outage traffic (``Sensors.finals_spread``): a counter is cumulative, so only a lost
# final value shows in the end state; with this many work orders retiring one after the
# other, a final value is sent every outage_s / OUTAGE_ORDERS seconds.
OUTAGE_ORDERS = 24
OUTAGE_RATE = 20.0  # messages per second


def redis_outage(rig: Rig, sizes: Sizes, res: Result) -> None:
    """Redis stopped for a while (AOF keeps its data) while progress keeps coming."""
    api, ids, targets, sensors = mqtt_ready(rig, OUTAGE_ORDERS, sizes)
    assert rig.redis is not None
    try:
        sensors.progress(200, 100.0)
        wait_counters(api, ids, targets, 15)
        rig.redis.stop()
        before = sensors.sent
        sensors.finals_spread(sizes.outage_s, OUTAGE_RATE)
        during = sensors.sent - before
        sensors.pub.flush()
        rig.redis.start()
    finally:
        sensors.close()
    res.sent = f"{sensors.sent} msgs, {during} in a {sizes.outage_s:.0f} s outage"
    finish_mqtt(res, rig, api, ids, targets, sizes)


def redis_empty(rig: Rig, sizes: Sizes, res: Result) -> None:
    """Redis restarted with its data wiped (a lost volume): messages must still apply."""
    api, ids, targets, sensors = mqtt_ready(rig, OUTAGE_ORDERS, sizes)
    assert rig.redis is not None
    try:
        sensors.progress(200, 100.0)
        wait_counters(api, ids, targets, 15)
        # Let the worker checkpoint the counters into SQL, as it does every tick.
        time.sleep(2.0)
        rig.redis.stop()
        for path in rig.redis.workdir.iterdir():
            if path.name.startswith(("appendonly", "dump")):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        rig.redis.start()
        before = sensors.sent
        sensors.finals_spread(sizes.outage_s / 2, OUTAGE_RATE)
        after = sensors.sent - before
        sensors.pub.flush()
    finally:
        sensors.close()
    res.sent = f"{sensors.sent} msgs, {after} after the wipe"
    finish_mqtt(res, rig, api, ids, targets, sizes, shown=("unknown_line",))
    # Valid messages refused because the live state forgot the lines: none may be.
    unknown = dead_letters(rig, ("unknown_line", "unknown_work_order"))
    res.mismatches += unknown["unknown_line"] + unknown["unknown_work_order"]


@dataclass
class Expected:
    """The newest version of one order the CRM sent (the truth the store must show)."""

    version: int = 0
    cancelled: bool = False
    qty: int | None = None


def version_qty(version: int) -> int:
    """Each version's quantity is its own, so a stored order shows which version it holds."""
    return 100 + 10 * version


def check_orders(api: Api, expected: dict[str, Expected]) -> tuple[int, int, list[str]]:
    """``(orders behind the newest version, orders showing something else, examples)``."""
    behind = wrong = 0
    examples: list[str] = []
    for order_id, want in expected.items():
        got = api.order(order_id)
        truth = f"v{want.version} {'cancelled' if want.cancelled else f'qty {want.qty}'}"
        if got is None:
            # A cancel that arrived first may leave nothing stored: that is not "open".
            if not want.cancelled:
                behind += 1
                examples.append(f"{order_id} missing, want {truth}")
            continue
        qty = [ln.get("qty") for ln in got.get("lines") or []]
        version, status = int(got.get("version") or 0), got.get("status")
        shown = f"v{version} {status} qty {','.join(map(str, qty))}"
        if version < want.version:
            behind += 1
        elif (
            version != want.version
            or (status == "cancelled") != want.cancelled
            or (not want.cancelled and qty != [want.qty])
        ):
            wrong += 1
        else:
            continue
        examples.append(f"{order_id} {shown}, want {truth}")
    return behind, wrong, examples


def wait_orders(
    api: Api, expected: dict[str, Expected], timeout_s: float
) -> tuple[bool, float, tuple[int, int, list[str]]]:
    """Poll until every order shows its newest version; ``(consistent, waited, check)``."""
    last: list[tuple[int, int, list[str]]] = [(len(expected), 0, [])]

    def ok() -> bool:
        last[0] = check_orders(api, expected)
        return last[0][:2] == (0, 0)

    good, waited = wait_for(ok, timeout_s, 0.3)
    return bool(good), waited, last[0]


class CrmSender:
    """A CRM's webhook queue: events in order, each retried (same webhook-id) until 2xx."""

    def __init__(self, api: Api, deadline: float) -> None:
        self.api = api
        self.deadline = deadline
        self.posts = 0
        self.refused = 0  # non-2xx answers and connection errors (each then retried)
        self.never = 0  # events never accepted before the deadline
        self._lock = threading.Lock()

    def send(self, body: dict[str, Any], webhook_id: str) -> bool:
        status, refused = self.api.send_until_accepted(body, webhook_id, self.deadline)
        ok = status is not None and 200 <= status < 300
        with self._lock:
            self.posts += refused + (1 if ok else 0)
            self.refused += refused
            self.never += not ok
        return ok


def postgres_outage(rig: Rig, sizes: Sizes, res: Result) -> None:
    """PostgreSQL stopped a few seconds while the CRM keeps posting order changes."""
    api = rig.start_all()
    ids = seed_orders(api, "P", 10, qty=500, timeout_s=60)
    expected = {i: Expected(1, False, 500) for i in ids}
    rng = random.Random(5)
    # The CRM's book: new versions of the seeded orders and new orders, in the CRM's order.
    events: list[tuple[str, dict[str, Any]]] = []
    for k in range(sizes.crm_events):
        if k % 4 == 3:
            order_id = f"SO-PN{k:04d}"
            expected[order_id] = Expected()
        else:
            order_id = rng.choice(ids)
        want = expected[order_id]
        want.version += 1
        want.qty = version_qty(want.version)
        events.append(
            (new_webhook_id(), order_body(order_id, want.version, "GEAR-A", want.qty, far_date()))
        )
    # The CRM makes its changes over the 2 s before the outage and the outage itself; each
    # of its queues (one per order, so an order's events stay in order) sends an event when
    # it is due, or at once when overdue because earlier ones waited for a 2xx.
    span_s = 2.0 + sizes.pg_outage_s
    queues: list[list[tuple[float, str, dict[str, Any]]]] = [[], [], [], []]
    for k, (webhook_id, body) in enumerate(events):
        due = k * span_s / len(events)
        queues[int(body["order"]["id"][-4:]) % len(queues)].append((due, webhook_id, body))
    sender = CrmSender(api, time.monotonic() + span_s + sizes.recover_s + 30)
    start = time.monotonic()

    def run(queue: list[tuple[float, str, dict[str, Any]]]) -> None:
        for due, webhook_id, body in queue:
            wait = start + due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            sender.send(body, webhook_id)

    threads = [threading.Thread(target=run, args=(q,), daemon=True) for q in queues]
    for t in threads:
        t.start()
    time.sleep(2.0)
    rig.pg.stop()
    time.sleep(sizes.pg_outage_s)
    rig.pg.start()
    back = time.monotonic()
    for t in threads:
        t.join(max(1.0, sender.deadline - time.monotonic()))
    consistent, _, (behind, wrong, examples) = wait_orders(api, expected, sizes.recover_s)
    res.notes += examples[:2]
    res.sent = f"{len(events)} events, {sizes.pg_outage_s:.0f} s outage"
    res.lost = behind + sender.never
    res.mismatches = wrong
    res.recovery_s, res.recovered = time.monotonic() - back, consistent
    res.notes.append(f"{sender.refused} non-2xx/errors retried")
    if sender.never:
        res.notes.append(f"{sender.never} never accepted")


def worker_kill_outbox(rig: Rig, sizes: Sizes, res: Result) -> None:
    """kill -9 the worker while it is delivering feedback to the CRM; start another."""
    assert rig.crm is not None and rig.procs is not None
    api = rig.start_all()
    posted: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 90

    def post(numbers: list[int]) -> None:
        for i in numbers:
            order_id = f"SO-O{i:04d}"
            body = order_body(order_id, 1, SKUS[i % len(SKUS)], 300 + i, far_date(20 + i), i)
            status, _ = api.send_until_accepted(body, new_webhook_id(), deadline)
            if status is not None and status < 300:
                with lock:
                    posted.append(order_id)

    # A burst of new orders: each owes the CRM its promise, and the CRM answers slowly.
    numbers = list(range(sizes.outbox_orders))
    threads = [threading.Thread(target=post, args=(numbers[k::4],), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(100)
    # Kill while a delivery is in flight: the worker then holds claimed outbox rows.
    crm = rig.crm
    in_flight, _ = wait_for(lambda: crm.busy > 0 and len(crm.snapshot()) >= 3, 90, 0.02)
    if not in_flight:
        raise RuntimeError("no feedback reached the CRM within 90 s")
    rig.procs.kill9("worker")
    killed_at = time.time()
    time.sleep(1.0)
    rig.procs.start("worker", ["worker"])
    restarted_at = time.time()

    def owed() -> list[tuple[str, datetime]]:
        return [
            (str(w), _utc(c)) for w, c in rig.sql("select webhook_id, created_at from outbox_event")
        ]

    def delivered() -> dict[str, float]:
        first: dict[str, float] = {}
        for d in crm.snapshot():
            if 200 <= d.status < 300:
                first.setdefault(d.webhook_id, d.at)
        return first

    def all_delivered() -> bool:
        rows = owed()
        got = delivered()
        promised = {o["id"]: o.get("promised_date") for o in api.orders()}
        return (
            bool(rows) and all(w in got for w, _ in rows) and all(promised.get(o) for o in posted)
        )

    consistent, waited = wait_for(all_delivered, sizes.outbox_recover_s, 0.5)
    rows, got = owed(), delivered()
    res.lost = sum(w not in got for w, _ in rows)
    counts: dict[str, int] = {}
    for d in crm.snapshot():
        if 200 <= d.status < 300:
            counts[d.webhook_id] = counts.get(d.webhook_id, 0) + 1
    res.dups = sum(c - 1 for c in counts.values())
    # The CRM's newest word on each order must be the promise the API shows.
    told: dict[str, Any] = {}
    for d in crm.snapshot():
        data = d.data.get("data", {})
        if 200 <= d.status < 300 and d.data.get("type") == "order.updated":
            told[data.get("order_id")] = data.get("promised_date")
    shown = {o["id"]: o.get("promised_date") for o in api.orders()}
    res.mismatches = sum(told.get(o) != shown.get(o) for o in posted)
    now = time.time()
    gaps = []
    for webhook_id, created in rows:
        owed_at = created.timestamp()
        at = got.get(webhook_id, now)
        if at > killed_at:
            owed_at = max(owed_at, restarted_at)
        gaps.append(at - owed_at)
    longest = max(gaps, default=0.0)
    # How long the crash stopped delivery: from the kill to the first delivery after it
    # (the replacement's start included). The longest wait of one event also counts its
    # queueing behind the others at the CRM's pace, so it is reported beside, not judged.
    # (A request the dead worker had already sent may still be answered: it does not count.)
    sent_after = [d.at for d in crm.snapshot() if 200 <= d.status < 300 and d.arrived > killed_at]
    stalled = (min(sent_after) if sent_after else now) - killed_at
    res.sent = f"{len(posted)} orders, {len(rows)} owed events"
    res.recovery_s, res.recovered = waited, bool(consistent)
    res.notes.append(
        f"delivery stalled {stalled:.1f} s after the kill (target <= 10 s); longest wait of "
        f"one event {longest:.1f} s (CRM answers in {rig.crm_delay_s:g} s each)"
    )
    if stalled > 10:
        res.notes.append("over target")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def worker_kill_replan(rig: Rig, sizes: Sizes, res: Result) -> None:
    """kill -9 the worker right after a burst of new orders; the next one must plan them."""
    assert rig.procs is not None
    api = rig.start_all()
    ok, _ = wait_for(lambda: api.get_json("/plan"), 90, 0.3)  # the worker's first plan
    if not ok:
        raise RuntimeError("the worker made no plan")
    rng = random.Random(3)
    all_ids: list[str] = []
    worst, recovered, refused = 0.0, True, 0
    for round_no in range(sizes.replan_rounds):
        ids = [f"SO-R{round_no}{i:04d}" for i in range(sizes.replan_burst)]
        deadline = time.monotonic() + 60

        def post(chunk: list[str], deadline: float) -> None:
            nonlocal refused
            for order_id in chunk:
                n = int(order_id[-4:])
                body = order_body(order_id, 1, SKUS[n % len(SKUS)], 200 + n, far_date(30 + n), n)
                status, bad = api.send_until_accepted(body, new_webhook_id(), deadline)
                refused += bad

        threads = [
            threading.Thread(target=post, args=(ids[k::4], deadline), daemon=True) for k in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        all_ids += ids
        # Right after the burst: the worker is taking the requests or planning them.
        time.sleep(0.2 + rng.uniform(0.0, 0.4))
        rig.procs.kill9("worker")
        time.sleep(0.5)
        rig.procs.start("worker", ["worker"])
        left, waited = wait_promised(api, ids, sizes.recover_s)
        worst = max(worst, waited)
        recovered &= not left
        res.lost += len(left)
    res.sent = f"{len(all_ids)} orders, {sizes.replan_rounds} kill -9"
    res.recovery_s, res.recovered = worst, recovered
    if refused:
        res.notes.append(f"{refused} non-2xx retried")


def crm_permutations(rig: Rig, sizes: Sizes, res: Result) -> None:
    """8 concurrent senders, random versions of several orders, duplicated and shuffled."""
    api = rig.start_all()
    rng = random.Random(88)
    expected: dict[str, Expected] = {}
    posts: list[tuple[str, dict[str, Any]]] = []
    events = 0
    for k in range(sizes.perm_orders):
        order_id = f"SO-X{k:04d}"
        top = rng.randint(max(2, sizes.perm_versions // 2), sizes.perm_versions)
        cancel_last = rng.random() < 0.35
        for version in range(1, top + 1):
            if version == top and cancel_last:
                body = cancel_body(order_id, version)
            else:
                body = order_body(
                    order_id, version, "GEAR-A", version_qty(version), far_date(20 + version), k
                )
            webhook_id = new_webhook_id()
            events += 1
            # A CRM re-sends: the same event, the same webhook-id, one to three times.
            posts += [(webhook_id, body)] * rng.randint(1, 3)
        expected[order_id] = Expected(top, cancel_last, None if cancel_last else version_qty(top))
    rng.shuffle(posts)
    sender = CrmSender(api, time.monotonic() + 120)
    barrier = threading.Barrier(8)

    def run(chunk: list[tuple[str, dict[str, Any]]]) -> None:
        barrier.wait(30)
        for webhook_id, body in chunk:
            sender.send(body, webhook_id)

    threads = [threading.Thread(target=run, args=(posts[k::8],), daemon=True) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    sent_at = time.monotonic()
    consistent, _, (behind, wrong, examples) = wait_orders(api, expected, sizes.recover_s)
    res.notes += examples[:2]
    res.sent = f"{len(posts)} posts of {events} events, {len(expected)} orders"
    res.dups = len(posts) - events
    res.lost = sender.never
    res.mismatches = behind + wrong
    res.recovery_s, res.recovered = time.monotonic() - sent_at, consistent
    if sender.refused:
        res.notes.append(f"{sender.refused} non-2xx/errors retried")


SCENARIOS: dict[str, tuple[Callable[[Rig, Sizes, Result], None], float]] = {
    # name: (scenario, the local CRM's answer delay in seconds)
    "ingest-kill": (ingest_kill, 0.0),
    "redis-outage": (redis_outage, 0.0),
    "redis-empty": (redis_empty, 0.0),
    "postgres-outage": (postgres_outage, 0.0),
    "worker-kill-outbox": (worker_kill_outbox, 0.3),
    "worker-kill-replan": (worker_kill_replan, 0.0),
    "crm-permutations": (crm_permutations, 0.0),
}


# --- the run ---------------------------------------------------------------------------------


def prepare_template(pg: PostgresServer, workdir: Path) -> str:
    """A database holding the migrated schema and the example factory (``import-factory``)."""
    name = f"chaos_template_{uuid.uuid4().hex[:8]}"
    pg.create_database(name)
    env = loopline_env(
        database_url=pg.url_for(name),
        redis_url="redis://127.0.0.1:1/0",  # import-factory touches no live state
        mqtt_url=None,
        crm_url=None,
        secret=new_webhook_secret(),
        data_dir=workdir,
    )
    import_factory(env)
    return name


def print_table(results: list[Result]) -> None:
    headers = ["scenario", "sent", "lost", "dups", "mismatch", "recovery s", "notes"]
    rows = [
        [
            r.name,
            r.sent,
            str(r.lost) if r.error is None else "?",
            "-" if r.dups is None else str(r.dups),
            str(r.mismatches) if r.error is None else "?",
            r.recovery_text(),
            r.error or "; ".join(r.notes),
        ]
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    for row in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts and deadlines")
    parser.add_argument(
        "--logs", type=Path, help="keep each scenario's process and server logs under this dir"
    )
    parser.add_argument(
        "--only", action="append", choices=sorted(SCENARIOS), help="run only this (repeatable)"
    )
    args = parser.parse_args()
    sizes = Sizes.of(args.quick)
    names = [n for n in SCENARIOS if not args.only or n in args.only]
    began = time.monotonic()
    results: list[Result] = []
    workdir = Path(tempfile.mkdtemp(prefix="loopline-chaos-"))
    print(
        f"Loopline chaos on real PostgreSQL, Redis (AOF) and Mosquitto (persistent), "
        f"serve/ingest/worker as processes, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        f"{', quick' if args.quick else ''}",
        flush=True,
    )
    try:
        with terminated_on_sigterm(), PostgresServer(port=free_port()) as pg:
            template = prepare_template(pg, workdir)
            for name in names:
                scenario, crm_delay_s = SCENARIOS[name]
                res = Result(name)
                t0 = time.monotonic()
                try:
                    keep = args.logs / name if args.logs else None
                    with Rig(pg, template, workdir, crm_delay_s=crm_delay_s, keep_logs=keep) as rig:
                        scenario(rig, sizes, res)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - report it, go on with the others
                    res.error = f"{type(exc).__name__}: {str(exc)[:300]}"
                results.append(res)
                if args.logs:
                    pg.save_log(args.logs)
                print(
                    f"  {name}: done in {time.monotonic() - t0:.0f} s "
                    f"(lost {res.lost}, mismatches {res.mismatches}"
                    f"{', error' if res.error else ''})",
                    flush=True,
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print_table(results)
    lost = sum(r.lost for r in results)
    mismatches = sum(r.mismatches for r in results)
    errors = sum(r.error is not None for r in results)
    print(f"(run took {time.monotonic() - began:.0f} s)")
    print(
        f"chaos: {len(results)} scenarios, lost={lost}, mismatches={mismatches}"
        + (f", errors={errors}" if errors else "")
    )
    return 1 if lost or mismatches or errors else 0


if __name__ == "__main__":
    sys.exit(main())
