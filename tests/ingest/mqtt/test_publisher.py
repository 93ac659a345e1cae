"""LinePublisher: the contract's JSON on the contract's topics, with a cap on unacked messages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from loopline.ingest.mqtt.consumer import MqttConsumer
from loopline.ingest.mqtt.messages import ProgressMessage, StateMessage, parse
from loopline.ingest.mqtt.publisher import LinePublisher, format_ts
from tests.ingest.mqtt.conftest import Collector, start_subscribed

T0 = datetime(2026, 11, 28, 8, 0, 0, 250000, tzinfo=UTC)


def test_round_trip_through_the_broker(
    mqtt_broker,
    make_consumer: Callable[..., MqttConsumer],
    make_publisher: Callable[..., LinePublisher],
    client_id: str,
) -> None:
    handle = Collector()
    start_subscribed(make_consumer(mqtt_broker.url, client_id, handle))
    pub = make_publisher(mqtt_broker.url)
    pub.progress("plant-1", "L1", 1, T0, "WO-1001-1", 1250, 7)
    pub.state("plant-1", "L1", 2, 1795852800000, "down", "jam")
    pub.state("plant-1", "L1", 3, T0.astimezone(timezone(timedelta(hours=8))), "running")

    got = [parse(m.topic, m.payload) for m in handle.wait_count(3)]
    assert got == [
        ProgressMessage("plant-1", "L1", 1, T0, "WO-1001-1", 1250, 7),
        StateMessage("plant-1", "L1", 2, datetime(2026, 11, 28, 8, tzinfo=UTC), "down", "jam"),
        StateMessage("plant-1", "L1", 3, T0, "running", None),
    ]


def test_backpressure_caps_unacked_messages(
    mqtt_broker,
    make_consumer: Callable[..., MqttConsumer],
    make_publisher: Callable[..., LinePublisher],
    client_id: str,
) -> None:
    handle = Collector()
    start_subscribed(make_consumer(mqtt_broker.url, client_id, handle))
    pub = make_publisher(mqtt_broker.url, max_inflight=10, max_outstanding=50)
    peak = 0
    for seq in range(1, 2001):
        pub.progress("plant-1", "L9", seq, T0, "WO-9", seq, 0)
        peak = max(peak, pub.outstanding)
    assert peak <= 50
    assert pub.flush(5)
    assert pub.outstanding == 0
    assert [parse(m.topic, m.payload).seq for m in handle.wait_count(2000)] == list(range(1, 2001))


def test_format_ts() -> None:
    assert format_ts(T0) == "2026-11-28T08:00:00.250Z"
    assert format_ts(1795852800000) == 1795852800000
    with pytest.raises(ValueError):
        format_ts(datetime(2026, 11, 28, 8))


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        LinePublisher("mqtt://127.0.0.1:1", "p", max_outstanding=70_000)
    with pytest.raises(ValueError):
        LinePublisher("mqtt://127.0.0.1:1", "p", max_inflight=100, max_outstanding=10)


def test_start_times_out_without_a_broker() -> None:
    from tests.servers import free_port

    pub = LinePublisher(f"mqtt://127.0.0.1:{free_port()}", "p")
    with pytest.raises(TimeoutError):
        pub.start(timeout=0.3)
    with pytest.raises(RuntimeError):
        pub.publish("loopline/v1/a/b/state", b"{}")
