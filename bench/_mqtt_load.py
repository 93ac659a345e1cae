"""A lean MQTT 3.1.1 QoS 1 load publisher for the benches: packets built by hand on a socket.

Why not paho: a bench's load generator shares this 2-core machine with what it measures.
Three paho publishers pacing 5k QoS 1 msg/s used three quarters of a core (paho's
per-message bookkeeping and its PUBACK callbacks in Python); real sensors are separate
devices and cost the plant's server nothing. This one encodes PUBLISH packets directly
(MQTT 3.1.1 section 3.3) and counts PUBACKs (3.4) in a reader thread, keeping at most
``window`` messages unacknowledged as paho's in-flight cap did.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import uuid

CONNECT, CONNACK, PUBLISH_QOS1, PUBACK = 0x10, 0x20, 0x32, 0x40
MAX_PACKET_ID = 65535


def _remaining_length(n: int) -> bytes:
    """The variable-length 'remaining length' of a fixed header (MQTT 3.1.1 2.2.3)."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


class RawPublisher:
    """Publishes at QoS 1 on one connection; ``close`` waits until the broker acked all."""

    def __init__(self, host: str, port: int, window: int = 2000, client_id: str = "") -> None:
        self.window = window
        self.sent = self.acked = 0
        self.cond = threading.Condition()
        self._next_id = 0
        self._out = bytearray()
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client_id = client_id or f"bench-load-{uuid.uuid4().hex[:8]}"
        # Protocol "MQTT" level 4, clean session, keep-alive 0 (no pings needed).
        body = _utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0) + _utf8(client_id)
        self.sock.sendall(bytes([CONNECT]) + _remaining_length(len(body)) + body)
        ack = self._read_exactly(4)
        if ack[0] != CONNACK or ack[3] != 0:
            raise ConnectionError(f"broker refused the connection: {ack.hex()}")
        self._reader = threading.Thread(target=self._read_acks, daemon=True)
        self._reader.start()

    def _read_exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return data

    def _read_acks(self) -> None:
        pending = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            # Every packet the broker sends us is a 4-byte PUBACK (we subscribe to nothing).
            whole = len(pending) // 4
            if whole:
                got = pending[: 4 * whole : 4].count(PUBACK)
                pending = pending[4 * whole :]
                with self.cond:
                    self.acked += got
                    self.cond.notify_all()

    def publish(self, topic: str, payload: bytes) -> None:
        """Queue one QoS 1 PUBLISH; it leaves at the next ``flush`` (waits while ``window``
        messages are unacknowledged)."""
        while True:
            with self.cond:
                if self.sent - self.acked < self.window:
                    self.sent += 1
                    break
            self.flush()  # outside the lock: the reader takes it to count the acks
            with self.cond:
                if self.sent - self.acked >= self.window:
                    self.cond.wait(1.0)
        self._next_id = self._next_id % MAX_PACKET_ID + 1
        variable = _utf8(topic) + struct.pack("!H", self._next_id)
        self._out += bytes([PUBLISH_QOS1])
        self._out += _remaining_length(len(variable) + len(payload))
        self._out += variable
        self._out += payload

    def flush(self) -> None:
        """Send what ``publish`` queued, in one write (a system call per message cost more
        than the message in this VM)."""
        if self._out:
            out, self._out = self._out, bytearray()
            self.sock.sendall(out)

    def close(self, timeout_s: float = 120.0) -> None:
        """Wait for every PUBACK, then disconnect; raises when the broker did not ack all."""
        self.flush()
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while self.acked < self.sent and time.monotonic() < deadline:
                self.cond.wait(1.0)
        try:
            self.sock.sendall(bytes([0xE0, 0]))  # DISCONNECT
        finally:
            self.sock.close()
        if self.acked < self.sent:
            raise TimeoutError(f"broker acked {self.acked} of {self.sent}")
