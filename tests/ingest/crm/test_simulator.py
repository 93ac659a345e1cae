"""The CRM simulator sends valid, signed events; the feedback server verifies and records."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from standardwebhooks import Webhook

from loopline.ingest.crm.receive import BadBody, BadSignature, receive
from loopline.models.events import OrderCancelled, OrderUpserted, parse_crm_event
from loopline.models.intake import apply_received
from loopline.models.records import Order
from loopline.simulators import crm as crm_module
from loopline.simulators.crm import CrmFeedbackServer, CrmSimulator

TODAY = date(2026, 12, 1)
CUSTOMERS = [("C-1", "Acme"), ("C-2", "Globex")]


def simulator(url: str = "http://127.0.0.1:9", secret: str = "whsec_" + "QUJD" * 8, **kw):
    return CrmSimulator(url, secret, rng=random.Random(7), products=["P1", "P2"], **kw)


def test_initial_orders_are_valid_new_orders():
    sim = simulator()
    events = sim.initial_orders(12, CUSTOMERS, TODAY)
    assert len({e["order"]["id"] for e in events}) == 12
    priorities = Counter()
    for raw in events:
        event = parse_crm_event(raw)
        assert isinstance(event, OrderUpserted) and event.order.version == 1
        assert 1 <= len(event.order.lines) <= 2  # at most as many lines as products
        assert len({ln.sku for ln in event.order.lines}) == len(event.order.lines)
        assert 3 <= (event.order.requested_date - TODAY).days <= 20
        assert (event.order.customer.id, event.order.customer.name) in CUSTOMERS
        priorities[event.order.priority] += 1
    assert priorities["normal"] > len(events) / 2


def test_next_event_changes_parse_and_bump_versions():
    sim = simulator()
    sim.initial_orders(5, CUSTOMERS, TODAY)
    versions: dict[str, int] = {}
    cancelled: set[str] = set()
    kinds: Counter[str] = Counter()
    for _ in range(300):
        event = parse_crm_event(sim.next_event())
        oid = event.order.id
        assert oid not in cancelled, "no event follows a cancel"
        assert event.order.version > versions.get(oid, 0)
        versions[oid] = event.order.version
        if isinstance(event, OrderCancelled):
            cancelled.add(oid)
        kinds[event.type] += 1
    assert kinds["order.cancelled"] > 0 and kinds["order.upserted"] > 0
    history = Counter(k for o in sim.orders.values() for k in o.history)
    assert {"new", "qty", "date", "rush", "cancel"} <= set(history)
    assert all(o.priority == "rush" for o in sim.orders.values() if "rush" in o.history)


def test_delay_is_bounded_at_high_speed():
    sim = simulator(speed=1000.0)
    assert all(sim.delay_s() >= crm_module.MIN_EVENT_GAP_S for _ in range(50))
    slow = simulator(speed=1.0, interval_s=4.0)
    assert all(2.0 <= slow.delay_s() <= 6.0 for _ in range(50))


@pytest.fixture
def loopline_api(sessions, secret) -> Iterator[str]:
    """A real local HTTP endpoint that hands POSTs to receive(), like the API route does
    (which records them; the worker applies them)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            try:
                receive(
                    sessions,
                    source="canonical",
                    headers=dict(self.headers.items()),
                    body=body,
                    secret=secret,
                    max_body_bytes=65536,
                )
                status = 202
            except BadSignature:
                status = 401
            except BadBody:
                status = 422
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_send_is_signed_and_accepted(loopline_api, sessions, secret):
    sim = simulator(loopline_api, secret)
    events = sim.initial_orders(3, CUSTOMERS, TODAY) + [sim.next_event() for _ in range(5)]
    assert [sim.send(e) for e in events] == [202] * len(events)
    apply_received(sessions, gate=None)  # what the worker does next
    with sessions() as s:
        for order in sim.orders.values():
            stored = s.get(Order, order.id)
            assert stored is not None and stored.version == order.version
    sim.close()


def test_send_with_the_wrong_secret_is_refused(loopline_api):
    sim = simulator(loopline_api, "whsec_" + "WFla" * 8)
    assert sim.send(sim.initial_orders(1, CUSTOMERS, TODAY)[0]) == 401


def test_send_retries_connection_errors_then_raises(monkeypatch):
    monkeypatch.setattr(crm_module, "SEND_ATTEMPTS", 2)
    sim = simulator("http://127.0.0.1:1")
    with pytest.raises(httpx.ConnectError):
        sim.send(sim.initial_orders(1, CUSTOMERS, TODAY)[0])


def test_run_sends_until_stopped(loopline_api, secret, monkeypatch):
    monkeypatch.setattr(crm_module, "MIN_EVENT_GAP_S", 0.01)
    sim = simulator(loopline_api, secret, interval_s=0.01)
    sent: list[int] = []
    original = sim.send
    sim.send = lambda e: sent.append(original(e)) or sent[-1]  # type: ignore[method-assign]
    stop = threading.Event()
    thread = threading.Thread(target=sim.run, args=(stop,), daemon=True)
    thread.start()
    for _ in range(250):
        if len(sent) >= 3:
            break
        stop.wait(0.02)
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and len(sent) >= 3 and set(sent) == {202}


# ------------------------------------------------------------------ CrmFeedbackServer


def post(url: str, secret: str, payload: dict, webhook_id: str = "msg_1") -> httpx.Response:
    body = json.dumps(payload)
    now = datetime.now(UTC)
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, now, body),
    }
    return httpx.post(url, content=body, headers=headers)


def test_feedback_server_verifies_records_and_fails_on_demand(secret):
    with CrmFeedbackServer(secret) as crm:
        assert post(crm.url, secret, {"n": 1}, "msg_a").status_code == 204
        crm.fail_next(2, status=500)
        assert post(crm.url, secret, {"n": 2}, "msg_b").status_code == 500
        assert post(crm.url, secret, {"n": 3}, "msg_c").status_code == 500
        assert post(crm.url, "whsec_" + "WFla" * 8, {"n": 4}, "msg_d").status_code == 401
        got = crm.received
        assert [d.webhook_id for d in got] == ["msg_a", "msg_b", "msg_c", "msg_d"]
        assert [d.verified for d in got] == [True, True, True, False]
        assert [d.status for d in got] == [204, 500, 500, 401]
        assert crm.wait_for(lambda d: d.json() == {"n": 3}).webhook_id == "msg_c"
        assert got[0].headers["webhook-id"] == "msg_a"


def test_feedback_server_wait_for_waits_and_times_out(secret):
    with CrmFeedbackServer(secret) as crm:
        timer = threading.Timer(0.1, post, args=(crm.url, secret, {"late": True}))
        timer.start()
        assert crm.wait_for(lambda d: d.json().get("late"), timeout=5).verified
        timer.join()
        with pytest.raises(TimeoutError):
            crm.wait_for(lambda d: False, timeout=0.05)


def test_feedback_server_needs_start_for_its_url(secret):
    crm = CrmFeedbackServer(secret)
    with pytest.raises(RuntimeError):
        _ = crm.url
    crm.stop()  # harmless when never started


def test_requested_dates_never_move_into_the_past():
    sim = simulator(
        now=lambda: __import__("datetime").datetime(2026, 12, 1, tzinfo=__import__("datetime").UTC)
    )
    sim.initial_orders(5, CUSTOMERS, TODAY)
    for _ in range(200):
        raw = sim.next_event()
        if raw["type"] == "order.upserted":
            assert date.fromisoformat(raw["order"]["requested_date"]) >= TODAY + timedelta(days=2)


def test_send_redelivers_a_5xx_with_the_same_webhook_id(secret):
    seen: list[tuple[int, str]] = []

    class Flaky(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["content-length"]))
            status = 503 if not seen else 202
            seen.append((status, self.headers["webhook-id"]))
            body = json.dumps({"outcome": "accepted"}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        sim = simulator(f"http://127.0.0.1:{server.server_address[1]}", secret)
        assert sim.send(sim.initial_orders(1, CUSTOMERS, TODAY)[0]) == 202
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert [s for s, _ in seen] == [503, 202] and seen[0][1] == seen[1][1]


def test_a_delivered_order_is_a_valid_upsert_with_its_status_and_then_frozen():
    sim = simulator()
    [first] = sim.initial_orders(1, CUSTOMERS, TODAY)
    order_id = first["order"]["id"]
    raw = sim.delivered_event(order_id)
    event = parse_crm_event(raw)
    assert isinstance(event, OrderUpserted)
    assert event.order.status == "delivered" and event.order.version == 2
    assert event.order.delivered_at == event.occurred_at
    assert sim.delivered_event(order_id) is None  # delivered once
    assert sim.delivered_event("SO-NOPE") is None
    assert order_id not in {o.id for o in sim.open_orders()}
