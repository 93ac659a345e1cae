"""EmbeddedBroker (amqtt): paho QoS 1 through it, persistent sessions, clean start/stop."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from loopline.ingest.mqtt.broker import EmbeddedBroker
from loopline.ingest.mqtt.consumer import MqttConsumer
from loopline.ingest.mqtt.messages import parse
from loopline.ingest.mqtt.publisher import LinePublisher
from tests.ingest.mqtt.conftest import Collector, Events, start_subscribed

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(port=0) as running:
        yield running


def test_qos1_through_the_embedded_broker(
    broker: EmbeddedBroker,
    make_consumer: Callable[..., MqttConsumer],
    make_publisher: Callable[..., LinePublisher],
    client_id: str,
) -> None:
    handle, events = Collector(), Events()
    consumer = start_subscribed(make_consumer(broker.url, client_id, handle, on_connection=events))
    assert consumer.protocol == "3.1.1"
    assert events.calls[0][0] is True

    pub = make_publisher(broker.url)
    for seq in range(1, 201):
        pub.progress("plant-1", "L1", seq, T0, "WO-1", seq, 0)
    assert pub.flush(5)
    got = handle.wait_count(200)
    assert [parse(m.topic, m.payload).seq for m in got] == list(range(1, 201))


def test_embedded_broker_keeps_a_persistent_session(
    broker: EmbeddedBroker,
    make_consumer: Callable[..., MqttConsumer],
    make_publisher: Callable[..., LinePublisher],
    client_id: str,
) -> None:
    start_subscribed(make_consumer(broker.url, client_id, Collector())).stop()
    pub = make_publisher(broker.url)
    for seq in range(1, 21):
        pub.state("plant-1", "L2", seq, T0, "idle")
    assert pub.flush(5)

    handle = Collector()
    start_subscribed(make_consumer(broker.url, client_id, handle))
    got = handle.wait_count(20)
    assert sorted(parse(m.topic, m.payload).seq for m in got) == list(range(1, 21))


def test_start_stop_and_port_reuse() -> None:
    broker = EmbeddedBroker(port=0)
    broker.start()
    port = broker.port
    assert broker.url == f"mqtt://127.0.0.1:{port}"
    broker.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        pass
    with EmbeddedBroker(port=port) as again:  # the port is free again after stop()
        assert again.port == port
    broker.stop()  # stopping twice is harmless


def test_start_fails_clearly_when_the_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        began = time.monotonic()
        with pytest.raises(RuntimeError, match="failed to start"):
            EmbeddedBroker(port=port).start()
        assert time.monotonic() - began < 5
