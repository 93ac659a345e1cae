"""Helpers for the MQTT tests: a recording handler, consumers that clean up after themselves."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from loopline.ingest.mqtt.consumer import Inbound, MqttConsumer
from loopline.ingest.mqtt.publisher import LinePublisher

WAIT_S = 5.0
# Fast reconnects keep the broker-restart tests short.
FAST = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.5}
_ids = itertools.count()


def wait_for(predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class Collector:
    """A handler that records every batch; ``fail_if`` makes it raise for chosen batches."""

    def __init__(self, fail_if: Callable[[Sequence[Inbound]], bool] | None = None) -> None:
        self.batches: list[list[Inbound]] = []
        self.fail_if = fail_if
        self._lock = threading.Lock()

    def __call__(self, batch: Sequence[Inbound]) -> None:
        with self._lock:
            self.batches.append(list(batch))
        if self.fail_if is not None and self.fail_if(batch):
            raise RuntimeError("handler blew up")

    @property
    def messages(self) -> list[Inbound]:
        with self._lock:
            return [m for b in self.batches for m in b]

    def wait_count(self, n: int, timeout: float = WAIT_S) -> list[Inbound]:
        assert wait_for(lambda: len(self.messages) >= n, timeout), (
            f"got {len(self.messages)} of {n} messages"
        )
        return self.messages


class Events:
    """Records ``on_connection`` calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, str]] = []

    def __call__(self, connected: bool, reason: str) -> None:
        self.calls.append((connected, reason))


@pytest.fixture
def client_id(request: pytest.FixtureRequest) -> str:
    """A client id no other test uses (sessions on the shared broker outlive a test)."""
    return f"t{next(_ids)}-{request.node.name[:40]}"


@pytest.fixture
def make_consumer() -> Iterator[Callable[..., MqttConsumer]]:
    """Build (not start) consumers with fast reconnects; all are stopped at teardown."""
    made: list[MqttConsumer] = []

    def make(url: str, client_id: str, handle: Any, **kwargs: Any) -> MqttConsumer:
        consumer = MqttConsumer(url, client_id, handle, **{**FAST, **kwargs})
        made.append(consumer)
        return consumer

    yield make
    for consumer in made:
        consumer.stop(timeout=2)


@pytest.fixture
def make_publisher() -> Iterator[Callable[..., LinePublisher]]:
    """Started publishers, stopped at teardown."""
    made: list[LinePublisher] = []

    def make(url: str, **kwargs: Any) -> LinePublisher:
        publisher = LinePublisher(url, f"pub-{next(_ids)}", **kwargs)
        publisher.start()
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.stop(timeout=2)


def start_subscribed(consumer: MqttConsumer) -> MqttConsumer:
    """Start and wait until the broker confirmed the subscription."""
    consumer.start()
    assert wait_for(lambda: consumer.subscribed), "consumer never subscribed"
    return consumer
