"""Error answers of the REST API on PostgreSQL: bounded ids, NUL refused, store outages as
503, and every error body matching the OpenAPI document."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest

from tests.factories import order_event
from tests.servers import PostgresServer, RedisServer
from tests.stack import DISPLAY_TOKEN, start_stack, wait_until

TOO_BIG = 2**31  # one past PostgreSQL's integer


# -- ids and NUL ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "param"),
    [
        ("post", f"/api/v1/alerts/{TOO_BIG}/ack", "alert_id"),
        ("get", f"/api/v1/changes/{TOO_BIG}", "change_id"),
        ("post", f"/api/v1/changes/{TOO_BIG}/approve", "change_id"),
        ("post", f"/api/v1/changes/{TOO_BIG}/reject", "change_id"),
        ("get", f"/api/v1/changes/{2**70}", "change_id"),
        ("get", "/api/v1/changes/0", "change_id"),
    ],
)
def test_an_id_no_row_can_have_is_a_422_naming_it(api_stack, method, path, param):
    resp = getattr(api_stack, method)(path)
    assert resp.status_code == 422, resp.text
    [error] = resp.json()["detail"]
    assert error["field"] == param and error["location"] == "path"


def test_an_id_in_range_that_is_absent_is_still_a_404(api_stack):
    assert api_stack.post(f"/api/v1/alerts/{TOO_BIG - 1}/ack").status_code == 404
    assert api_stack.get(f"/api/v1/changes/{TOO_BIG - 1}").status_code == 404


@pytest.mark.parametrize(
    ("path", "param", "location"),
    [
        ("/api/v1/orders?status=%00", "status", "query"),
        ("/api/v1/orders?customer=acme%00", "customer", "query"),
        ("/api/v1/orders/SO-1%00", "order_id", "path"),
        ("/api/v1/alerts?all=true&x=%00", "x", "query"),
        ("/api/v1/changes?status=%00", "status", "query"),
    ],
)
def test_a_nul_in_a_parameter_is_a_422_naming_it(api_stack, path, param, location):
    resp = api_stack.get(path)
    assert resp.status_code == 422, resp.text
    fields = {(e["field"], e["location"]) for e in resp.json()["detail"]}
    assert (param, location) in fields


def test_a_nul_in_a_parameter_is_refused_before_the_caller_is_known(api_stack):
    # The check runs ahead of every route: a NUL never reaches a query, whoever sends it.
    resp = httpx.get(f"{api_stack.url}/api/v1/orders?status=%00")
    assert resp.status_code == 422


# -- the OpenAPI tells the truth about errors -------------------------------------------------
def _error_schema(spec: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    op = spec["paths"][path][method]
    assert str(status) in op["responses"], f"{method.upper()} {path}: {status} undocumented"
    return op["responses"][str(status)]["content"]["application/json"]["schema"]  # type: ignore[no-any-return]


def _check(spec: dict[str, Any], resp: httpx.Response, method: str, path: str) -> None:
    schema = _error_schema(spec, method, path, resp.status_code)
    # The documented schema's $refs point into the spec's components: carry them along.
    jsonschema.Draft202012Validator({**schema, "components": spec["components"]}).validate(
        resp.json()
    )


def test_every_error_body_matches_the_documented_schema(api_stack):
    spec = httpx.get(f"{api_stack.url}/openapi.json").json()
    display = {"Authorization": f"Bearer {DISPLAY_TOKEN}"}
    url = api_stack.url
    cases: list[tuple[httpx.Response, str, str, int]] = [
        (httpx.get(f"{url}/api/v1/orders"), "get", "/api/v1/orders", 401),
        (api_stack.get("/api/v1/orders?limit=0"), "get", "/api/v1/orders", 422),
        (api_stack.get("/api/v1/orders/NOPE"), "get", "/api/v1/orders/{order_id}", 404),
        (api_stack.get("/api/v1/changes/1"), "get", "/api/v1/changes/{change_id}", 404),
        (
            httpx.post(f"{url}/api/v1/alerts/1/ack", headers=display),
            "post",
            "/api/v1/alerts/{alert_id}/ack",
            403,
        ),
        (
            api_stack.post(f"/api/v1/alerts/{TOO_BIG}/ack"),
            "post",
            "/api/v1/alerts/{alert_id}/ack",
            422,
        ),
        (
            api_stack.post("/api/v1/changes/1/approve", json={"note": 5, "x": 1}),
            "post",
            "/api/v1/changes/{change_id}/approve",
            422,
        ),
        (api_stack.post("/api/v1/quotes", json={"qty": -1}), "post", "/api/v1/quotes", 422),
        (
            api_stack.send_crm(order_event("SO-E1", lines=[("NOPE", 1)]), "err-1"),
            "post",
            "/api/v1/crm/events",
            422,
        ),
    ]
    for resp, method, path, status in cases:
        assert resp.status_code == status, (method, path, resp.status_code, resp.text)
        _check(spec, resp, method, path)
    # 409 (already decided) and 503 are documented where they can happen.
    for method, path in (
        ("post", "/api/v1/changes/{change_id}/approve"),
        ("post", "/api/v1/changes/{change_id}/reject"),
    ):
        _error_schema(spec, method, path, 409)
    for path, ops in spec["paths"].items():
        for method in ops:
            if path.startswith("/api/v1/") and path != "/api/v1/healthz":
                _error_schema(spec, method, path, 503)
                _error_schema(spec, method, path, 422)
            if path.startswith("/api/v1/") and not path.startswith(
                ("/api/v1/crm", "/api/v1/health")
            ):
                _error_schema(spec, method, path, 401)


# -- store outages ------------------------------------------------------------------------------
def _assert_store_down(resp: httpx.Response, store: str) -> None:
    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert body["store"] == store and body["detail"]
    assert int(resp.headers["retry-after"]) > 0


@pytest.fixture
def own_redis(artifacts_dir):
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.save_log(artifacts_dir / "servers")
        server.close()


@pytest.fixture
def own_postgres(artifacts_dir):
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.save_log(artifacts_dir / "servers")
        server.close()


def test_a_redis_outage_is_a_503_naming_redis_and_the_api_recovers(postgres_url, own_redis):
    stack = start_stack(
        database_url=postgres_url, redis_url=own_redis.url, mqtt_url=None, crm_url=None
    )
    spec = httpx.get(f"{stack.url}/openapi.json").json()
    try:
        assert stack.send_crm(order_event("SO-R1"), "r-1").status_code == 202
        assert wait_until(lambda: stack.get("/api/v1/orders").json())  # the worker applied it
        own_redis.stop()
        for path, route in (("/api/v1/lines", "/api/v1/lines"), ("/api/v1/orders", None)):
            resp = stack.get(path)
            _assert_store_down(resp, "redis")
            if route:
                _check(spec, resp, "get", route)
        health = httpx.get(f"{stack.url}/api/v1/healthz", timeout=10)
        assert health.status_code == 503
        assert health.json()["down"] == ["redis"] and health.json()["database"] == "ok"
        assert int(health.headers["retry-after"]) > 0
        _check(spec, health, "get", "/api/v1/healthz")
        own_redis.restart()
        assert wait_until(lambda: stack.get("/api/v1/lines").status_code == 200, timeout=15)
        assert httpx.get(f"{stack.url}/api/v1/healthz").json()["down"] == []
    finally:
        if not own_redis.running:
            own_redis.restart()
        stack.stop()


def test_a_database_outage_is_a_503_naming_the_database(own_postgres, redis_server):
    url = own_postgres.url_for(own_postgres.create_database())
    stack = start_stack(database_url=url, redis_url=redis_server, mqtt_url=None, crm_url=None)
    try:
        assert stack.get("/api/v1/orders").status_code == 200
        own_postgres.stop()
        _assert_store_down(stack.get("/api/v1/orders"), "database")
        _assert_store_down(stack.get("/api/v1/alerts"), "database")
        health = httpx.get(f"{stack.url}/api/v1/healthz", timeout=10)
        assert health.status_code == 503 and health.json()["down"] == ["database"]
        own_postgres.restart()
        assert wait_until(lambda: stack.get("/api/v1/orders").status_code == 200, timeout=15)
    finally:
        if not own_postgres.running:
            own_postgres.restart()
        stack.stop()
