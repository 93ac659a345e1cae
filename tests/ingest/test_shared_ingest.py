"""Two ingest members in one shared group on a real Mosquitto and Redis: the broker splits
a line's messages between them, and the live state still ends where the newest says."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt

from loopline.ingest.mqtt.consumer import MqttConsumer
from loopline.ingest.shopfloor import ShopfloorHandler
from loopline.models.clock import Clock
from loopline.models.db import transaction
from loopline.models.events import parse_crm_event
from loopline.models.orders import apply_crm_event
from loopline.models.replan import sync_live
from tests.factories import order_event

N = 600


def _wait(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_two_members_share_a_line_and_keep_its_order(sessions, live, mqtt_broker, request):
    with transaction(sessions) as s:
        apply_crm_event(
            s,
            event=parse_crm_event(order_event("SO-1", lines=[("P1", 10 * N)])),
            source="canonical",
            webhook_id="w1",
            raw="{}",
            actor="crm",
        )
    with sessions() as s:
        sync_live(s, live, now=datetime.now(UTC))
    handlers = [ShopfloorHandler(sessions, live, Clock(), serialize=True) for _ in range(2)]
    tag = f"{request.node.name[:20]}-{time.monotonic_ns()}"
    members = [
        MqttConsumer(mqtt_broker.url, f"m{k}-{tag}", h, shared_group="t", batch_max=50)
        for k, h in enumerate(handlers)
    ]
    for m in members:
        m.start()
    try:
        assert _wait(lambda: all(m.subscribed for m in members))
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{tag}")
        pub.connect(mqtt_broker.host, mqtt_broker.port)
        pub.loop_start()
        ts = datetime.now(UTC).isoformat()
        infos = []
        for seq in range(1, N + 1):
            if seq % 10 == 0:  # a state report every 10th: down, then running, ...
                state = "down" if seq % 20 else "running"
                body = {"seq": seq, "ts": ts, "state": state, "reason": "jam"}
                infos.append(pub.publish("loopline/v1/s1/L1/state", json.dumps(body), qos=1))
            else:
                body = {"seq": seq, "ts": ts, "work_order": "WO-1-1", "good": seq, "scrap": 0}
                infos.append(pub.publish("loopline/v1/s1/L1/progress", json.dumps(body), qos=1))
        for info in infos:
            info.wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        assert _wait(lambda: sum(h.applied for h in handlers) >= N)
    finally:
        for m in members:
            m.stop(timeout=5)
    assert all(h.applied > 0 for h in handlers), "the broker gave one member everything"
    wo, line = live.get("work_order", "WO-1-1"), live.get("line", "L1")
    assert wo["good"] == N - 1  # the last progress report (seq 599)
    assert (line["seq"], line["state_seq"], line["state"]) == (N, N, "running")
