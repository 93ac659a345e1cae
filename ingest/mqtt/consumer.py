"""The shop-floor MQTT consumer: QoS 1, a persistent session, ack only after the handler ran.

Two threads. paho's network thread stays thin: ``on_message`` wraps the message in a
frozen ``Inbound`` and queues it (STYLE.md 8). A worker thread drains the queue in batches,
calls ``handle(batch)`` and only then sends the PUBACKs (paho 2 ``manual_ack``), so a
message the handler never saw is redelivered by the broker after a crash or restart.

Nothing is acked that was not stored. A handler that raises ``StoreUnavailable`` (Redis or
SQL down) gets the same batch again, with backoff, until it goes through; meanwhile the
worker takes no new work and the broker keeps the unacked QoS 1 messages in the persistent
session. Any other exception is a message the handler cannot take (a bug, not an outage):
the batch is retried message by message and the one that still fails goes to
``on_poison`` (which stores a dead letter) and is acked only once that returned.

Protocol: MQTT 3.1.1 by default, ``?protocol=5`` in the URL for MQTT 5 (session expiry,
Receive Maximum). Measured here with Mosquitto 2.0.11 on loopback, paho's MQTT 5 receive
path drains a backlog 1.5-2x slower than 3.1.1 (about 17k vs 35k msg/s), and Mosquitto's
default ``max_inflight_messages`` (20) did not cap batches once acks flowed (mean batches of
150+). amqtt, the demo's embedded broker, speaks 3.1.1 only.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_when_event_set,
    wait_exponential,
)

from loopline.ingest.mqtt.fastclient import BufferedClient
from loopline.ingest.mqtt.url import MqttUrl, parse_mqtt_url

log = logging.getLogger("loopline.ingest.mqtt")


class _PahoNoise(logging.Filter):
    """Demote paho 2.2's ERROR "Client is not connected" that every clean disconnect logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith(
            "Client is not connected"
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return log.isEnabledFor(logging.DEBUG)
        return True


PAHO_LOG = logging.getLogger("loopline.ingest.mqtt.paho")
PAHO_LOG.addFilter(_PahoNoise())

DEFAULT_SUBSCRIPTION: Final = "loopline/v1/+/+/+"
SYSTEM_PREFIX: Final = "loopline/v1/_system/"
STATUS_TOPIC: Final = "loopline/v1/_system/ingest/status"
# Every ingest's status, a single one's (STATUS_TOPIC) and shared-group members' alike.
STATUS_FILTER: Final = STATUS_TOPIC + "/#"
STATUS_ONLINE: Final = b"online"
STATUS_OFFLINE: Final = b"offline"
SESSION_EXPIRY_S: Final = 7 * 24 * 3600  # how long the broker keeps our queue while we're away
KEEPALIVE_S: Final = 30
RECONNECT_MIN_S: Final = 1
RECONNECT_MAX_S: Final = 30
STOP_TIMEOUT_S: Final = 10.0
STORE_RETRY_MIN_S: Final = 0.2  # first wait before handing a batch to a store again
STORE_RETRY_MAX_S: Final = 5.0  # longest wait between tries while a store stays down
_POLL_S: Final = 0.2  # how often an idle worker looks for a stop request
_LOG_PAYLOAD_BYTES: Final = 200


_TOPIC_LEVEL_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]")


def member_status_topic(client_id: str) -> str:
    """The retained status topic of one shared-group member: ``.../ingest/status/{id}``."""
    return f"{STATUS_TOPIC}/{_TOPIC_LEVEL_UNSAFE.sub('_', client_id) or '_'}"


class StoreUnavailable(Exception):
    """Raised by a handler when a store it needs is down: retry the batch later, do not ack."""


class Inbound(NamedTuple):
    """One received MQTT message, as the paho thread saw it (a tuple: cheap to make)."""

    topic: str
    payload: bytes
    received_at: datetime
    mid: int


Handler = Callable[[Sequence[Inbound]], None]
ConnectionListener = Callable[[bool, str], None]
# Keeps (dead-letters) a message the handler raised on; may raise StoreUnavailable.
PoisonKeeper = Callable[[Inbound, BaseException], None]


def is_urgent_topic(topic: str) -> bool:
    """Whether a message should be handled without lingering: all but progress counts."""
    return not topic.endswith("/progress")


# (message, qos, connection generation it arrived on)
_Pending = tuple[Inbound, int, int]


class MqttConsumer:
    """Subscribe to the shop-floor topics and feed batches to ``handle``; never dies."""

    def __init__(
        self,
        url: str,
        client_id: str,
        handle: Handler,
        on_connection: ConnectionListener | None = None,
        subscription: str | Sequence[str] = DEFAULT_SUBSCRIPTION,
        shared_group: str | None = None,
        batch_max: int = 500,
        *,
        keepalive_s: int = KEEPALIVE_S,
        reconnect_min_s: float = RECONNECT_MIN_S,
        reconnect_max_s: float = RECONNECT_MAX_S,
        session_expiry_s: int = SESSION_EXPIRY_S,
        receive_maximum: int | None = None,
        status_topic: str | None = None,
        on_poison: PoisonKeeper | None = None,
        store_retry_min_s: float = STORE_RETRY_MIN_S,
        store_retry_max_s: float = STORE_RETRY_MAX_S,
        linger_s: float = 0.0,
        urgent: Callable[[str], bool] = is_urgent_topic,
    ) -> None:
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        if linger_s < 0:
            raise ValueError("linger_s must not be negative")
        if shared_group is not None and (not shared_group or any(c in shared_group for c in "/+#")):
            raise ValueError(f"shared_group {shared_group!r} must be a plain name")
        self._url: MqttUrl = parse_mqtt_url(url)
        self._client_id = client_id
        self._handle = handle
        self._on_connection = on_connection
        # Several filters (Sparkplug: one per edge node) share one session and one worker.
        filters = [subscription] if isinstance(subscription, str) else list(subscription)
        share = f"$share/{shared_group}/" if shared_group else ""
        self._topics = [share + f for f in filters]
        self._topic = ", ".join(self._topics)
        # Why clean: a shared group's members share the subscription, not a session; the
        # brokers (Mosquitto 2, EMQX) want clean sessions for them. A member's unacked
        # messages then go back to the group when it dies (EMQX) or with it (Mosquitto).
        self._clean = shared_group is not None
        self._batch_max = batch_max
        # Why linger: under steady load each batch's fixed cost (Redis round trips, ETAs)
        # was paid for a handful of progress counts; waiting a few ms for more cut the
        # ingest's CPU by a sixth at 5k msg/s. A batch holding an ``urgent`` topic (a line
        # state: the wall's andon) never waits.
        self._linger_s = linger_s
        self._urgent = urgent
        self._keepalive_s = keepalive_s
        self._reconnect = (reconnect_min_s, reconnect_max_s)
        self._session_expiry_s = session_expiry_s
        # MQTT 5 only. Why 2 x batch_max: one batch being handled while the next arrives.
        self._receive_maximum = min(65535, receive_maximum or max(2 * batch_max, 100))
        # Why per member: members share one feed, not one fate; one member's Will must not
        # say that the whole group is offline (the status watcher ORs the members).
        self._status_topic = status_topic or (
            member_status_topic(client_id) if shared_group is not None else STATUS_TOPIC
        )
        self._on_poison = on_poison
        self._stop = threading.Event()
        self._retrying = Retrying(
            retry=retry_if_exception_type(StoreUnavailable),
            wait=wait_exponential(
                multiplier=store_retry_min_s, min=store_retry_min_s, max=store_retry_max_s
            ),
            stop=stop_when_event_set(self._stop),
            sleep=self._pause,
            before_sleep=self._store_down,
            reraise=True,
        )

        self._protocol = mqtt.MQTTv5 if self._url.protocol == "5" else mqtt.MQTTv311
        self._client: BufferedClient | None = None
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._stopping = False
        # Guards the connection generation against acks racing a reconnect.
        self._ack_lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self._subscribed = False
        self._last_report: tuple[bool, str] | None = None
        self._waiting_for_store = False
        self._counts = {
            "received": 0,
            "handled": 0,
            "failed_batches": 0,
            "acked": 0,
            "store_retries": 0,
            "poisoned": 0,
        }

    # -- lifecycle -------------------------------------------------------------------------

    def _pause(self, seconds: float) -> None:
        """Sleep between retries, waking at once when stopped."""
        self._stop.wait(seconds)

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up right now."""
        return self._connected

    @property
    def subscribed(self) -> bool:
        """Whether the broker has confirmed the subscription on the current connection."""
        return self._subscribed

    @property
    def status_topic(self) -> str:
        """Where this consumer publishes ``online``/``offline`` (retained; its Will too)."""
        return self._status_topic

    @property
    def protocol(self) -> str:
        """The MQTT version in use: ``"5"`` or ``"3.1.1"``."""
        return "5" if self._protocol == mqtt.MQTTv5 else "3.1.1"

    @property
    def waiting_for_store(self) -> bool:
        """Whether the worker is holding a batch until a store comes back."""
        return self._waiting_for_store

    def stats(self) -> dict[str, int]:
        """Counters since start: received, handled, failed_batches, acked, store_retries,
        poisoned, queued."""
        return {**self._counts, "queued": self._queue.qsize()}

    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start the worker."""
        if self._worker is not None:
            raise RuntimeError("MqttConsumer already started")
        self._stop.clear()
        self._stopping = False
        self._client = self._new_client()
        self._client.loop_start()
        self._worker = threading.Thread(
            target=self._run, name=f"mqtt-consumer-{self._client_id}", daemon=True
        )
        self._worker.start()
        log.info("MQTT consumer %s connecting to %s", self._client_id, self._url.redacted())

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Handle and ack what was already queued, then disconnect cleanly.

        Anything the worker cannot finish within ``timeout`` stays unacked, so the broker
        redelivers it to the next session.
        """
        if self._worker is None:
            return
        self._stopping = True  # on_message stops queueing; later arrivals stay unacked
        self._stop.set()
        self._worker.join(timeout)
        if self._worker.is_alive():
            log.warning("MQTT consumer worker still busy after %.1fs; leaving it", timeout)
        self._worker = None
        client, self._client = self._client, None
        if client is not None:
            if self._connected:
                info = client.publish(self._status_topic, STATUS_OFFLINE, qos=1, retain=True)
                # If the connection went away meanwhile, the broker sends our Will instead.
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(timeout=min(timeout, 2.0))
            client.disconnect()
            client.loop_stop()
        with self._ack_lock:
            self._connected = False
        self._subscribed = False
        self._report(False, "stopped")

    def __enter__(self) -> MqttConsumer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- paho client ---------------------------------------------------------------------

    def _new_client(self) -> BufferedClient:
        v5 = self._protocol == mqtt.MQTTv5
        client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=self._protocol,
            clean_session=None if v5 else self._clean,
            manual_ack=True,
        )
        client.enable_logger(PAHO_LOG)
        if self._url.username is not None:
            client.username_pw_set(self._url.username, self._url.password)
        if self._url.tls:
            client.tls_set()
        client.will_set(self._status_topic, STATUS_OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(*self._reconnect)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0 if self._clean else self._session_expiry_s
            props.ReceiveMaximum = self._receive_maximum
            client.connect_async(
                self._url.host,
                self._url.port,
                self._keepalive_s,
                clean_start=self._clean,
                properties=props,
            )
        else:
            client.connect_async(self._url.host, self._url.port, self._keepalive_s)
        return client

    # -- paho callbacks (network thread: keep them thin) --------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._report(False, f"connection refused: {reason_code}")
            return
        with self._ack_lock:
            self._generation += 1
            self._connected = True
        # Resubscribe on every connect: a lost or expired session forgets subscriptions.
        client.subscribe([(t, 1) for t in self._topics])
        client.publish(self._status_topic, STATUS_ONLINE, qos=1, retain=True)
        session = "session resumed" if flags.session_present else "new session"
        if not flags.session_present and self._generation > 1:
            log.warning("broker lost our session: what was published meanwhile is gone (seq gaps)")
        self._report(True, f"connected to {self._url.redacted()} (MQTT {self.protocol}, {session})")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._report(False, f"cannot reach {self._url.host}:{self._url.port}")

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._ack_lock:
            was_connected, self._connected = self._connected, False
        self._subscribed = False
        if was_connected and not self._stopping:
            self._report(False, f"disconnected: {reason_code}")

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [rc for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("subscription to %s refused: %s", self._topic, refused[0])
            self._report(False, f"subscription to {self._topic} refused: {refused[0]}")
            return
        self._subscribed = True

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._stopping:
            return  # left unacked on purpose: the broker redelivers it next session
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            log.warning("dropping a message whose topic is not UTF-8 (mid %d)", msg.mid)
            self._ack_now(client, msg)
            return
        if topic.startswith(SYSTEM_PREFIX):
            self._ack_now(client, msg)  # our own status and the like: not shop-floor data
            return
        self._counts["received"] += 1
        inbound = Inbound(topic, bytes(msg.payload), datetime.now(UTC), msg.mid)
        self._queue.put((inbound, msg.qos, self._generation))

    @staticmethod
    def _ack_now(client: mqtt.Client, msg: mqtt.MQTTMessage) -> None:
        if msg.qos:
            client.ack(msg.mid, msg.qos)

    # -- worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            batch = self._gather(first)
            if not self._dispatch(batch):
                return  # stopped while a store was down: the rest stays unacked too

    def _gather(self, first: _Pending) -> list[_Pending]:
        """``first`` and what waits behind it, up to ``batch_max``; with ``linger_s``, a
        batch of only non-urgent messages waits up to that long for more."""
        batch = [first]
        urgent = self._urgent(first[0].topic)
        until = time.monotonic() + self._linger_s
        while len(batch) < self._batch_max:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                left = until - time.monotonic()
                if urgent or left <= 0 or self._stop.is_set():
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            batch.append(item)
            urgent = urgent or self._urgent(item[0].topic)
        return batch

    def _dispatch(self, batch: list[_Pending]) -> bool:
        """Handle and ack one batch; False when stopped before it could be stored."""
        inbound = [item[0] for item in batch]
        try:
            self._until_stored(self._handle, inbound)
        except StoreUnavailable:
            return False
        except Exception as exc:
            self._counts["failed_batches"] += 1
            first = inbound[0]
            log.exception(
                "MQTT handler failed on a batch of %d; first topic %s payload %r",
                len(inbound),
                first.topic,
                first.payload[:_LOG_PAYLOAD_BYTES],
            )
            if len(batch) == 1:
                return self._quarantine(batch[0], exc)
            # Find the message that makes it fail; the others are handled as usual.
            return all(self._dispatch_one(item) for item in batch)
        self._counts["handled"] += len(inbound)
        self._ack(batch)
        return True

    def _dispatch_one(self, item: _Pending) -> bool:
        try:
            self._until_stored(self._handle, [item[0]])
        except StoreUnavailable:
            return False
        except Exception as exc:
            return self._quarantine(item, exc)
        self._counts["handled"] += 1
        self._ack([item])
        return True

    def _quarantine(self, item: _Pending, exc: BaseException) -> bool:
        """Keep a message the handler cannot take; ack it only once it is kept."""
        msg = item[0]
        self._counts["poisoned"] += 1
        if self._on_poison is None:
            log.error("MQTT message on %s dropped: no poison keeper configured", msg.topic)
            self._ack([item])
            return True
        try:
            self._until_stored(self._on_poison, msg, exc)
        except StoreUnavailable:
            return False
        except Exception:
            # Left unacked: the broker redelivers it to the next session, nothing is lost.
            log.exception("could not keep the poison message from %s; left unacked", msg.topic)
            return True
        self._ack([item])
        return True

    def _until_stored(self, call: Callable[..., None], *args: Any) -> None:
        """Call, retrying with backoff while it raises ``StoreUnavailable``, until stopped."""
        try:
            self._retrying(call, *args)
        except BaseException:
            self._waiting_for_store = False
            raise
        if self._waiting_for_store:
            self._waiting_for_store = False
            log.info("store back: MQTT ingest goes on")

    def _store_down(self, state: RetryCallState) -> None:
        self._counts["store_retries"] += 1
        if not self._waiting_for_store:
            self._waiting_for_store = True
            error = state.outcome.exception() if state.outcome else None
            log.warning("store unavailable (%s): holding the batch unacked, retrying", error)

    def _ack(self, batch: list[_Pending]) -> None:
        with self._ack_lock:
            client = self._client
            # A packet id from an earlier connection may since name another message.
            if client is None or not self._connected:
                return
            now = self._generation
            mids = [item[0].mid for item in batch if item[1] == 1 and item[2] == now]
            client.ack_many(mids)  # one write for the batch's PUBACKs
            for inbound, qos, generation in batch:
                if qos > 1 and generation == now:  # not subscribed so, but be correct
                    client.ack(inbound.mid, qos)
                    mids.append(inbound.mid)
        self._counts["acked"] += len(mids)

    def _report(self, connected: bool, reason: str) -> None:
        if self._last_report == (connected, reason):
            return
        self._last_report = (connected, reason)
        (log.info if connected or reason == "stopped" else log.warning)("MQTT %s", reason)
        if self._on_connection is None:
            return
        try:
            self._on_connection(connected, reason)
        except Exception:
            log.exception("on_connection callback failed")
