"""A worker killed with SIGKILL while it holds outbox claims or the duty lock delays the
other worker by seconds, not minutes (ISSUE8 item 8): two real `loopline worker`
processes on real PostgreSQL and Redis, a local HTTP server playing the CRM.

The takeover times are printed and written to the artifacts dir (``takeover.json``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from loopline.models.db import make_engine, make_sessions, migrate, transaction
from loopline.models.events import parse_crm_event
from loopline.models.loop import DUTY_LOCK, REPLAN_QUEUE
from loopline.models.orders import apply_crm_event
from loopline.models.outbox import enqueue
from loopline.models.records import OutboxEvent, PlanRevision
from loopline.settings import new_webhook_secret
from tests.factories import order_event, seed_small_factory
from tests.stack import wait_until

LOOPLINE = [sys.executable, "-m", "loopline.cli"]
ROOT = Path(__file__).resolve().parents[1]
# The requirement is 10 s; the bound leaves room for a loaded 2-core machine and is still
# far below what a crash cost before (a 150 s claim lease, a 120 s duty lock).
TAKEOVER_BOUND_S = 40.0
STARTUP_S = 120.0


@dataclass
class Arrival:
    webhook_id: str
    at: float  # time.monotonic()
    held: bool


@dataclass
class HoldingCrm:
    """The CRM's webhook endpoint: answers 204, except that the first POST of each webhook
    id in ``hold`` is held unanswered (a delivery in flight) until ``release``."""

    hold: set[str] = field(default_factory=set)
    arrivals: list[Arrival] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        crm = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("content-length") or 0))
                webhook_id = self.headers.get("webhook-id", "")
                with crm._lock:
                    seen = any(a.webhook_id == webhook_id for a in crm.arrivals)
                    held = webhook_id in crm.hold and not seen
                    crm.arrivals.append(Arrival(webhook_id, time.monotonic(), held))
                if held:
                    crm.released.wait(60)
                    return  # no answer: the sender is gone by now
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}/crm"

    def stop(self) -> None:
        self.released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def got(self, webhook_id: str, *, held: bool | None = None) -> list[Arrival]:
        with self._lock:
            return [
                a
                for a in self.arrivals
                if a.webhook_id == webhook_id and (held is None or a.held == held)
            ]


@dataclass
class Plant:
    sessions: sessionmaker[Session]
    env: dict[str, str]
    crm: HoldingCrm
    redis: redis.Redis
    logs: Path
    procs: dict[int, subprocess.Popen] = field(default_factory=dict)

    def spawn(self, name: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            LOOPLINE + ["worker"],
            env=self.env,
            cwd=ROOT,
            stdout=(self.logs / f"{name}.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[proc.pid] = proc
        return proc

    def enqueue(self, order_id: str) -> str:
        with transaction(self.sessions) as session:
            row = enqueue(session, event_type="order.updated", order_id=order_id, payload={})
            session.flush()
            return row.webhook_id

    def row(self, webhook_id: str) -> OutboxEvent:
        with self.sessions() as session:
            return session.scalar(select(OutboxEvent).where(OutboxEvent.webhook_id == webhook_id))

    def wait_both_relays(self) -> None:
        """Until both workers have delivered something (so both are up and relaying)."""
        want = set(self.procs)
        deadline = time.monotonic() + STARTUP_S
        delivered_by: set[int] = set()
        n = 0
        while not want <= delivered_by:
            assert time.monotonic() < deadline, f"relays up: {delivered_by} of {want}"
            n += 1
            self.enqueue(f"PROBE-{n}")
            time.sleep(0.3)
            with self.sessions() as session:
                delivered_by = {
                    _pid(c)
                    for c in session.scalars(
                        select(OutboxEvent.claimed_by).where(OutboxEvent.status == "delivered")
                    )
                    if c
                }

    def log_text(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-4000:]}" for p in self.logs.glob("*.log"))


def _pid(holder: str) -> int:
    """The process id in a holder name ``host:pid:...``."""
    return int(holder.rsplit(":", 2)[1])


@pytest.fixture
def plant(tmp_path, postgres_url, redis_server) -> Iterator[Plant]:
    engine = make_engine(postgres_url)
    migrate(engine)
    sessions = make_sessions(engine)
    with transaction(sessions) as session:
        seed_small_factory(session)
    with transaction(sessions) as session:
        apply_crm_event(
            session,
            event=parse_crm_event(order_event("SO-1", 1, [("P1", 100)])),
            source="canonical",
            webhook_id="SO-1-1",
            raw="{}",
            actor="crm",
        )
    client = redis.Redis.from_url(redis_server, decode_responses=True)
    client.flushdb()  # the session's Redis, shared with other tests
    crm = HoldingCrm()
    url = crm.start()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_")},
        "LOOPLINE_DATABASE_URL": postgres_url,
        "LOOPLINE_REDIS_URL": redis_server,
        "LOOPLINE_CRM_SECRET": new_webhook_secret(),
        "LOOPLINE_CRM_URL": url,
        "LOOPLINE_API_TOKEN": "crash-token",
        "LOOPLINE_REPLAN_DEBOUNCE_MS": "100",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    p = Plant(sessions, env, crm, client, logs)
    try:
        yield p
    finally:
        for proc in p.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        crm.stop()
        client.flushdb()
        client.close()
        engine.dispose()


def _report(artifacts_dir: Path, name: str, seconds: float) -> None:
    path = artifacts_dir / "takeover.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures[name] = round(seconds, 2)
    path.write_text(json.dumps(figures, indent=2))
    print(f"\n{name}: {seconds:.2f} s")


@pytest.mark.timeout(300)
def test_a_killed_worker_delays_outbox_delivery_by_seconds(plant, artifacts_dir):
    for name in ("worker-a", "worker-b"):
        plant.spawn(name)
    plant.wait_both_relays()
    held = plant.enqueue("SO-HELD")
    plant.crm.hold.add(held)

    # Whichever worker sends it holds the claim while the CRM keeps the POST open.
    wait_until(lambda: plant.crm.got(held, held=True), timeout=30)
    holder = plant.row(held).claimed_by
    assert holder, "the sender holds a claim"
    victim = plant.procs[_pid(holder)]
    victim.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    victim.wait(10)
    stalled = plant.row(held)
    assert (stalled.status, stalled.attempts, stalled.claimed_by) == ("pending", 0, holder)

    [survivor] = [p for pid, p in plant.procs.items() if pid != victim.pid]
    retry = wait_until(
        lambda: plant.crm.got(held, held=False), timeout=TAKEOVER_BOUND_S + 20, step=0.05
    )[0]
    took = retry.at - killed_at
    _report(artifacts_dir, "outbox_delivery_after_sigkill_s", took)
    wait_until(lambda: plant.row(held).status == "delivered", timeout=10)
    done = plant.row(held)
    assert _pid(done.claimed_by) == survivor.pid and done.webhook_id == held
    assert took <= TAKEOVER_BOUND_S, plant.log_text()


@pytest.mark.timeout(300)
def test_a_killed_worker_holding_the_duty_lock_stalls_replans_by_seconds(plant, artifacts_dir):
    for name in ("worker-a", "worker-b"):
        plant.spawn(name)
    plant.wait_both_relays()
    wait_until(lambda: _revisions(plant.sessions) >= 1, timeout=STARTUP_S)

    # Hold the orders table: the next duty (a sweep or a replan) blocks in SQL while it
    # holds the duty lock, for as long as this transaction lasts.
    blocker = plant.sessions()
    blocker.execute(text("LOCK TABLE sales_order IN ACCESS EXCLUSIVE MODE"))
    try:
        holder = wait_until(lambda: _blocked_holder(plant), timeout=30, step=0.05)
        time.sleep(1.0)
        assert plant.redis.get(DUTY_LOCK) == holder  # kept, not expired nor replaced
        victim = plant.procs[_pid(holder)]
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        victim.wait(10)
        before = _revisions(plant.sessions, blocker)
    finally:
        blocker.rollback()
        blocker.close()
    plant.redis.rpush(REPLAN_QUEUE, "after the crash")
    [survivor] = [p for pid, p in plant.procs.items() if pid != victim.pid]

    taken = None
    deadline = killed_at + TAKEOVER_BOUND_S + 20
    while time.monotonic() < deadline:
        value = plant.redis.get(DUTY_LOCK)
        if taken is None and value and _pid(value) == survivor.pid:
            taken = time.monotonic() - killed_at
        if _revisions(plant.sessions) > before:
            break
        time.sleep(0.01)
    replanned = time.monotonic() - killed_at
    if taken is not None:
        _report(artifacts_dir, "duty_lock_taken_after_sigkill_s", taken)
    _report(artifacts_dir, "replan_after_sigkill_s", replanned)
    assert _revisions(plant.sessions) > before, plant.log_text()
    assert replanned <= TAKEOVER_BOUND_S, plant.log_text()


def _revisions(sessions: sessionmaker[Session], session: Session | None = None) -> int:
    if session is not None:
        return int(session.scalar(select(func.count(PlanRevision.id))) or 0)
    with sessions() as s:
        return int(s.scalar(select(func.count(PlanRevision.id))) or 0)


def _blocked_holder(plant: Plant) -> str | None:
    """The duty lock's holder once a worker waits on the locked table while holding it."""
    holder = plant.redis.get(DUTY_LOCK)
    if not holder:
        return None
    with plant.sessions() as session:
        waiting = session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return holder if waiting else None
