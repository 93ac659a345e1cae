"""Watch the ingest consumers' retained status, so a dead ingest raises an alert.

Each consumer publishes ``online`` (retained) on connect and leaves ``offline`` as its Will
(MQTT 3.1.2.5), which the broker publishes when the connection dies without a DISCONNECT:
a ``kill -9``, a crash, a cut network. A single ingest uses ``.../ingest/status``; each
member of a shared group (``LOOPLINE_MQTT_SHARED_GROUP``) one of its own,
``.../ingest/status/{client id}``. ``StatusWatcher`` subscribes to all of them, keeps the
last status of each, and hands ``on_status`` whether ANY is online: one member's Will
while others run is no outage. It reports in a thread of its own (the paho thread only
queues, STYLE.md 8), after letting a burst of statuses settle (``settle_s``: the retained
ones arrive together on subscribe, and a stopped member's ``offline`` may come just
before its replacement's ``online``). Retained, so a watcher that starts after ingest
died still hears it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from tenacity import Retrying, stop_when_event_set, wait_exponential

from loopline.ingest.mqtt.consumer import (
    KEEPALIVE_S,
    PAHO_LOG,
    RECONNECT_MAX_S,
    RECONNECT_MIN_S,
    STATUS_FILTER,
    STATUS_OFFLINE,
    STATUS_ONLINE,
    STATUS_TOPIC,
)
from loopline.ingest.mqtt.url import parse_mqtt_url

log = logging.getLogger("loopline.ingest.mqtt.status")

STOP_TIMEOUT_S: Final = 5.0
RETRY_MIN_S: Final = 0.5  # first wait before reporting a status again after on_status failed
RETRY_MAX_S: Final = 10.0
_POLL_S: Final = 0.2
SETTLE_S: Final = 0.5  # how long a burst of statuses may take before the group is judged
_STATUSES: Final = {STATUS_ONLINE: True, STATUS_OFFLINE: False}

StatusListener = Callable[[bool], None]


class StatusWatcher:
    """Subscribe to the ingest status topics; call ``on_status(any member online)`` after
    each (settled) burst of statuses."""

    def __init__(
        self,
        url: str,
        client_id: str,
        on_status: StatusListener,
        *,
        topic: str = STATUS_FILTER,
        reconnect_min_s: float = RECONNECT_MIN_S,
        reconnect_max_s: float = RECONNECT_MAX_S,
        settle_s: float = SETTLE_S,
    ) -> None:
        self._url = parse_mqtt_url(url)
        self._client_id = client_id
        self._on_status = on_status
        self._topic = topic
        self._reconnect = (reconnect_min_s, reconnect_max_s)
        self._settle_s = settle_s
        self._queue: queue.SimpleQueue[tuple[str, bool | None]] = queue.SimpleQueue()
        # The last status of each ingest: "" for the single one, else the member's id.
        self.members: dict[str, bool] = {}
        self._stop = threading.Event()
        self._client: mqtt.Client | None = None
        self._worker: threading.Thread | None = None
        self._subscribed = False
        self.last: bool | None = None
        self._retrying = Retrying(
            wait=wait_exponential(multiplier=RETRY_MIN_S, min=RETRY_MIN_S, max=RETRY_MAX_S),
            stop=stop_when_event_set(self._stop),
            sleep=self._pause,
            before_sleep=lambda state: log.warning(
                "could not record the ingest status: %s",
                state.outcome and state.outcome.exception(),
            ),
            reraise=True,
        )

    def _pause(self, seconds: float) -> None:
        """Sleep between retries, waking at once when stopped."""
        self._stop.wait(seconds)

    @property
    def subscribed(self) -> bool:
        """Whether the broker confirmed the subscription on the current connection."""
        return self._subscribed

    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start reporting."""
        if self._worker is not None:
            raise RuntimeError("StatusWatcher already started")
        self._stop.clear()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=mqtt.MQTTv311
        )
        client.enable_logger(PAHO_LOG)
        if self._url.username is not None:
            client.username_pw_set(self._url.username, self._url.password)
        if self._url.tls:
            client.tls_set()
        client.reconnect_delay_set(*self._reconnect)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.connect_async(self._url.host, self._url.port, KEEPALIVE_S)
        client.loop_start()
        self._client = client
        self._worker = threading.Thread(target=self._run, name="mqtt-status-watch", daemon=True)
        self._worker.start()
        log.info("watching the ingest status on %s", self._url.redacted())

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Disconnect and stop reporting."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout)
            self._worker = None
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self._subscribed = False

    def __enter__(self) -> StatusWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- paho callbacks (network thread) ---------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not reason_code.is_failure:
            client.subscribe(self._topic, qos=1)  # the retained status comes with it

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._subscribed = not any(rc.is_failure for rc in reason_codes)

    def _on_disconnect(self, client: mqtt.Client, *args: Any) -> None:
        self._subscribed = False

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        member = msg.topic[len(STATUS_TOPIC) + 1 :]
        if not payload:  # its retained status cleared: that member is gone for good
            self._queue.put((member, None))
            return
        online = _STATUSES.get(payload)
        if online is None:
            log.warning("unknown ingest status %r on %s", payload[:40], msg.topic)
            return
        self._queue.put((member, online))

    # -- worker thread -----------------------------------------------------------------------

    def _note(self, member: str, status: bool | None) -> None:
        if status is None:
            self.members.pop(member, None)
        else:
            self.members[member] = status

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                member, status = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            self._note(member, status)
            # Only each member's newest status matters, once the burst has settled.
            self._stop.wait(self._settle_s)
            while True:
                try:
                    member, status = self._queue.get_nowait()
                except queue.Empty:
                    break
                self._note(member, status)
            online = any(self.members.values())
            if not online or len(self.members) > 1:
                log.info(
                    "ingest members: %s",
                    ", ".join(f"{m or 'ingest'} {'online' if on else 'offline'}"
                              for m, on in sorted(self.members.items())),
                )  # fmt: skip
            try:
                self._retrying(self._on_status, online)
            except Exception:
                log.exception("ingest status %s not recorded", "online" if online else "offline")
                continue
            self.last = online
