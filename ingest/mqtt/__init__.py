"""The shop-floor way in: MQTT messages, the consumer, an embedded broker, a publisher."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopline.ingest.mqtt.consumer import Inbound, MqttConsumer, StoreUnavailable
from loopline.ingest.mqtt.messages import (
    REASONS,
    Message,
    ProgressMessage,
    Rejected,
    StateMessage,
    parse,
)
from loopline.ingest.mqtt.publisher import LinePublisher
from loopline.ingest.mqtt.url import MqttUrl, parse_mqtt_url

if TYPE_CHECKING:
    from loopline.ingest.mqtt.broker import EmbeddedBroker

__all__ = [
    "REASONS",
    "EmbeddedBroker",
    "Inbound",
    "LinePublisher",
    "Message",
    "MqttConsumer",
    "MqttUrl",
    "ProgressMessage",
    "Rejected",
    "StateMessage",
    "StoreUnavailable",
    "parse",
    "parse_mqtt_url",
]


def __getattr__(name: str) -> Any:
    # Why lazy: amqtt (asyncio, plugins) is only needed by the demo's embedded broker.
    if name == "EmbeddedBroker":
        from loopline.ingest.mqtt.broker import EmbeddedBroker

        return EmbeddedBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
