"""Loopline as a Sparkplug host application on the broker: its STATE, and NCMD rebirths.

Sparkplug B 3.0, 5.3 ("Host Application Session Establishment"): a host publishes
``spBv1.0/STATE/{host_id}`` retained at QoS 1, ``{"online": true, "timestamp": T}`` on
connect, and leaves ``{"online": false, "timestamp": T}`` (the same T) as its Will, so edge
nodes that wait for their primary host see it come and go. Commands (NCMD) go at QoS 0, as
the specification asks (6.4.20 "Node Control/Rebirth").
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import deque
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from loopline.ingest.mqtt.consumer import KEEPALIVE_S, PAHO_LOG, RECONNECT_MAX_S, RECONNECT_MIN_S
from loopline.ingest.mqtt.url import parse_mqtt_url
from loopline.ingest.sparkplug.adapter import NAMESPACE, rebirth_payload

log = logging.getLogger("loopline.ingest.sparkplug")

STOP_TIMEOUT_S: Final = 2.0
SENT_KEPT: Final = 100


def state_topic(host_id: str) -> str:
    """The host application's STATE topic."""
    return f"{NAMESPACE}/STATE/{host_id}"


def ncmd_topic(group: str, edge: str) -> str:
    """A node's command topic."""
    return f"{NAMESPACE}/{group}/NCMD/{edge}"


class SparkplugHost:
    """A paho client of its own that says the host is online and sends node commands."""

    def __init__(
        self,
        url: str,
        client_id: str,
        host_id: str,
        *,
        reconnect_min_s: float = RECONNECT_MIN_S,
        reconnect_max_s: float = RECONNECT_MAX_S,
    ) -> None:
        self._url = parse_mqtt_url(url)
        self._client_id = client_id
        self.topic = state_topic(host_id)
        self._reconnect = (reconnect_min_s, reconnect_max_s)
        self._client: mqtt.Client | None = None
        self._stamp = 0
        # The latest rebirth requests sent, (group, edge), and how many in all.
        self.sent: deque[tuple[str, str]] = deque(maxlen=SENT_KEPT)
        self.sent_total = 0

    def _state(self, online: bool) -> bytes:
        return json.dumps({"online": online, "timestamp": self._stamp}).encode()

    def start(self) -> None:
        """Connect in the background (paho reconnects with backoff)."""
        self._stamp = int(time.time() * 1000)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=mqtt.MQTTv311
        )
        client.enable_logger(PAHO_LOG)
        if self._url.username is not None:
            client.username_pw_set(self._url.username, self._url.password)
        if self._url.tls:
            client.tls_set()
        client.will_set(self.topic, self._state(False), qos=1, retain=True)
        client.reconnect_delay_set(*self._reconnect)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.connect_async(self._url.host, self._url.port, KEEPALIVE_S)
        client.loop_start()
        self._client = client

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if not rc.is_failure:
            client.publish(self.topic, self._state(True), qos=1, retain=True)

    def request_rebirth(self, group: str, edge: str) -> None:
        """Ask one edge node to publish its births again (NCMD Node Control/Rebirth)."""
        client = self._client
        if client is None:
            return
        topic = ncmd_topic(group, edge)
        info = client.publish(topic, rebirth_payload(int(time.time() * 1000)), qos=0)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("rebirth request to %s/%s not sent (rc %s)", group, edge, info.rc)
            return
        self.sent.append((group, edge))
        self.sent_total += 1
        log.info("asked Sparkplug node %s/%s for a rebirth", group, edge)

    def stop(self) -> None:
        """Say offline (the Will's payload), then disconnect."""
        client, self._client = self._client, None
        if client is None:
            return
        if client.is_connected():
            info = client.publish(self.topic, self._state(False), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=STOP_TIMEOUT_S)
        client.disconnect()
        client.loop_stop()

    def __enter__(self) -> SparkplugHost:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
