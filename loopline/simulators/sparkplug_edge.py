"""A Sparkplug B edge node on a real broker: births, report-by-exception data, its death.

What a PLC gateway (Ignition Edge, Kepware, a Tahu client) does, small enough to read:
- connects with its NDEATH as the MQTT Will (carrying ``bdSeq``), then publishes NBIRTH
  (``seq`` 0, ``bdSeq``, ``Node Control/Rebirth``) and a DBIRTH per device, each metric
  with a name and an alias;
- ``set()`` publishes a DDATA with just the changed metrics, by alias, ``seq`` + 1 (0-255);
- on an NCMD ``Node Control/Rebirth`` it publishes its births again (seq from 0);
- ``die()`` drops the TCP connection without DISCONNECT, so the broker publishes the Will.

Run one from a shell: ``python -m loopline.simulators.sparkplug_edge --mqtt-url
mqtt://127.0.0.1:1883 --group Plant1 --edge Cell-3 --device PLC1`` counts parts on a line.
"""

from __future__ import annotations

import argparse
import logging
import random
import socket
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from loopline.ingest.mqtt.url import parse_mqtt_url
from loopline.ingest.sparkplug import schema
from loopline.ingest.sparkplug.adapter import BDSEQ, REBIRTH_METRIC, SEQ_MODULO

log = logging.getLogger("loopline.simulators.sparkplug")

Value = int | float | bool | str
# device id -> metric name -> (Sparkplug datatype, value)
Devices = dict[str, dict[str, tuple[int, Value]]]


class SparkplugEdge:
    """One edge node with its devices; thread-safe ``set`` from the caller's thread."""

    def __init__(
        self, url: str, group: str, edge: str, devices: Devices, *, bdseq: int = 0
    ) -> None:
        self.url = parse_mqtt_url(url)
        self.group, self.edge = group, edge
        self.devices = {d: dict(m) for d, m in devices.items()}
        self.bdseq = bdseq % SEQ_MODULO
        self._aliases: dict[tuple[str, str], int] = {}
        for device, metrics in self.devices.items():
            for name in metrics:
                self._aliases[(device, name)] = len(self._aliases) + 10
        self._seq = 0
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self.born = threading.Event()
        self.rebirths = 0

    def topic(self, kind: str, device: str | None = None) -> str:
        """``spBv1.0/{group}/{kind}/{edge}[/{device}]``."""
        base = f"spBv1.0/{self.group}/{kind}/{self.edge}"
        return f"{base}/{device}" if device else base

    # -- payloads ------------------------------------------------------------------------

    def _payload(self, seq: int | None) -> Any:
        payload = schema.Payload(timestamp=int(time.time() * 1000))
        if seq is not None:
            payload.seq = seq
        return payload

    def _metric(
        self, payload: Any, name: str | None, datatype: int, value: Value, alias: int | None
    ) -> None:
        metric = payload.metrics.add(timestamp=payload.timestamp)
        if name is not None:
            metric.name = name
        if alias is not None:
            metric.alias = alias
        schema.set_value(metric, datatype, value)

    def _death(self) -> bytes:
        payload = self._payload(None)
        self._metric(payload, BDSEQ, schema.UINT64, self.bdseq, None)
        return bytes(payload.SerializeToString())

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % SEQ_MODULO
        return seq

    def _births(self) -> list[tuple[str, bytes]]:
        """NBIRTH then a DBIRTH per device, seq from 0 (call under the lock)."""
        self._seq = 0
        node = self._payload(self._next_seq())
        self._metric(node, BDSEQ, schema.UINT64, self.bdseq, None)
        self._metric(node, REBIRTH_METRIC, schema.BOOLEAN, False, None)
        out = [(self.topic("NBIRTH"), bytes(node.SerializeToString()))]
        for device, metrics in self.devices.items():
            birth = self._payload(self._next_seq())
            for name, (datatype, value) in metrics.items():
                self._metric(birth, name, datatype, value, self._aliases[(device, name)])
            out.append((self.topic("DBIRTH", device), bytes(birth.SerializeToString())))
        return out

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (Will = NDEATH) and publish the births."""
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"spb-edge-{self.group}-{self.edge}-{self.bdseq}",
            protocol=mqtt.MQTTv311,
        )
        if self.url.username is not None:
            client.username_pw_set(self.url.username, self.url.password)
        client.will_set(self.topic("NDEATH"), self._death(), qos=1, retain=False)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.connect_async(self.url.host, self.url.port, 30)
        client.loop_start()
        self._client = client

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if rc.is_failure:
            return
        client.subscribe(self.topic("NCMD"), qos=0)
        with self._lock:
            for topic, payload in self._births():
                client.publish(topic, payload, qos=0)
        self.born.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            payload = schema.Payload.FromString(msg.payload)
        except Exception:
            log.warning("edge %s: unreadable command on %s", self.edge, msg.topic)
            return
        if any(m.name == REBIRTH_METRIC and schema.metric_value(m) for m in payload.metrics):
            self.rebirths += 1
            with self._lock:
                for topic, body in self._births():
                    client.publish(topic, body, qos=0)

    def set(self, device: str, **changes: Value) -> None:
        """Change metrics of one device (by name) and publish them as one DDATA by alias."""
        self.set_many(device, changes)

    def set_many(self, device: str, changes: dict[str, Value]) -> None:
        """``set`` for metric names that are not Python identifiers."""
        client = self._client
        if client is None:
            raise RuntimeError("edge not started")
        with self._lock:
            payload = self._payload(self._next_seq())
            for name, value in changes.items():
                datatype, _ = self.devices[device][name]
                self.devices[device][name] = (datatype, value)
                self._metric(payload, None, datatype, value, self._aliases[(device, name)])
            client.publish(self.topic("DDATA", device), payload.SerializeToString(), qos=0)

    def lose(self, n: int = 1) -> None:
        """Skip ``n`` seq numbers, as if ``n`` messages were lost on the way."""
        with self._lock:
            self._seq = (self._seq + n) % SEQ_MODULO

    def publish_raw(self, topic: str, payload: bytes) -> None:
        """Publish anything (a broken payload, say) on this node's connection."""
        if self._client is None:
            raise RuntimeError("edge not started")
        self._client.publish(topic, payload, qos=0)

    def die(self) -> None:
        """Drop the connection without DISCONNECT: the broker publishes the NDEATH Will."""
        client, self._client = self._client, None
        if client is None:
            return
        sock = client.socket()
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
        client.loop_stop()
        sock_close = getattr(sock, "close", None)
        if sock_close is not None:
            sock_close()

    def stop(self) -> None:
        """Publish NDEATH and disconnect cleanly (a planned shutdown)."""
        client, self._client = self._client, None
        if client is None:
            return
        client.publish(self.topic("NDEATH"), self._death(), qos=1).wait_for_publish(2.0)
        client.disconnect()
        client.loop_stop()


def main() -> None:
    """Count parts on one device until interrupted (state 1 running, 3 down now and then)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--group", default="Plant1")
    parser.add_argument("--edge", default="Cell-3")
    parser.add_argument("--device", default="PLC1")
    parser.add_argument("--work-order", default="")
    parser.add_argument("--interval-s", type=float, default=1.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    edge = SparkplugEdge(
        args.mqtt_url,
        args.group,
        args.edge,
        {
            args.device: {
                "Production/Good Count": (schema.UINT64, 0),
                "Production/Scrap Count": (schema.UINT64, 0),
                "Production/Work Order": (schema.STRING, args.work_order),
                "Status/Machine State": (schema.INT32, 1),
                "Status/Stop Code": (schema.INT32, 0),
            }
        },
        bdseq=int(time.time()) % SEQ_MODULO,
    )
    edge.start()
    good = scrap = 0
    try:
        while True:
            time.sleep(args.interval_s)
            if random.random() < 0.05:
                edge.set_many(args.device, {"Status/Machine State": 3, "Status/Stop Code": 17})
                time.sleep(5 * args.interval_s)
                edge.set_many(args.device, {"Status/Machine State": 1, "Status/Stop Code": 0})
            good += 1
            if random.random() < 0.03:
                scrap += 1
            edge.set_many(
                args.device, {"Production/Good Count": good, "Production/Scrap Count": scrap}
            )
    except KeyboardInterrupt:
        edge.stop()


if __name__ == "__main__":
    main()
