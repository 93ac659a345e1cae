"""``LOOPLINE_MQTT_URL`` parsing."""

from __future__ import annotations

import pytest

from loopline.ingest.mqtt.url import MqttUrl, parse_mqtt_url


def test_full_url() -> None:
    url = parse_mqtt_url("mqtt://user:pa%40ss@broker.example:1884")
    assert url == MqttUrl("broker.example", 1884, "user", "pa@ss", tls=False)
    assert "pa@ss" not in repr(url)
    assert url.redacted() == "mqtt://user:***@broker.example:1884"


@pytest.mark.parametrize(
    ("text", "port", "tls"),
    [("mqtt://h", 1883, False), ("mqtts://h", 8883, True), ("mqtts://h:9000", 9000, True)],
)
def test_default_ports_and_tls(text: str, port: int, tls: bool) -> None:
    url = parse_mqtt_url(text)
    assert (url.host, url.port, url.tls, url.username, url.password) == ("h", port, tls, None, None)


def test_ipv6_host() -> None:
    url = parse_mqtt_url("mqtt://[::1]:1883")
    assert url.host == "::1"
    assert url.redacted() == "mqtt://[::1]:1883"


def test_protocol_parameter() -> None:
    assert parse_mqtt_url("mqtt://h?protocol=3.1.1").protocol == "3.1.1"
    assert parse_mqtt_url("mqtt://h?protocol=5").protocol == "5"
    assert parse_mqtt_url("mqtt://h").protocol is None


@pytest.mark.parametrize(
    "text",
    [
        "http://h:1883",
        "h:1883",
        "mqtt://",
        "mqtt://h:notaport",
        "mqtt://h:99999",
        "mqtt://h/topic",
        "mqtt://h?protocol=4",
        "mqtt://h?qos=1",
    ],
)
def test_invalid(text: str) -> None:
    with pytest.raises(ValueError):
        parse_mqtt_url(text)
