"""On a broker with accounts and ACLs: the ingest's account (as `loopline devices` writes it)
may publish the Sparkplug host's STATE and rebirth commands, and an edge its node's topics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from loopline.ingest.devices import DeviceFiles, hash_password
from loopline.ingest.sparkplug.mapping import SparkplugMapping
from loopline.ingest.sparkplug.service import SparkplugIngest
from loopline.models.clock import Clock
from loopline.models.db import transaction
from loopline.models.events import parse_crm_event
from loopline.models.orders import apply_crm_event
from loopline.models.replan import sync_live
from loopline.simulators.sparkplug_edge import SparkplugEdge
from tests.factories import order_event
from tests.ingest.mqtt.conftest import wait_for
from tests.ingest.sparkplug.conftest import GOOD, STATE, plant
from tests.ingest.sparkplug.test_ingest import _metrics
from tests.servers import MosquittoServer

WAIT_S = 10.0


@pytest.fixture
def secured(artifacts_dir: Path) -> Iterator[MosquittoServer]:
    server = MosquittoServer.with_accounts()
    DeviceFiles(server.password_file, server.acl_file).ensure_ingest(
        username="ingest", password="ingest-pw"
    )
    with server.password_file.open("a") as f:
        f.write(f"edge:{hash_password('edge-pw')}\n")
    with server.acl_file.open("a") as f:
        # A hand-written account for the edge node: its own topics, its commands, host STATE.
        f.write(
            "\nuser edge\ntopic write spBv1.0/G/+/E1/#\ntopic read spBv1.0/G/NCMD/E1\n"
            "topic read spBv1.0/STATE/#\n"
        )
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.save_log(artifacts_dir / "servers")
        server.close()


def test_the_ingest_account_may_announce_itself_and_ask_for_rebirths(secured, sessions, live):
    with transaction(sessions) as s:
        apply_crm_event(
            s,
            event=parse_crm_event(order_event("SO-1", lines=[("P1", 100)])),
            source="canonical",
            webhook_id="w1",
            raw="{}",
            actor="crm",
        )
    with sessions() as s:
        sync_live(s, live, now=datetime.now(UTC))
    mapping: SparkplugMapping = plant()
    base = f"{secured.host}:{secured.port}"
    spb = SparkplugIngest(
        f"mqtt://ingest:ingest-pw@{base}", "spb-acl", mapping, sessions, live, Clock()
    )
    spb.start()
    edge = SparkplugEdge(f"mqtt://edge:edge-pw@{base}", "G", "E1", {"PLC1": _metrics()})
    states: list[bytes] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="acl-watch")
    watcher.username_pw_set("edge", "edge-pw")
    watcher.on_message = lambda c, u, m: states.append(bytes(m.payload))
    try:
        assert wait_for(lambda: spb.consumer.subscribed, WAIT_S)
        edge.start()
        assert wait_for(lambda: (live.get("line", "L1") or {}).get("state") == "running", WAIT_S)
        edge.lose(2)
        edge.set_many("PLC1", {GOOD: 5})
        assert wait_for(lambda: edge.rebirths == 1, WAIT_S)  # the NCMD got through the ACL
        watcher.connect(secured.host, secured.port)
        watcher.subscribe("spBv1.0/STATE/loopline", qos=1)
        watcher.loop_start()
        assert wait_for(lambda: any(b'"online": true' in s for s in states), WAIT_S), states
        edge.set_many("PLC1", {STATE: 3})
        assert wait_for(lambda: live.get("line", "L1")["state"] == "down", WAIT_S)
    finally:
        watcher.loop_stop()
        watcher.disconnect()
        edge.stop()
        spb.stop()
        time.sleep(0.1)
