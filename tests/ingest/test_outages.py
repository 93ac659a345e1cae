"""Ingest under store outages, on real Mosquitto, Redis and PostgreSQL: QoS 1 progress sent
while Redis or PostgreSQL is down is held unacked and applied when the store returns;
nothing is lost, nothing becomes a dead letter because a store was away (ISSUE8 item 5)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from loopline.ingest.mqtt.consumer import MqttConsumer
from loopline.ingest.mqtt.publisher import LinePublisher
from loopline.ingest.shopfloor import ShopfloorHandler
from loopline.models.clock import Clock
from loopline.models.db import make_engine, make_sessions, migrate, transaction
from loopline.models.events import parse_crm_event
from loopline.models.live import LiveState
from loopline.models.live_store import open_live_store
from loopline.models.orders import apply_crm_event
from loopline.models.records import DeadLetter
from loopline.models.replan import sync_live
from tests.factories import order_event, seed_small_factory
from tests.ingest.mqtt.conftest import wait_for
from tests.servers import PostgresServer, RedisServer

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
ORDERS = 30
ROUNDS = 10  # progress messages per work order and phase
OUTAGE_S = 4.0
FAST = {
    "reconnect_min_s": 0.1,
    "reconnect_max_s": 0.5,
    "store_retry_min_s": 0.1,
    "store_retry_max_s": 1.0,
}


def _seeded(url: str) -> sessionmaker[Session]:
    """Migrate the database at ``url`` and seed ORDERS open orders of one work order each."""
    engine = make_engine(url)
    migrate(engine)
    sessions = make_sessions(engine)
    with transaction(sessions) as s:
        seed_small_factory(s)
        for n in range(1, ORDERS + 1):
            apply_crm_event(
                s,
                event=parse_crm_event(order_event(f"SO-{n}", lines=[("P1", 1000)])),
                source="canonical",
                webhook_id=f"w{n}",
                raw="{}",
                actor="crm",
            )
    return sessions


@pytest.fixture
def pg_sessions(postgres_url: str) -> Iterator[sessionmaker[Session]]:
    """A seeded PostgreSQL database with ORDERS open orders of one work order each."""
    sessions = _seeded(postgres_url)
    yield sessions
    sessions.kw["bind"].dispose()


def _redis(**extra: str) -> Iterator[RedisServer]:
    args = [a for k, v in extra.items() for a in (f"--{k}", v)]
    server = RedisServer(extra_args=args)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def aof_redis() -> Iterator[RedisServer]:
    """A Redis of this test alone that keeps its data over a restart (AOF, as deployed)."""
    yield from _redis(appendonly="yes", appendfsync="always")


@pytest.fixture
def bare_redis() -> Iterator[RedisServer]:
    """A Redis of this test alone that restarts empty."""
    yield from _redis()


class Ingest:
    """The real ingest path: consumer + shop-floor handler, on the given stores."""

    def __init__(self, broker_url: str, sessions: sessionmaker[Session], redis_url: str) -> None:
        self.store = open_live_store(redis_url)
        self.live = LiveState(self.store.sync)
        self.handler = ShopfloorHandler(sessions, self.live, Clock())
        self.consumer = MqttConsumer(
            broker_url,
            f"outage-{uuid.uuid4().hex[:8]}",
            self.handler,
            on_poison=self.handler.poison,
            **FAST,  # type: ignore[arg-type]
        )

    def __enter__(self) -> Ingest:
        self.consumer.start()
        assert wait_for(lambda: self.consumer.subscribed, 10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.consumer.stop(timeout=5)
        self.store.sync.close()


class Line:
    """Publishes cumulative progress for work orders on L1 with one running seq."""

    def __init__(self, broker_url: str) -> None:
        self.pub = LinePublisher(broker_url, f"line-{uuid.uuid4().hex[:8]}")
        self.pub.start()
        self.seq = 0
        self.sent: dict[str, int] = {}

    def send(self, orders: range, rounds: int = ROUNDS, pause_s: float = 0.0) -> None:
        for r in range(rounds):
            for n in orders:
                wo = f"WO-{n}-1"
                self.seq += 1
                self.sent[wo] = self.sent.get(wo, 0) + 3
                self.pub.progress("s1", "L1", self.seq, T0, wo, self.sent[wo], r % 2)
            time.sleep(pause_s)
        assert self.pub.flush(10)

    def close(self) -> None:
        self.pub.stop(timeout=2)


def _counters(live: LiveState) -> dict[str, int]:
    wos = live.get_many("work_order", [f"WO-{n}-1" for n in range(1, ORDERS + 1)])
    return {w["id"]: int(w.get("good") or 0) for w in wos if w is not None}


def _dead_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(DeadLetter)) or 0)


def _outage(stop: Callable[[], None], start: Callable[[], None], line: Line) -> float:
    """Stop a store, publish to work orders 11..30 while it is down, start it again."""
    stop()
    began = time.monotonic()
    line.send(range(11, ORDERS + 1), pause_s=OUTAGE_S / ROUNDS / 2)
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - began)))
    start()
    return time.monotonic() - began


def test_redis_outage_loses_nothing(mqtt_broker, pg_sessions, aof_redis: RedisServer) -> None:
    line = Line(mqtt_broker.url)
    with Ingest(mqtt_broker.url, pg_sessions, aof_redis.url) as ingest:
        with pg_sessions() as s:
            sync_live(s, ingest.live, now=T0)
        try:
            line.send(range(1, 11))
            assert wait_for(lambda: _counters(ingest.live).get("WO-10-1") == line.sent["WO-10-1"])
            down_s = _outage(aof_redis.stop, aof_redis.restart, line)
            assert down_s >= OUTAGE_S
            line.send(range(1, 11))  # after the outage, the first ten go on
            assert wait_for(lambda: _counters(ingest.live) == line.sent, 30), (
                _counters(ingest.live),
                line.sent,
            )
            assert ingest.consumer.stats()["store_retries"] > 0  # it was held, not dropped
            assert wait_for(lambda: ingest.consumer.stats()["acked"] >= line.seq)
            assert ingest.consumer.stats()["poisoned"] == 0
        finally:
            line.close()
    assert _dead_count(pg_sessions) == 0
    assert ingest.handler.rebuilds == 0  # AOF kept the live model


def test_redis_restarted_empty_is_rebuilt_from_sql(
    mqtt_broker, pg_sessions, bare_redis: RedisServer
) -> None:
    line = Line(mqtt_broker.url)
    with Ingest(mqtt_broker.url, pg_sessions, bare_redis.url) as ingest:
        with pg_sessions() as s:
            sync_live(s, ingest.live, now=T0)
        try:
            line.send(range(1, 11), rounds=2)
            assert wait_for(lambda: _counters(ingest.live).get("WO-10-1") == line.sent["WO-10-1"])
            _outage(bare_redis.stop, bare_redis.restart, line)  # comes back with nothing
            assert wait_for(lambda: _counters(ingest.live).keys() >= {"WO-30-1"}, 30)
            line.send(range(1, 11), rounds=2)
            assert wait_for(lambda: _counters(ingest.live) == line.sent, 30), (
                _counters(ingest.live),
                line.sent,
            )
        finally:
            line.close()
    assert _dead_count(pg_sessions) == 0  # no unknown_line / unknown_work_order
    assert ingest.handler.rebuilds == 1
    assert set(ingest.live.ids("order")) == {f"SO-{n}" for n in range(1, ORDERS + 1)}
    assert ingest.live.ids("line") == ["L1", "L2"]


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test alone, to stop and start."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


def test_postgres_outage_loses_no_message_and_no_dead_letter(
    mqtt_broker, own_postgres: PostgresServer, redis_server: str
) -> None:
    url = own_postgres.url_for(own_postgres.create_database())
    sessions = _seeded(url)
    live = LiveState(open_live_store(redis_server).sync)
    live.redis.flushdb()
    with sessions() as s:
        sync_live(s, live, now=T0)
    line = Line(mqtt_broker.url)
    bad = 0
    try:
        with Ingest(mqtt_broker.url, sessions, redis_server) as ingest:
            line.send(range(1, 11), rounds=2)
            assert wait_for(lambda: _counters(ingest.live).get("WO-10-1") == line.sent["WO-10-1"])

            def bad_while_down() -> None:
                # Dead letters to be stored while PostgreSQL is away.
                nonlocal bad
                for n in range(20):
                    line.pub.progress("s1", "L2", n + 1, T0, f"WO-NOPE-{n}", 1, 0)
                    bad += 1
                line.pub.publish("loopline/v1/s1/L2/progress", b"not json")
                bad += 1

            def stop() -> None:
                own_postgres.stop()
                bad_while_down()

            _outage(stop, own_postgres.restart, line)
            assert wait_for(lambda: _counters(ingest.live) == line.sent, 30), (
                _counters(ingest.live),
                line.sent,
            )
            assert wait_for(lambda: _dead_count(sessions) == bad, 30), _dead_count(sessions)
            assert ingest.consumer.stats()["store_retries"] > 0
            assert ingest.consumer.stats()["poisoned"] == 0
    finally:
        line.close()
        sessions.kw["bind"].dispose()
        live.redis.flushdb()
    with sessions() as s:
        reasons = set(s.scalars(select(DeadLetter.reason)))
    assert reasons == {"unknown_work_order", "invalid_json"}
