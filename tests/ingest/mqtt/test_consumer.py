"""MqttConsumer against a real Mosquitto: ack after handle, survival, sessions, reconnects."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from loopline.ingest.mqtt.consumer import STATUS_TOPIC, Inbound, MqttConsumer, StoreUnavailable
from loopline.ingest.mqtt.messages import ProgressMessage, parse
from loopline.ingest.mqtt.publisher import LinePublisher
from tests.ingest.mqtt.conftest import Collector, Events, start_subscribed, wait_for
from tests.servers import MosquittoServer, free_port

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
QUIET_S = 0.4  # how long "nothing more arrives" is watched for

MakeConsumer = Callable[..., MqttConsumer]
MakePublisher = Callable[..., LinePublisher]


def publish_progress(pub: LinePublisher, n: int, line: str = "L1", start: int = 1) -> None:
    for seq in range(start, start + n):
        pub.progress("plant-1", line, seq, T0, "WO-1", seq * 10, 0)
    assert pub.flush(5)


def seqs(messages: list[Inbound]) -> list[int]:
    return [parse(m.topic, m.payload).seq for m in messages]


def retained_status(url_host: str, port: int) -> str | None:
    """Read the retained ingest status with a throwaway subscriber."""
    got: list[bytes] = []
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"status-{time.monotonic_ns()}")

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.payload)
        done.set()

    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(STATUS_TOPIC, qos=1)
    client.connect(url_host, port)
    client.loop_start()
    try:
        done.wait(2.0)
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0].decode() if got else None


@pytest.fixture
def own_broker() -> Iterator[MosquittoServer]:
    """A Mosquitto for this test alone, for tests that restart or reconfigure it."""
    server = MosquittoServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


def test_receives_batches_and_acks_after_handle(
    mqtt_broker, make_consumer: MakeConsumer, make_publisher: MakePublisher, client_id: str
) -> None:
    handle = Collector()
    consumer = start_subscribed(make_consumer(mqtt_broker.url, client_id, handle))
    assert consumer.protocol == "3.1.1"
    publish_progress(make_publisher(mqtt_broker.url), 100)

    got = handle.wait_count(100)
    assert seqs(got) == list(range(1, 101))
    assert all(isinstance(parse(m.topic, m.payload), ProgressMessage) for m in got)
    assert all(m.received_at.tzinfo is UTC for m in got)
    assert wait_for(lambda: consumer.stats()["acked"] == 100)
    consumer.stop()

    # Everything was acked, so the resumed session has nothing to redeliver.
    again = Collector()
    start_subscribed(make_consumer(mqtt_broker.url, client_id, again))
    time.sleep(QUIET_S)
    assert again.messages == []


def test_a_message_is_not_acked_before_handle_returns(
    mqtt_broker, make_consumer: MakeConsumer, make_publisher: MakePublisher, client_id: str
) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(batch: object) -> None:
        entered.set()
        release.wait(5)

    consumer = start_subscribed(make_consumer(mqtt_broker.url, client_id, slow))
    publish_progress(make_publisher(mqtt_broker.url), 1)
    assert entered.wait(5)
    consumer.stop(timeout=0.2)  # the handler is still busy: nothing may be acked
    release.set()

    again = Collector()
    start_subscribed(make_consumer(mqtt_broker.url, client_id, again))
    assert seqs(again.wait_count(1)) == [1]


def test_stop_handles_what_was_queued(
    mqtt_broker, make_consumer: MakeConsumer, make_publisher: MakePublisher, client_id: str
) -> None:
    gate = threading.Event()
    handle = Collector()

    def gated(batch: object) -> None:
        gate.wait(5)
        handle(batch)  # type: ignore[arg-type]

    consumer = start_subscribed(make_consumer(mqtt_broker.url, client_id, gated, batch_max=10))
    publish_progress(make_publisher(mqtt_broker.url), 50)
    assert wait_for(lambda: consumer.stats()["received"] == 50)
    threading.Timer(0.1, gate.set).start()
    consumer.stop()
    assert seqs(handle.messages) == list(range(1, 51))

    again = Collector()
    start_subscribed(make_consumer(mqtt_broker.url, client_id, again))
    time.sleep(QUIET_S)
    assert again.messages == []


def test_a_failing_handler_is_logged_and_the_consumer_goes_on(
    mqtt_broker,
    make_consumer: MakeConsumer,
    make_publisher: MakePublisher,
    client_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    handle = Collector(fail_if=lambda batch: any("/poison/" in m.topic for m in batch))
    consumer = start_subscribed(make_consumer(mqtt_broker.url, client_id, handle))
    pub = make_publisher(mqtt_broker.url)
    with caplog.at_level(logging.ERROR, logger="loopline.ingest.mqtt"):
        pub.publish("loopline/v1/plant-1/poison/progress", b'{"boom": "' + b"x" * 5000 + b'"}')
        assert wait_for(lambda: consumer.stats()["failed_batches"] == 1)
        publish_progress(pub, 5)
        handle.wait_count(6)
    record = next(r for r in caplog.records if "handler failed" in r.getMessage())
    assert "loopline/v1/plant-1/poison/progress" in record.getMessage()
    assert record.exc_info is not None
    assert len(record.getMessage()) < 1000  # the payload is cut
    assert wait_for(lambda: consumer.stats()["acked"] == 6)  # the poison batch too


def test_messages_published_while_offline_arrive_after_reconnect(
    mqtt_broker, make_consumer: MakeConsumer, make_publisher: MakePublisher, client_id: str
) -> None:
    first = start_subscribed(make_consumer(mqtt_broker.url, client_id, Collector()))
    first.stop()
    publish_progress(make_publisher(mqtt_broker.url), 300)

    handle = Collector()
    events = Events()
    start_subscribed(make_consumer(mqtt_broker.url, client_id, handle, on_connection=events))
    assert seqs(handle.wait_count(300)) == list(range(1, 301))
    assert "session resumed" in events.calls[0][1]


def test_duplicates_are_passed_through(
    mqtt_broker, make_consumer: MakeConsumer, make_publisher: MakePublisher, client_id: str
) -> None:
    handle = Collector()
    start_subscribed(make_consumer(mqtt_broker.url, client_id, handle))
    pub = make_publisher(mqtt_broker.url)
    pub.progress("plant-1", "L1", 7, T0, "WO-1", 70, 1)
    pub.progress("plant-1", "L1", 7, T0, "WO-1", 70, 1)
    first, second = handle.wait_count(2)
    assert (first.topic, first.payload) == (second.topic, second.payload)


def test_own_status_topic_is_not_handed_to_the_handler(
    mqtt_broker, make_consumer: MakeConsumer, make_publisher: MakePublisher, client_id: str
) -> None:
    handle = Collector()
    start_subscribed(make_consumer(mqtt_broker.url, client_id, handle))
    publish_progress(make_publisher(mqtt_broker.url), 1)
    time.sleep(QUIET_S)
    assert [m.topic for m in handle.messages] == ["loopline/v1/plant-1/L1/progress"]


def test_connection_events_and_retained_status(
    mqtt_broker, make_consumer: MakeConsumer, client_id: str
) -> None:
    events = Events()
    consumer = start_subscribed(
        make_consumer(mqtt_broker.url, client_id, Collector(), on_connection=events)
    )
    assert events.calls[0][0] is True
    assert "new session" in events.calls[0][1]
    assert retained_status(mqtt_broker.host, mqtt_broker.port) == "online"

    consumer.stop()
    assert events.calls[-1] == (False, "stopped")
    assert retained_status(mqtt_broker.host, mqtt_broker.port) == "offline"


def test_will_reports_offline_when_the_connection_drops(
    mqtt_broker, make_consumer: MakeConsumer, client_id: str
) -> None:
    events = Events()
    consumer = start_subscribed(
        make_consumer(mqtt_broker.url, client_id, Collector(), on_connection=events)
    )
    statuses: list[bytes] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id + "-watch")
    watcher.on_message = lambda c, u, msg: statuses.append(msg.payload)
    watcher.connect(mqtt_broker.host, mqtt_broker.port)
    watcher.subscribe(STATUS_TOPIC, qos=1)
    watcher.loop_start()
    try:
        assert wait_for(lambda: statuses == [b"online"])
        # Cut the TCP connection under paho, as a network failure would.
        consumer._client.socket().shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        assert wait_for(lambda: [c for c, _ in events.calls] == [True, False, True])
        assert "disconnected" in events.calls[1][1]
        assert wait_for(lambda: statuses == [b"online", b"offline", b"online"])
    finally:
        watcher.disconnect()
        watcher.loop_stop()


def test_reconnects_and_resubscribes_after_a_broker_restart(
    own_broker: MosquittoServer,
    make_consumer: MakeConsumer,
    make_publisher: MakePublisher,
    client_id: str,
) -> None:
    handle, events = Collector(), Events()
    consumer = start_subscribed(
        make_consumer(own_broker.url, client_id, handle, on_connection=events)
    )
    own_broker.restart()  # persistence is off: the session and subscription are gone
    assert wait_for(lambda: len(events.calls) >= 3 and consumer.subscribed)
    assert events.calls[1][0] is False
    assert events.calls[-1][0] is True and "new session" in events.calls[-1][1]

    publish_progress(make_publisher(own_broker.url), 3)
    assert seqs(handle.wait_count(3)) == [1, 2, 3]


def test_an_unreachable_broker_is_reported_and_stop_is_clean(
    make_consumer: MakeConsumer, client_id: str
) -> None:
    events = Events()
    consumer = make_consumer(
        f"mqtt://127.0.0.1:{free_port()}", client_id, Collector(), on_connection=events
    )
    consumer.start()
    assert wait_for(lambda: bool(events.calls))
    assert events.calls[0][0] is False and "cannot reach" in events.calls[0][1]
    began = time.monotonic()
    consumer.stop()
    assert time.monotonic() - began < 2.5
    assert not consumer.connected


def test_batches_grow_under_load_up_to_batch_max(
    mqtt_broker, make_consumer: MakeConsumer, make_publisher: MakePublisher, client_id: str
) -> None:
    start_subscribed(make_consumer(mqtt_broker.url, client_id, Collector())).stop()
    publish_progress(make_publisher(mqtt_broker.url), 500)

    handle = Collector()

    def slow(batch: object) -> None:
        time.sleep(0.01)
        handle(batch)  # type: ignore[arg-type]

    start_subscribed(make_consumer(mqtt_broker.url, client_id, slow, batch_max=50))
    assert seqs(handle.wait_count(500)) == list(range(1, 501))
    assert 1 < max(len(b) for b in handle.batches) <= 50


def test_progress_lingers_for_a_fuller_batch_and_a_line_state_does_not(
    mqtt_broker, make_consumer: MakeConsumer, make_publisher: MakePublisher, client_id: str
) -> None:
    handle = Collector()
    start_subscribed(make_consumer(mqtt_broker.url, client_id, handle, linger_s=1.0))
    pub = make_publisher(mqtt_broker.url)
    began = time.monotonic()
    for seq in range(1, 6):  # trickling in, 30 ms apart: within one linger
        pub.progress("plant-1", "L1", seq, T0, "WO-1", seq * 10, 0)
        assert pub.flush(5)
        time.sleep(0.03)
    assert seqs(handle.wait_count(5)) == [1, 2, 3, 4, 5]
    assert [len(b) for b in handle.batches] == [5]
    assert time.monotonic() - began >= 0.9  # it did wait out the linger

    # A state (an andon) closes the batch it lands in at once, progress before it too.
    pub.progress("plant-1", "L1", 6, T0, "WO-1", 60, 0)
    assert pub.flush(5)
    time.sleep(0.03)
    sent = time.monotonic()
    pub.state("plant-1", "L1", 7, T0, "down", "jam")
    assert pub.flush(5)
    handle.wait_count(7)
    assert time.monotonic() - sent < 0.5
    assert [len(b) for b in handle.batches] == [5, 2]


def test_without_linger_each_arrival_is_handled_at_once(
    mqtt_broker, make_consumer: MakeConsumer, make_publisher: MakePublisher, client_id: str
) -> None:
    handle = Collector()
    start_subscribed(make_consumer(mqtt_broker.url, client_id, handle))
    pub = make_publisher(mqtt_broker.url)
    for seq in range(1, 4):
        pub.progress("plant-1", "L1", seq, T0, "WO-1", seq * 10, 0)
        assert pub.flush(5)
        handle.wait_count(seq)
    assert [len(b) for b in handle.batches] == [1, 1, 1]


def test_mqtt5_when_the_url_asks_for_it(
    mqtt_broker, make_consumer: MakeConsumer, make_publisher: MakePublisher, client_id: str
) -> None:
    url = mqtt_broker.url + "?protocol=5"
    first = start_subscribed(make_consumer(url, client_id, Collector()))
    assert first.protocol == "5"
    first.stop()
    publish_progress(make_publisher(url), 20)

    handle, events = Collector(), Events()
    start_subscribed(make_consumer(url, client_id, handle, on_connection=events))
    assert seqs(handle.wait_count(20)) == list(range(1, 21))
    assert "MQTT 5, session resumed" in events.calls[0][1]


def test_shared_group_splits_the_stream(
    mqtt_broker, make_consumer: MakeConsumer, make_publisher: MakePublisher, client_id: str
) -> None:
    a, b = Collector(), Collector()
    start_subscribed(make_consumer(mqtt_broker.url, client_id + "-a", a, shared_group="ingest"))
    start_subscribed(make_consumer(mqtt_broker.url, client_id + "-b", b, shared_group="ingest"))
    publish_progress(make_publisher(mqtt_broker.url), 100, line="shared")
    assert wait_for(lambda: len(a.messages) + len(b.messages) == 100)
    got_a, got_b = set(seqs(a.messages)), set(seqs(b.messages))
    assert got_a | got_b == set(range(1, 101))
    assert not got_a & got_b
    assert got_a and got_b


@pytest.mark.parametrize("group", ["", "a/b", "a+", "#"])
def test_shared_group_must_be_a_plain_name(group: str) -> None:
    with pytest.raises(ValueError):
        MqttConsumer("mqtt://127.0.0.1:1", "x", Collector(), shared_group=group)


# -- nothing acked that was not stored (ISSUE8 item 5) -----------------------------------


class Store:
    """A handler whose store can be 'down' (raises StoreUnavailable) and that keeps poison."""

    def __init__(self, poison: str = "/poison/") -> None:
        self.down = threading.Event()
        self.kept: list[Inbound] = []
        self.calls = 0
        self.handled: list[Inbound] = []
        self.keeper_down = threading.Event()
        self._poison = poison

    def __call__(self, batch: object) -> None:
        self.calls += 1
        if self.down.is_set():
            raise StoreUnavailable("redis: connection refused")
        msgs = list(batch)  # type: ignore[call-overload]
        if any(self._poison in m.topic for m in msgs):
            raise RuntimeError("a bug this message triggers")
        self.handled.extend(msgs)

    def keep(self, msg: Inbound, exc: BaseException) -> None:
        if self.keeper_down.is_set():
            raise StoreUnavailable("sql: connection refused")
        assert isinstance(exc, RuntimeError)
        self.kept.append(msg)


FAST_RETRY = {"store_retry_min_s": 0.05, "store_retry_max_s": 0.2}


def test_nothing_is_acked_while_the_store_is_down_and_all_goes_through_when_back(
    mqtt_broker, make_consumer: MakeConsumer, make_publisher: MakePublisher, client_id: str
) -> None:
    store = Store()
    store.down.set()
    consumer = start_subscribed(
        make_consumer(mqtt_broker.url, client_id, store, on_poison=store.keep, **FAST_RETRY)
    )
    publish_progress(make_publisher(mqtt_broker.url), 50)
    assert wait_for(lambda: consumer.stats()["store_retries"] >= 3)
    assert consumer.waiting_for_store
    stats = consumer.stats()
    assert (stats["acked"], stats["handled"], stats["poisoned"]) == (0, 0, 0)

    store.down.clear()
    assert wait_for(lambda: consumer.stats()["acked"] == 50)
    assert seqs(store.handled) == list(range(1, 51))
    assert not consumer.waiting_for_store and store.kept == []
    consumer.stop()
    again = Collector()
    start_subscribed(make_consumer(mqtt_broker.url, client_id, again))
    time.sleep(QUIET_S)
    assert again.messages == []


def test_stopped_during_an_outage_the_broker_keeps_every_message(
    mqtt_broker, make_consumer: MakeConsumer, make_publisher: MakePublisher, client_id: str
) -> None:
    store = Store()
    store.down.set()
    consumer = start_subscribed(make_consumer(mqtt_broker.url, client_id, store, **FAST_RETRY))
    publish_progress(make_publisher(mqtt_broker.url), 20)
    assert wait_for(lambda: consumer.stats()["store_retries"] >= 1)
    began = time.monotonic()
    consumer.stop()
    assert time.monotonic() - began < 3  # gives up on the outage, does not hang
    assert consumer.stats()["acked"] == 0

    again = Collector()
    start_subscribed(make_consumer(mqtt_broker.url, client_id, again))
    assert sorted(set(seqs(again.wait_count(20)))) == list(range(1, 21))


def test_a_poison_message_is_isolated_kept_and_only_then_acked(
    mqtt_broker, make_consumer: MakeConsumer, make_publisher: MakePublisher, client_id: str
) -> None:
    start_subscribed(make_consumer(mqtt_broker.url, client_id, Collector())).stop()
    pub = make_publisher(mqtt_broker.url)
    publish_progress(pub, 5)
    pub.publish("loopline/v1/plant-1/poison/progress", b'{"seq": 1}')
    publish_progress(pub, 5, start=6)

    store = Store()
    store.keeper_down.set()  # the dead-letter store is down at first, too
    consumer = start_subscribed(
        make_consumer(mqtt_broker.url, client_id, store, on_poison=store.keep, **FAST_RETRY)
    )
    assert wait_for(lambda: seqs(store.handled) == list(range(1, 6)))
    assert wait_for(lambda: consumer.stats()["store_retries"] >= 2)
    assert consumer.stats()["acked"] == 5  # not the poison one, nor what follows it
    store.keeper_down.clear()
    assert wait_for(lambda: consumer.stats()["acked"] == 11)
    assert seqs(store.handled) == list(range(1, 11))
    assert [m.topic for m in store.kept] == ["loopline/v1/plant-1/poison/progress"]
    assert consumer.stats()["poisoned"] == 1
    consumer.stop()
    again = Collector()
    start_subscribed(make_consumer(mqtt_broker.url, client_id, again))
    time.sleep(QUIET_S)
    assert again.messages == []
