"""Publish shop-floor messages the way a line would: QoS 1, in the contract's JSON.

For the factory simulator, benchmarks and tests. paho hands out 16-bit packet ids, and a
QoS 1 publisher with more than 65,535 messages unacknowledged stalls silently (DESIGN.md,
measured). So ``LinePublisher`` keeps at most ``max_outstanding`` messages unacked and
blocks the caller, up to ``publish_timeout_s``, until the broker catches up.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from loopline.ingest.mqtt.consumer import PAHO_LOG
from loopline.ingest.mqtt.url import parse_mqtt_url

log = logging.getLogger("loopline.ingest.mqtt.publisher")

MAX_INFLIGHT: Final = 1000  # sent and awaiting PUBACK (paho's default is 20)
MAX_OUTSTANDING: Final = 10_000  # in flight plus queued in paho; far below 65,535
CONNECT_TIMEOUT_S: Final = 10.0
PUBLISH_TIMEOUT_S: Final = 30.0
KEEPALIVE_S: Final = 30

Timestamp = datetime | int | float


def topic_for(site: str, line: str, kind: str) -> str:
    """``loopline/v1/{site}/{line}/{kind}``."""
    return f"loopline/v1/{site}/{line}/{kind}"


def format_ts(ts: Timestamp) -> str | int | float:
    """An aware datetime as RFC 3339 UTC (``...Z``); numbers pass as epoch milliseconds."""
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError("ts must be timezone-aware")
        return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return ts


class LinePublisher:
    """A QoS 1 MQTT publisher with a cap on unacknowledged messages."""

    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        max_inflight: int = MAX_INFLIGHT,
        max_outstanding: int = MAX_OUTSTANDING,
        publish_timeout_s: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        if not 1 <= max_inflight <= max_outstanding < 65_535:
            raise ValueError("need 1 <= max_inflight <= max_outstanding < 65535")
        self._url = parse_mqtt_url(url)
        self._client_id = client_id
        self._max_inflight = max_inflight
        self._max_outstanding = max_outstanding
        self._publish_timeout_s = publish_timeout_s
        self._slots = threading.BoundedSemaphore(max_outstanding)
        self._outstanding = 0
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._connected = threading.Event()
        self._client: mqtt.Client | None = None

    @property
    def outstanding(self) -> int:
        """Messages published but not yet acknowledged by the broker."""
        return self._outstanding

    def start(self, timeout: float = CONNECT_TIMEOUT_S) -> None:
        """Connect; raise ``TimeoutError`` if the broker does not accept us in time."""
        if self._client is not None:
            raise RuntimeError("LinePublisher already started")
        protocol = mqtt.MQTTv5 if self._url.protocol == "5" else mqtt.MQTTv311
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=protocol
        )
        client.enable_logger(PAHO_LOG)
        if self._url.username is not None:
            client.username_pw_set(self._url.username, self._url.password)
        if self._url.tls:
            client.tls_set()
        client.max_inflight_messages_set(self._max_inflight)
        # Why a margin: our semaphore, not paho's queue limit, is what makes callers wait.
        client.max_queued_messages_set(self._max_outstanding + 1)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.connect_async(self._url.host, self._url.port, KEEPALIVE_S)
        client.loop_start()
        self._client = client
        if not self._connected.wait(timeout):
            self.stop(timeout=0)
            raise TimeoutError(f"no connection to {self._url.redacted()} within {timeout}s")

    def stop(self, timeout: float = PUBLISH_TIMEOUT_S) -> None:
        """Wait (up to ``timeout``) for outstanding acks, then disconnect."""
        client, self._client = self._client, None
        if client is None:
            return
        if timeout > 0 and not self.flush(timeout):
            log.warning("stopping with %d messages unacknowledged", self._outstanding)
        client.disconnect()
        client.loop_stop()
        self._connected.clear()

    def __enter__(self) -> LinePublisher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def flush(self, timeout: float = PUBLISH_TIMEOUT_S) -> bool:
        """Block until every published message is acknowledged; False on timeout."""
        with self._drained:
            return self._drained.wait_for(lambda: self._outstanding == 0, timeout)

    def progress(
        self,
        site: str,
        line: str,
        seq: int,
        ts: Timestamp,
        work_order: str,
        good: int,
        scrap: int,
    ) -> None:
        """Publish a ``progress`` message (cumulative counters)."""
        body = {
            "seq": seq,
            "ts": format_ts(ts),
            "work_order": work_order,
            "good": good,
            "scrap": scrap,
        }
        self.publish(topic_for(site, line, "progress"), _dumps(body))

    def state(
        self,
        site: str,
        line: str,
        seq: int,
        ts: Timestamp,
        state: str,
        reason: str | None = None,
        *,
        reason_code: str | None = None,
    ) -> None:
        """Publish a ``state`` message (``reason_code``: the downtime tree's code, if any)."""
        body: dict[str, Any] = {"seq": seq, "ts": format_ts(ts), "state": state, "reason": reason}
        if reason_code is not None:
            body["reason_code"] = reason_code
        self.publish(topic_for(site, line, "state"), _dumps(body))

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish raw bytes at QoS 1, waiting while ``max_outstanding`` are unacked."""
        client = self._client
        if client is None:
            raise RuntimeError("LinePublisher is not started")
        if not self._slots.acquire(timeout=self._publish_timeout_s):
            raise TimeoutError(
                f"{self._max_outstanding} messages unacknowledged for {self._publish_timeout_s}s"
            )
        with self._lock:
            self._outstanding += 1
        info = client.publish(topic, payload, qos=1)
        # NO_CONN is fine: paho keeps the message and sends it after reconnecting.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._release()
            raise RuntimeError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")

    # -- paho callbacks ---------------------------------------------------------------------

    def _release(self) -> None:
        with self._drained:
            self._outstanding -= 1
            if self._outstanding == 0:
                self._drained.notify_all()
        self._slots.release()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self._release()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            log.warning("publisher %s refused: %s", self._client_id, reason_code)
            return
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self._connected.clear()


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
