"""An MQTT broker inside the process (amqtt), for the demo where no Mosquitto runs.

amqtt is asyncio; Loopline's MQTT clients are paho threads. So the broker gets its own
thread with its own event loop, and ``start()``/``stop()`` are ordinary blocking calls.

Things about amqtt 0.12 that shape this file:
- it speaks MQTT 3.1.1 only: an MQTT 5 CONNECT carrying a Will is misread and left
  hanging (no CONNACK) until the client gives up, so never add ``?protocol=5`` here;
- its ``AnonymousAuthPlugin`` marks every client anonymous, and amqtt neither queues QoS 1
  messages for, nor keeps, an anonymous client's persistent session. ``_OpenAuthPlugin``
  lets everyone in without that mark, so a consumer that reconnects still gets what was
  published meanwhile;
- no ``$share/`` subscriptions, and a QoS 1 message not acked within 5 s is dropped,
  not redelivered. Good enough for a demo on one machine; production runs Mosquitto.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

log = logging.getLogger("loopline.ingest.mqtt.broker")

START_TIMEOUT_S: Final = 10.0
STOP_TIMEOUT_S: Final = 10.0
_QUIET_LOGGERS: Final = ("amqtt", "transitions")
# MQTT 3.1.1 CONNECT (MQTT 3.1): protocol "MQTT" level 4, clean session, keepalive 0,
# client id "loopline-probe"; then DISCONNECT (MQTT 3.14).
_PROBE_CLIENT_ID: Final = b"loopline-probe"
_PROBE_CONNECT: Final = (
    bytes([0x10, 12 + len(_PROBE_CLIENT_ID)])
    + b"\x00\x04MQTT\x04\x02\x00\x00"
    + len(_PROBE_CLIENT_ID).to_bytes(2, "big")
    + _PROBE_CLIENT_ID
)
_DISCONNECT: Final = b"\xe0\x00"


class _OpenAuthPlugin(BaseAuthPlugin):
    """Let every client in, without amqtt's 'anonymous' mark that disables sessions."""

    @dataclass
    class Config:
        """No options."""

    async def authenticate(self, *, session: Session) -> bool | None:
        return True


class _PubackTimeoutNoise(logging.Filter):
    """Turn amqtt's ERROR traceback for a late PUBACK into one WARNING line.

    amqtt waits 5 s for a subscriber's PUBACK, then drops the message from its in-flight
    set and logs the TimeoutError with a traceback. A consumer whose handler is slow
    triggers it; it is a known limit of the demo broker, not a crash.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, TimeoutError) and "PUBACK" in str(exc):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "embedded broker: %s (message not redelivered)", (exc,)
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("amqtt.broker").addFilter(_PubackTimeoutNoise())


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """An amqtt broker on ``host:port`` in a background thread; a context manager.

    ``port=0`` picks a free port; read it back from ``.port`` (or ``.url``).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Broker | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``mqtt://host:port`` for ``LOOPLINE_MQTT_URL`` and the clients."""
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> None:
        """Start the broker; return once it accepts TCP connections."""
        if self._thread is not None:
            raise RuntimeError("EmbeddedBroker already started")
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        if self.port == 0:
            self.port = _free_port(self.host)
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._serve, name="mqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RuntimeError(f"embedded MQTT broker did not start within {START_TIMEOUT_S}s")
        if self._error is not None:
            self._thread.join(STOP_TIMEOUT_S)
            self._thread = None
            raise RuntimeError(
                f"embedded MQTT broker failed to start on {self.host}:{self.port}: {self._error}"
            ) from self._error
        self._wait_accepting()
        log.info("embedded MQTT broker listening on %s", self.url)

    def stop(self) -> None:
        """Shut the broker down and join its thread."""
        thread, loop, broker = self._thread, self._loop, self._broker
        if thread is None or loop is None:
            return
        if broker is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(broker.shutdown(), loop)
            try:
                future.result(STOP_TIMEOUT_S)
            except Exception:
                log.exception("embedded MQTT broker did not shut down cleanly")
            loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT_S)
        self._thread = self._loop = self._broker = None
        log.info("embedded MQTT broker stopped")

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- broker thread ---------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # Only the auth plugin: amqtt's defaults add packet/event loggers and $SYS.
            "plugins": {f"{__name__}._OpenAuthPlugin": {}},
        }

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            try:
                loop.run_until_complete(self._start_broker())
            except BaseException as exc:  # reported to start(), which raises it
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()
        finally:
            self._close_loop(loop)

    async def _start_broker(self) -> None:
        self._broker = Broker(self._config(), loop=asyncio.get_running_loop())
        await self._broker.start()

    @staticmethod
    def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def _wait_accepting(self) -> None:
        """Probe with a real CONNECT/CONNACK: a bare TCP probe makes amqtt log an error."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                    sock.sendall(_PROBE_CONNECT)
                    connack = sock.recv(4)
                    sock.sendall(_DISCONNECT)
                if connack[:1] == b"\x20":
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded MQTT broker not accepting on {self.url}")
            time.sleep(0.02)
