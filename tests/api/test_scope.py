"""Data scope (issue 11): a sales rep sees and quotes only their customers' orders.

Every route of the app is tried as a rep of another customer (the routes are read off
the app, so a route added later is tried too): an order, change or alert of someone
else's customer answers exactly as one that does not exist (404, never 403), and no
answer or live change names it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
import websockets
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts

from loopline.api.app import create_app
from loopline.models.alerts import open_alert
from loopline.models.db import transaction
from loopline.models.followup import FollowupTask
from loopline.models.notify_records import Notification
from loopline.models.records import Customer, PendingChange
from loopline.models.users import add_user, create_key
from loopline.runtime import api_context
from tests.factories import order_event
from tests.stack import API_TOKEN, run_async, start_stack, wait_until

FOREIGN = "SO-7101"  # Acme's order (customer C-1, rep zhang.wei): not the rep's
MINE = "SO-7201"  # Globex's order (C-2, rep li.lei): the rep's
MISSING = "SO-7999"
# What may never reach the rep: the foreign order, its work order, its customer and rep.
SECRETS = (FOREIGN, "WO-7101-1", "Acme", "zhang.wei")
# Path parameters naming something that belongs to an order.
SCOPED_PARAMS = {"order_id", "change_id", "alert_id", "task_id", "notification_id"}
# The shared sales role token names no person: it owns no customer, so it sees no order.
SALES_TOKEN = "test-shared-sales-token"
EVERY_ORDER = (*SECRETS, MINE, "WO-7201-1", "Globex", "li.lei")
QUOTE = {"sku": "P1", "qty": 50, "requested_date": (date.today() + timedelta(days=9)).isoformat()}


def globex_event(order_id: str, version: int = 1) -> dict[str, Any]:
    body = order_event(order_id, version=version)
    body["order"]["customer"] = {"id": "C-2", "name": "Globex"}
    body["order"]["sales_rep"] = "li.lei"
    return body


@pytest.fixture(scope="module")
def api_stack(postgres_server, postgres_cluster, redis_server):
    """The API stack of tests/api/conftest.py, with a shared sales token configured."""
    name = postgres_cluster.create_database()
    stack = start_stack(
        database_url=postgres_cluster.url_for(name),
        redis_url=redis_server,
        mqtt_url=None,
        crm_url=None,
        max_body_bytes=4096,
        sales_token=SALES_TOKEN,
    )
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def world(api_stack):
    rt = api_stack.runtime
    with transaction(rt.sessions) as s:
        s.add(Customer(id="C-2", name="Globex", importance=1))
    assert api_stack.send_crm(order_event(FOREIGN), "scope-1").status_code == 202
    assert api_stack.send_crm(globex_event(MINE), "scope-2").status_code == 202
    for order_id in (FOREIGN, MINE):
        wait_until(
            lambda o=order_id: api_stack.get(f"/api/v1/orders/{o}").json().get("promised_date"),
            timeout=30,
        )
    with transaction(rt.sessions) as s:
        rep = add_user(
            s, username="rep.b", name="Rep B", roles=["sales"], customers=["C-2"], actor="test"
        )
        other = add_user(
            s, username="rep.a", name="Rep A", roles=["sales"], reps=["zhang.wei"], actor="test"
        )
        rep_key, _ = create_key(s, user=rep, name="t", actor="test")
        other_key, other_row = create_key(s, user=other, name="t", actor="test")
        change = PendingChange(
            order_id=FOREIGN,
            order_version=2,
            source="canonical",
            webhook_id="x",
            event=order_event(FOREIGN, version=2),
            impact=[],
        )
        s.add(change)
        alert = open_alert(
            s,
            key=f"order.late:{FOREIGN}",
            kind="order_late",
            entity="order",
            entity_id=FOREIGN,
            severity="warning",
            message=f"{FOREIGN} for Acme is late",
            details={"order": FOREIGN},
        )
        task = FollowupTask(
            order_id=FOREIGN,
            kind="satisfaction",
            assignee="zhang.wei",
            created_at=datetime.now(UTC),
            due_at=datetime.now(UTC),
        )
        s.add(task)
        # An order at risk told to every sales person's inbox (a rule naming role:sales).
        told = Notification(
            event="order_at_risk",
            event_key=f"risk:{FOREIGN}",
            dedupe_key=f"risk:{FOREIGN}",
            rule="order_at_risk",
            title=f"{FOREIGN} at risk",
            body=f"{FOREIGN} for Acme (zhang.wei) may be late",
            details={"order": FOREIGN},
            channel="inbox",
            channel_type="inbox",
            recipient="role:sales",
            address="role:sales",
        )
        s.add(told)
        s.flush()
        ids = {
            "change": change.id,
            "alert": alert.id,
            "key": other_row.id,
            "task": task.id,
            "notification": told.id,
        }
    return {
        "stack": api_stack,
        "rep": {"Authorization": f"Bearer {rep_key}"},
        "other": {"Authorization": f"Bearer {other_key}"},
        "shared": {"Authorization": f"Bearer {SALES_TOKEN}"},
        "ids": ids,
    }


def _params(ids: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each path parameter: (someone else's, nobody's)."""
    return {
        "order_id": (FOREIGN, MISSING),
        "change_id": (str(ids["change"]), "999999"),
        "alert_id": (str(ids["alert"]), "999999"),
        "task_id": (str(ids["task"]), "999999"),
        "notification_id": (str(ids["notification"]), "999999"),
        "session_id": ("0" * 64, "1" * 64),
        "username": ("rep.a", "nobody"),
        "key_id": (ids["key"], "000000000000"),
        "source": ("canonical", "nosuch"),
        # Lines are the factory's, not an order's: a rep may read them (a stop names no order).
        "line_id": ("L1", "L9"),
        "stop_id": ("1", "999999"),
        "rest": (f"orders/{FOREIGN}/x", "orders/x/x"),
        # A tracking link is the credential of its page; a rep cannot make one up.
        "token": ("eyJvIjoiU08tNzEwMSJ9.forged.sig", "nonsense"),
    }


@pytest.mark.parametrize(
    ("caller", "secrets"), [("rep", SECRETS), ("shared", EVERY_ORDER)], ids=["rep", "shared-token"]
)
def test_every_route_as_a_rep_of_another_customer(world, caller, secrets):
    """As a rep of another customer, and as the shared sales token (which is nobody's rep:
    no order at all is its to see)."""
    stack, rep, ids = world["stack"], world[caller], world["ids"]
    app = create_app(api_context(stack.runtime), with_dashboard=False)
    params = _params(ids)
    tried: list[str] = []
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if isinstance(route, APIWebSocketRoute):
            assert ctx.path == "/api/v1/stream", f"try {ctx.path} in the stream test too"
            continue
        if not isinstance(route, APIRoute):
            continue  # the OpenAPI document and the docs' static files
        for method in sorted(set(ctx.methods or ()) - {"HEAD", "OPTIONS"}):
            names = [p.name for p in route.dependant.path_params]
            missing = [n for n in names if n not in params]
            assert not missing, f"{method} {ctx.path}: give the test a value for {missing}"
            answers = []
            for which in (0, 1):
                path = ctx.path_format.format(**{n: params[n][which] for n in names})
                body = QUOTE if ctx.path.endswith("/quotes") else {}
                resp = httpx.request(
                    method,
                    f"{stack.url}{path}",
                    headers=rep,
                    json=body if method in ("POST", "PUT", "PATCH") else None,
                    timeout=60,
                )
                # An answer may repeat what was asked (``no order 'SO-7101'``), nothing else.
                text = resp.text
                for n in names:
                    text = text.replace(params[n][which], f"<{n}>")
                leaked = [s for s in secrets if s in text]
                assert not leaked, f"{method} {path} shows {leaked}: {resp.text[:300]}"
                # A refusal, never a crash (a 500 answers alike for anyone's and nobody's).
                assert resp.status_code < 500, f"{method} {path}: {resp.text[:300]}"
                answers.append((resp.status_code, text))
            if SCOPED_PARAMS & set(names):
                # Someone else's order, change or alert answers like one that does not exist.
                assert answers[0] == answers[1], f"{method} {ctx.path}: {answers}"
            tried.append(f"{method} {ctx.path}")
    assert "GET /api/v1/orders/{order_id}" in tried and "POST /api/v1/quotes" in tried
    assert len(tried) >= 20, tried


def test_the_rep_sees_their_own_and_the_admin_everything(world):
    stack, rep = world["stack"], world["rep"]
    mine = httpx.get(f"{stack.url}/api/v1/orders", headers=rep, timeout=10).json()
    assert [o["id"] for o in mine] == [MINE]
    one = httpx.get(f"{stack.url}/api/v1/orders/{MINE}", headers=rep, timeout=10)
    assert one.status_code == 200 and one.json()["customer"]["name"] == "Globex"
    assert httpx.get(f"{stack.url}/api/v1/orders/{FOREIGN}", headers=rep).status_code == 404
    plan = httpx.get(f"{stack.url}/api/v1/plan", headers=rep, timeout=10).json()
    assert {a["order"] for a in plan["assignments"]} == {MINE}
    lines = httpx.get(f"{stack.url}/api/v1/lines", headers=rep, timeout=10).json()
    assert all("WO-7101-1" not in ln["queue"] for ln in lines)
    assert any("WO-7201-1" in ln["queue"] for ln in lines)
    # The checks above could fail: the admin (and the other rep, by rep name) see Acme's.
    everything = stack.get("/api/v1/orders").text
    assert FOREIGN in everything and MINE in everything
    assert (
        "WO-7101-1" in stack.get("/api/v1/lines").text and FOREIGN in stack.get("/api/v1/plan").text
    )
    assert (
        FOREIGN in stack.get("/api/v1/alerts").text and FOREIGN in stack.get("/api/v1/changes").text
    )
    other = httpx.get(f"{stack.url}/api/v1/orders", headers=world["other"], timeout=10).json()
    assert [o["id"] for o in other] == [FOREIGN]


def test_the_shared_sales_token_sees_no_order_but_may_quote(world):
    stack, shared = world["stack"], world["shared"]
    assert httpx.get(f"{stack.url}/api/v1/orders", headers=shared, timeout=10).json() == []
    for order_id in (MINE, FOREIGN):
        answer = httpx.get(f"{stack.url}/api/v1/orders/{order_id}", headers=shared, timeout=10)
        assert answer.status_code == 404, answer.text
    plan = httpx.get(f"{stack.url}/api/v1/plan", headers=shared, timeout=10).json()
    assert plan["assignments"] == []
    lines = httpx.get(f"{stack.url}/api/v1/lines", headers=shared, timeout=10).json()
    assert lines and all(ln["queue"] == [] for ln in lines)
    for path in ("/api/v1/alerts", "/api/v1/changes", "/api/v1/tasks", "/api/v1/notifications"):
        text = httpx.get(f"{stack.url}{path}", headers=shared, timeout=10).text
        assert not [s for s in EVERY_ORDER if s in text], (path, text[:300])
    # It still quotes (the role's one right), learning how much would slip, not whose.
    quote = httpx.post(f"{stack.url}/api/v1/quotes", headers=shared, json=QUOTE, timeout=60)
    assert quote.status_code == 200, quote.text
    assert not [s for s in EVERY_ORDER if s in quote.text]
    # The same token on a screen (a kiosk sign-in) is as blind: the /orders page lists none.
    with httpx.Client(base_url=stack.url, timeout=30) as browser:
        assert browser.get(f"/orders?token={SALES_TOKEN}").status_code == 303
        api = browser.get("/api/v1/orders", headers={"X-Requested-By": "loopline"})
        assert api.status_code == 200 and api.json() == []
    # The admin sees both: the checks above could fail.
    assert {o["id"] for o in stack.get("/api/v1/orders").json()} >= {MINE, FOREIGN}


def test_the_live_stream_carries_only_the_reps_orders(world):
    stack, rep = world["stack"], world["rep"]
    ws_url = stack.url.replace("http", "ws") + "/api/v1/stream"

    async def listen(headers: dict[str, str], seconds: float) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        async with websockets.connect(ws_url, additional_headers=headers) as ws:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds
            if not got:  # the connection is up: make both orders change
                await loop.run_in_executor(None, _touch_both, stack)
            while loop.time() < deadline:
                try:
                    raw = await asyncio.wait_for(ws.recv(), deadline - loop.time())
                except TimeoutError:
                    break
                got.append(json.loads(raw))
        return got

    seen = run_async(listen(rep, 6.0))
    text = json.dumps(seen)
    assert MINE in text, "the rep's own order's changes reach them"
    assert not [s for s in SECRETS if s in text], [c for c in seen if FOREIGN in json.dumps(c)]
    admin = run_async(listen({"Authorization": f"Bearer {API_TOKEN}"}, 6.0))
    assert FOREIGN in json.dumps(admin)  # the same changes, unscoped
    shared = json.dumps(run_async(listen(world["shared"], 6.0)))
    assert not [s for s in EVERY_ORDER if s in shared], "the shared sales token sees no order"


_version = {"n": 1}


def _touch_both(stack: Any) -> None:
    """Change both orders as the CRM would (a new quantity, so a replan moves both)."""
    _version["n"] += 1
    n = _version["n"]
    foreign = order_event(FOREIGN, version=n, lines=[("P1", 200 + n)])
    assert stack.send_crm(foreign, f"touch-a-{n}").status_code == 202
    assert stack.send_crm(globex_event(MINE, version=n), f"touch-b-{n}").status_code == 202
