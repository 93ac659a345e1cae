"""The benches' socket-level QoS 1 load publisher, against a real Mosquitto."""

from __future__ import annotations

import threading
import uuid

import paho.mqtt.client as mqtt

from bench._mqtt_load import RawPublisher, _remaining_length


def test_remaining_length_is_mqtts_variable_length_encoding():
    # MQTT 3.1.1 section 2.2.3's table: 0, 127, 128, 16383, 16384, 2097151.
    assert _remaining_length(0) == b"\x00"
    assert _remaining_length(127) == b"\x7f"
    assert _remaining_length(128) == b"\x80\x01"
    assert _remaining_length(16383) == b"\xff\x7f"
    assert _remaining_length(16384) == b"\x80\x80\x01"
    assert _remaining_length(2097151) == b"\xff\xff\x7f"


def test_every_message_arrives_once_in_order_and_is_acked(mqtt_broker):
    n, got, done = 5000, [], threading.Event()
    topic = f"bench/{uuid.uuid4().hex[:6]}/progress"

    def on_message(client, userdata, msg):
        got.append((msg.topic, msg.payload, msg.qos))
        if len(got) == n:
            done.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(mqtt_broker.host, mqtt_broker.port)
    sub.loop_start()
    try:
        sub.subscribe(topic, qos=1)
        assert subscribed.wait(5)
        # A small window: the publisher must wait for acks and flush while it waits.
        pub = RawPublisher(mqtt_broker.host, mqtt_broker.port, window=100)
        for k in range(n):
            pub.publish(topic, b'{"seq":%d}' % k)
            if k % 250 == 0:
                pub.flush()
        pub.close()
        assert pub.acked == pub.sent == n
        assert done.wait(10), f"{len(got)} of {n} arrived"
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert [p for _, p, _ in got] == [b'{"seq":%d}' % k for k in range(n)]
    assert {(t, q) for t, _, q in got} == {(topic, 1)}
