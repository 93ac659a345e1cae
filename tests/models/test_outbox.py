"""The outbox relay against a real local HTTP server playing the CRM (no sleeping: a fake now)."""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

from loopline.models.db import make_engine, make_sessions, migrate, transaction
from loopline.models.outbox import (
    CLAIM_CHUNK,
    LEASE_S,
    UNREACHABLE_KEY,
    OutboxRelay,
    enqueue,
    envelope,
    requeue_dead,
)
from loopline.models.records import Alert, OutboxEvent
from loopline.settings import new_webhook_secret
from loopline.simulators.crm import CrmFeedbackServer
from tests import factories

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


class FakeClock:
    """The relay's scheduling clock, moved by hand."""

    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def db(tmp_path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    migrate(engine)
    yield make_sessions(engine)
    engine.dispose()


@pytest.fixture
def secret() -> str:
    return new_webhook_secret()


@pytest.fixture
def crm(secret) -> Iterator[CrmFeedbackServer]:
    with CrmFeedbackServer(secret) as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def relay_for(db, url: str, secret: str, clock: FakeClock | None = None, **kw) -> OutboxRelay:
    """A relay with a fresh install's retry settings (Settings' defaults), over ``kw``."""
    base = factories.settings()
    kw = {
        "max_attempts": base.outbox_max_attempts,
        "backoff_base_s": base.outbox_backoff_base_s,
        "backoff_max_s": base.outbox_backoff_max_s,
        "timeout_s": 2.0,
        "rng": random.Random(1),
        **kw,
    }
    if clock is not None:
        kw["now"] = clock
    return OutboxRelay(db, url=url, secret=secret, **kw)


def add(db, order_id: str | None = "SO-1", clock: FakeClock | None = None, **payload) -> str:
    with transaction(db) as session:
        row = enqueue(session, event_type="order.updated", order_id=order_id, payload=payload)
        if clock is not None:
            row.created_at = row.next_attempt_at = clock()
        session.flush()
        return row.webhook_id


def row(db, webhook_id: str) -> OutboxEvent:
    with db() as session:
        return session.scalar(select(OutboxEvent).where(OutboxEvent.webhook_id == webhook_id))


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/crm"  # nothing listens there now


def test_enqueue_joins_the_callers_transaction(db):
    with pytest.raises(RuntimeError), transaction(db) as session:
        enqueue(session, event_type="order.updated", order_id="SO-1", payload={})
        raise RuntimeError("the change failed")
    with db() as session:
        assert session.scalars(select(OutboxEvent)).all() == []
    webhook_id = add(db, promised_date="2026-12-09")
    assert re.fullmatch(r"msg_[0-9a-f]{32}", webhook_id)
    stored = row(db, webhook_id)
    assert (stored.status, stored.attempts, stored.payload) == (
        "pending",
        0,
        {"promised_date": "2026-12-09"},
    )


def test_envelope_shape():
    body = json.loads(envelope("order.updated", T0, {"order_id": "SO-1"}))
    assert body == {
        "type": "order.updated",
        "occurred_at": "2026-12-01T08:00:00Z",
        "data": {"order_id": "SO-1"},
    }


def test_delivered_and_the_signature_verifies(db, crm, secret, clock):
    webhook_id = add(db, clock=clock, order_id="SO-1", promised_date="2026-12-09")
    with relay_for(db, crm.url, secret, clock) as relay:
        assert relay.deliver_due() == 1
    [delivery] = crm.received
    assert delivery.verified and delivery.webhook_id == webhook_id
    Webhook(secret).verify(delivery.body, delivery.headers)  # raises if not
    assert delivery.json() == {
        "type": "order.updated",
        "occurred_at": "2026-12-01T08:00:00Z",
        "data": {"promised_date": "2026-12-09"},
    }
    assert delivery.headers["content-type"] == "application/json"
    stored = row(db, webhook_id)
    assert (stored.status, stored.delivered_at, stored.attempts) == ("delivered", T0, 0)


def test_nothing_due_sends_nothing(db, crm, secret, clock):
    add(db, clock=clock)
    clock.advance(-60)  # the row is due in a minute
    with relay_for(db, crm.url, secret, clock) as relay:
        assert relay.deliver_due() == 0
    assert crm.received == []


def test_retries_keep_the_webhook_id_then_succeed(db, crm, secret, clock):
    webhook_id = add(db, clock=clock, status="late")
    crm.fail_next(2, status=503)
    relay = relay_for(db, crm.url, secret, clock, backoff_base_s=10, backoff_max_s=100)

    assert relay.deliver_due() == 0
    first = row(db, webhook_id)
    assert first.status == "pending" and first.attempts == 1 and "503" in first.last_error
    assert T0 + timedelta(seconds=5) <= first.next_attempt_at <= T0 + timedelta(seconds=10)
    assert relay.deliver_due() == 0 and len(crm.received) == 1  # not due yet: no request

    clock.advance(10)
    assert relay.deliver_due() == 0
    second = row(db, webhook_id)
    assert second.attempts == 2
    assert (
        clock() + timedelta(seconds=10) <= second.next_attempt_at <= clock() + timedelta(seconds=20)
    )

    clock.advance(20)
    assert relay.deliver_due() == 1
    relay.close()
    assert [d.webhook_id for d in crm.received] == [webhook_id] * 3
    assert all(d.verified for d in crm.received)
    assert [d.status for d in crm.received] == [503, 503, 204]
    done = row(db, webhook_id)
    assert done.status == "delivered" and done.attempts == 2


def test_backoff_is_exponential_jittered_and_capped(db, secret, clock):
    relay = relay_for(db, "http://127.0.0.1:9", secret, clock, backoff_base_s=1, backoff_max_s=30)
    for attempts, ceiling in [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (20, 30)]:
        waits = [relay.backoff_s(attempts) for _ in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(set(waits)) > 1  # jittered
    relay.close()


def test_dead_after_max_attempts_opens_an_alert_then_a_success_resolves_it(db, crm, secret, clock):
    webhook_id = add(db, clock=clock)
    down = relay_for(db, closed_port_url(), secret, clock, max_attempts=3, backoff_max_s=5)
    for _ in range(3):
        assert down.deliver_due() == 0
        clock.advance(10)
    down.close()
    dead = row(db, webhook_id)
    assert dead.status == "dead" and dead.attempts == 3 and "Connect" in dead.last_error
    with db() as session:
        [alert] = session.scalars(select(Alert)).all()
    assert (alert.key, alert.kind, alert.severity, alert.role) == (
        UNREACHABLE_KEY,
        "crm_unreachable",
        "critical",
        "it",
    )
    assert (alert.entity, alert.entity_id, alert.status) == ("crm", "127.0.0.1", "open")
    assert alert.details["dead_events"] == 1

    # A dead row is not retried by itself ...
    with relay_for(db, crm.url, secret, clock) as up:
        assert up.deliver_due() == 0
        # ... but the next event that gets through resolves the alert.
        add(db, order_id="SO-2", clock=clock)
        assert up.deliver_due() == 1
    with db() as session:
        assert session.scalar(select(Alert.status)) == "resolved"
        # Once the CRM is back, dead events can be given another go.
        assert requeue_dead(session, now=clock()) == 1
        session.commit()
    with relay_for(db, crm.url, secret, clock) as up:
        assert up.deliver_due() == 1
    assert row(db, webhook_id).status == "delivered"


def test_a_crm_that_never_answers_times_out(db, secret, clock):
    # A socket that listens but never accepts: the connection opens, no answer comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        webhook_id = add(db, clock=clock)
        with relay_for(db, url, secret, clock, timeout_s=0.2) as relay:
            assert relay.deliver_due() == 0
    failed = row(db, webhook_id)
    assert failed.attempts == 1 and "Timeout" in failed.last_error


def test_an_orders_events_keep_their_order_and_others_go_on(db, crm, secret, clock):
    a1 = add(db, order_id="SO-A", clock=clock, n=1)
    a2 = add(db, order_id="SO-A", clock=clock, n=2)
    b1 = add(db, order_id="SO-B", clock=clock, n=1)
    crm.fail_next(1)
    relay = relay_for(db, crm.url, secret, clock, backoff_base_s=5)

    # SO-A's first event fails; its second must wait; SO-B is not held up.
    assert relay.deliver_due() == 1
    assert [d.webhook_id for d in crm.received] == [a1, b1]
    assert row(db, a2).status == "pending" and row(db, a2).attempts == 0

    clock.advance(10)
    assert relay.deliver_due() == 2
    relay.close()
    assert [d.webhook_id for d in crm.received] == [a1, b1, a1, a2]


def test_one_broken_row_does_not_stop_the_batch(db, crm, secret, clock, monkeypatch):
    bad = add(db, order_id="SO-1", clock=clock)
    good = add(db, order_id="SO-2", clock=clock)
    relay = relay_for(db, crm.url, secret, clock)
    real_post = relay._post

    def post(row):
        if row.webhook_id == bad:
            raise RuntimeError("bug while sending")
        return real_post(row)

    monkeypatch.setattr(relay, "_post", post)
    assert relay.deliver_due() == 1
    relay.close()
    assert [d.webhook_id for d in crm.received] == [good]
    assert row(db, bad).status == "pending"  # leased; tried again after the lease


def test_a_chunk_of_deliveries_is_booked_in_one_transaction(db, crm, secret, clock):
    from sqlalchemy import event

    ids = [add(db, order_id=f"SO-{i}", clock=clock) for i in range(CLAIM_CHUNK)]
    commits: list[int] = []
    engine = db.kw["bind"]

    def count(conn) -> None:
        commits.append(1)

    event.listen(engine, "commit", count)
    try:
        with relay_for(db, crm.url, secret, clock) as relay:
            assert relay.deliver_due() == CLAIM_CHUNK
    finally:
        event.remove(engine, "commit", count)
    # The claim, the chunk's bookkeeping, and the empty claim that ends the call (was one
    # transaction per delivered event besides).
    assert len(commits) <= 4
    assert {row(db, w).status for w in ids} == {"delivered"}


def test_sent_events_whose_bookkeeping_failed_are_sent_again_after_the_lease(
    db, crm, secret, clock, monkeypatch
):
    webhook_id = add(db, clock=clock)
    relay = relay_for(db, crm.url, secret, clock)
    monkeypatch.setattr(relay, "_delivered", lambda rows: 1 / 0)
    assert relay.deliver_due() == 0
    assert row(db, webhook_id).status == "pending"
    monkeypatch.undo()
    clock.advance(LEASE_S + 1)
    assert relay.deliver_due() == 1
    relay.close()
    assert [d.webhook_id for d in crm.received] == [webhook_id, webhook_id]
    assert row(db, webhook_id).status == "delivered"


def test_limit_bounds_one_call(db, crm, secret, clock):
    ids = [add(db, order_id=f"SO-{i}", clock=clock) for i in range(5)]
    with relay_for(db, crm.url, secret, clock) as relay:
        assert relay.deliver_due(limit=3) == 3
        assert relay.deliver_due() == 2
    assert [d.webhook_id for d in crm.received] == ids


@pytest.mark.postgres
def test_concurrent_relays_on_postgres_send_each_event_once_in_order(postgres_url, secret):
    engine = make_engine(postgres_url)
    migrate(engine)
    db = make_sessions(engine)
    expected: dict[str, list[str]] = {}
    for i in range(30):
        order = f"SO-{i % 6}"
        expected.setdefault(order, []).append(add(db, order_id=order, n=i))
    with CrmFeedbackServer(secret) as crm:
        relays = [relay_for(db, crm.url, secret, rng=None) for _ in range(3)]
        delivered = [0] * len(relays)

        def work(k: int) -> None:
            for _ in range(20):
                delivered[k] += relays[k].deliver_due(limit=5)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(len(relays))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for r in relays:
            r.close()
        got = [d.webhook_id for d in crm.received]
    engine.dispose()
    assert sum(delivered) == 30 and sorted(got) == sorted(sum(expected.values(), []))
    for ids in expected.values():
        assert [w for w in got if w in ids] == ids


def test_a_dead_relays_claim_lapses_within_seconds(db, crm, secret, clock):
    webhook_id = add(db, clock=clock)
    dead = relay_for(db, crm.url, secret, clock)
    assert [c.webhook_id for c in dead._claim(CLAIM_CHUNK)] == [webhook_id]
    # The relay dies here, holding the claim (no renewal, no delivery).
    with relay_for(db, crm.url, secret, clock) as survivor:
        assert survivor.deliver_due() == 0  # claimed: not sent twice meanwhile
        clock.advance(LEASE_S)
        assert survivor.deliver_due() == 1
    assert LEASE_S <= 10.0
    assert [d.webhook_id for d in crm.received] == [webhook_id]
    stored = row(db, webhook_id)
    assert (stored.status, stored.attempts) == ("delivered", 0)
    assert (stored.claimed_by, stored.claimed_until) == (survivor.relay_id, None)
    dead.close()


def test_a_slow_delivery_renews_its_claim(db, secret, clock):
    # A socket that listens but never answers: the POST hangs until its timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        webhook_id = add(db, clock=clock)
        slow = relay_for(db, url, secret, clock, timeout_s=3.0, lease_s=1.0, renew_s=0.1)
        sending = threading.Thread(target=slow.deliver_due)
        sending.start()
        try:
            wait_for = datetime.now(UTC) + timedelta(seconds=10)
            while row(db, webhook_id).claimed_by is None and datetime.now(UTC) < wait_for:
                time.sleep(0.05)
            clock.advance(30)  # far past the first lease: only renewal keeps the claim
            while row(db, webhook_id).claimed_until <= clock() and datetime.now(UTC) < wait_for:
                time.sleep(0.05)
            other = relay_for(db, url, secret, clock, timeout_s=0.2)
            assert other.deliver_due() == 0  # still claimed by the slow relay
            other.close()
        finally:
            sending.join(10)
            slow.close()
    failed = row(db, webhook_id)
    assert (failed.attempts, failed.claimed_by) == (1, None) and "Timeout" in failed.last_error
