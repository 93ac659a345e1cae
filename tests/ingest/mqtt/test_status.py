"""A dead ingest raises an alert: a real consumer in a subprocess is killed with SIGKILL, the
broker publishes its Will (``offline``) and the status watcher opens ``ingest_offline``;
the next consumer's ``online`` resolves it (ISSUE8 item 12)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import select

from loopline.ingest.mqtt.status import StatusWatcher
from loopline.ingest.shopfloor import ingest_status_changed
from loopline.models.records import Alert
from tests.ingest.mqtt.conftest import Collector, start_subscribed, wait_for
from tests.servers import MosquittoServer

ROOT = Path(__file__).resolve().parents[3]
# A bare ingest consumer, as `loopline ingest` runs it, that says when it is subscribed.
CONSUMER = """
import sys, time
from loopline.ingest.mqtt.consumer import MqttConsumer
group = sys.argv[3] if len(sys.argv) > 3 else None
c = MqttConsumer(sys.argv[1], sys.argv[2], lambda batch: None, shared_group=group)
c.start()
while not c.subscribed:
    time.sleep(0.02)
print("subscribed", flush=True)
time.sleep(600)
"""


@pytest.fixture
def own_broker() -> Iterator[MosquittoServer]:
    """A broker of this test alone: the retained status must not leak to other tests."""
    server = MosquittoServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


def _alerts(sessions) -> list[Alert]:
    with sessions() as s:
        return list(s.scalars(select(Alert).where(Alert.kind == "ingest_offline")))


def test_an_ingest_killed_hard_raises_an_alert_until_one_is_back(
    own_broker: MosquittoServer, sessions, live, make_consumer
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, own_broker.url, f"ingest-{uuid.uuid4().hex[:6]}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    watcher = StatusWatcher(
        own_broker.url,
        f"watch-{uuid.uuid4().hex[:6]}",
        partial(ingest_status_changed, sessions, live),
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "subscribed"
        watcher.start()
        assert wait_for(lambda: watcher.last is True, 10)
        assert _alerts(sessions) == []

        os.kill(proc.pid, signal.SIGKILL)  # no DISCONNECT: the broker sends the Will
        proc.wait(5)
        assert wait_for(lambda: [a.status for a in _alerts(sessions)] == ["open"], 10)
        [alert] = _alerts(sessions)
        assert (alert.severity, alert.role, alert.entity) == ("critical", "it", "ingest")
        assert [a["kind"] for a in live.all("alert")] == ["ingest_offline"]

        # Another ingest comes up: its retained "online" resolves the alert.
        start_subscribed(
            make_consumer(own_broker.url, f"ingest-{uuid.uuid4().hex[:6]}", Collector())
        )
        assert wait_for(lambda: [a.status for a in _alerts(sessions)] == ["resolved"], 10)
        assert live.all("alert") == []
    finally:
        watcher.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def _member(url: str, client_id: str) -> subprocess.Popen[str]:
    """One shared-group member (group ``loopline``) in a process of its own, subscribed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, url, client_id, "loopline"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "subscribed"
    return proc


def test_one_shared_member_killed_is_no_outage_while_another_runs(
    own_broker: MosquittoServer, sessions, live
) -> None:
    a, b = "member-a", "member-b"
    procs = [_member(own_broker.url, a), _member(own_broker.url, b)]
    watcher = StatusWatcher(
        own_broker.url,
        f"watch-{uuid.uuid4().hex[:6]}",
        partial(ingest_status_changed, sessions, live),
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
        settle_s=0.2,
    )
    try:
        watcher.start()
        assert wait_for(lambda: watcher.members == {a: True, b: True}, 10)
        assert wait_for(lambda: watcher.last is True, 10)

        os.kill(procs[0].pid, signal.SIGKILL)  # member a's Will: its own topic only
        procs[0].wait(5)
        assert wait_for(lambda: watcher.members == {a: False, b: True}, 10)
        time.sleep(0.5)  # past the settle time: the group's status was recorded
        assert watcher.last is True
        assert _alerts(sessions) == [] and live.all("alert") == []

        os.kill(procs[1].pid, signal.SIGKILL)  # the last member: now ingest is offline
        procs[1].wait(5)
        assert wait_for(lambda: [x.status for x in _alerts(sessions)] == ["open"], 10)
        assert watcher.members == {a: False, b: False}

        procs.append(_member(own_broker.url, a))  # a is back: the group is online again
        assert wait_for(lambda: [x.status for x in _alerts(sessions)] == ["resolved"], 10)
        assert watcher.members == {a: True, b: False} and live.all("alert") == []
    finally:
        watcher.stop()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def test_a_watcher_started_after_ingest_went_away_hears_the_retained_status(
    own_broker: MosquittoServer, sessions, live, make_consumer
) -> None:
    start_subscribed(make_consumer(own_broker.url, "ingest-x", Collector())).stop()
    record = partial(ingest_status_changed, sessions, live)
    with StatusWatcher(own_broker.url, "watch-late", record) as watcher:
        assert wait_for(lambda: watcher.last is False, 10)
        assert [a.status for a in _alerts(sessions)] == ["open"]
