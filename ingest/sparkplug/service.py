"""The Sparkplug side of ``loopline ingest``: a consumer of the mapped nodes' topics and the
host client that announces Loopline and asks for rebirths, started and stopped together."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Final

from sqlalchemy.orm import Session, sessionmaker

from loopline.ingest.mqtt.consumer import SYSTEM_PREFIX, Inbound, MqttConsumer
from loopline.ingest.sparkplug.handler import SparkplugHandler
from loopline.ingest.sparkplug.host import SparkplugHost
from loopline.ingest.sparkplug.mapping import SparkplugMapping
from loopline.models.clock import Clock
from loopline.models.live import LiveState

# The consumer's own retained online/offline status (not Sparkplug's host STATE).
STATUS_TOPIC: Final = f"{SYSTEM_PREFIX}ingest/sparkplug"


def serialized(
    handle: Callable[[Sequence[Inbound]], None], lock: threading.Lock
) -> Callable[[Sequence[Inbound]], None]:
    """``handle`` under ``lock``: two consumers in one process store one batch at a time."""

    def call(batch: Sequence[Inbound]) -> None:
        with lock:
            handle(batch)

    return call


class SparkplugIngest:
    """The Sparkplug consumer and host client of one ingest process."""

    def __init__(
        self,
        url: str,
        client_id: str,
        mapping: SparkplugMapping,
        sessions: sessionmaker[Session],
        live: LiveState,
        clock: Clock,
        *,
        batch_max: int = 500,
        lock: threading.Lock | None = None,
        **consumer_options: float,
    ) -> None:
        self.host = SparkplugHost(url, f"{client_id}-host", mapping.host_id)
        self.handler = SparkplugHandler(
            sessions, live, clock, mapping, rebirth=self.host.request_rebirth
        )
        handle: Callable[[Sequence[Inbound]], None] = self.handler
        if lock is not None:
            handle = serialized(self.handler, lock)
        # Why no shared group: a node's seq must be read in order by one host process.
        self.consumer = MqttConsumer(
            url,
            client_id=client_id,
            handle=handle,
            subscription=mapping.subscriptions(),
            batch_max=batch_max,
            on_connection=self.handler.connection_changed,
            on_poison=self.handler.poison,
            status_topic=STATUS_TOPIC,
            **consumer_options,  # type: ignore[arg-type]
        )

    def adapter_counts(self) -> dict[str, int]:
        """Births, deaths, gaps, rebirth requests and ignored messages since start."""
        return dict(self.handler.adapter.counts)

    def start(self) -> None:
        """Announce the host, then consume."""
        self.host.start()
        self.consumer.start()

    def stop(self) -> None:
        """Stop consuming (what was queued is stored), then say the host is offline."""
        self.consumer.stop()
        self.host.stop()

    def __enter__(self) -> SparkplugIngest:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
