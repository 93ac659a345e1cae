"""Quotes promise by the same policy as the replan (issue 10): the requested date when the
plan meets it with the margin, else the day the last unit is planned to finish; over HTTP,
on real PostgreSQL and Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from tests.stack import start_stack

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
# 1,000 x P1 on L1 (100 per hour) from 06:00 on 1 Dec: ten hours, done at 16:00 that day.
FINISH_DAY = "2026-12-01"


@pytest.fixture(params=["requested", "earliest"])
def stack(request, postgres_url, redis_server):
    s = start_stack(
        database_url=postgres_url,
        redis_url=redis_server,
        mqtt_url=None,
        crm_url=None,
        origin=NOW,
        promise_policy=request.param,
        promise_margin_h=24.0,
    )
    yield s
    s.stop()


def ask(stack, requested: str) -> dict:
    body = {"sku": "P1", "qty": 1000, "requested_date": requested, "priority": "normal"}
    resp = httpx.post(f"{stack.url}/api/v1/quotes", headers=stack.auth, json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_a_quote_promises_by_the_policy(stack):
    policy = stack.runtime.settings.promise_policy
    later = ask(stack, "2026-12-10")
    for side in ("earliest", "prioritized"):
        assert later[side]["finish_date"] == FINISH_DAY and later[side]["meets_requested"]
        if policy == "requested":  # the slack stays the factory's
            assert later[side]["date"] == "2026-12-10"
            assert later[side]["rule"] == "requested date met with 24 h margin"
        else:
            assert later[side]["date"] == FINISH_DAY
            assert later[side]["rule"] == "earliest safe date"
    # 16:00 on 1 Dec plus 24 h is still within 2 Dec: the requested date holds.
    just = ask(stack, "2026-12-02")["earliest"]
    assert just["date"] == ("2026-12-02" if policy == "requested" else FINISH_DAY)


def test_a_requested_date_met_without_the_margin_gets_the_earliest_safe_date(stack):
    tight = ask(stack, FINISH_DAY)["earliest"]
    assert tight["meets_requested"] and tight["date"] == FINISH_DAY
    if stack.runtime.settings.promise_policy == "requested":
        assert tight["rule"] == "earliest safe date (requested date not met with margin)"


def test_quotes_reuse_the_problem_until_a_crm_event_or_a_new_plan(stack, monkeypatch):
    from loopline.models import quotes
    from tests.factories import order_event

    builds: list[datetime] = []
    real = quotes.build_problem

    def counted(session, live, now, window):  # type: ignore[no-untyped-def]
        builds.append(now)
        return real(session, live, now, window)

    monkeypatch.setattr(quotes, "build_problem", counted)
    first = ask(stack, "2026-12-10")
    assert ask(stack, "2026-12-10") == first and len(builds) == 1  # nothing new: reused
    assert stack.send_crm(order_event("SO-REUSE", lines=[("P1", 50)]), "reuse-1").status_code == 202
    ask(stack, "2026-12-10")
    assert len(builds) == 2  # a CRM event arrived: built afresh
    monkeypatch.setattr(quotes, "PROBLEM_REUSE_S", -1.0)
    ask(stack, "2026-12-10")
    assert len(builds) == 3  # too old to reuse


def test_a_quote_on_the_kept_problem_reads_no_product_or_line_rows(stack):
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    ask(stack, "2026-12-10")  # builds the problem the next quote reuses
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement.lower())

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        ask(stack, "2026-12-10")
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    selects = [s for s in statements if s.lstrip().startswith("select")]
    # The kept problem's lines make P1: no product or rate lookups; one read for what is new.
    assert not any(" product" in s or "line_rate" in s for s in selects), selects
    versions = [s for s in selects if "max(" in s]
    assert len(versions) == 1 and versions[0].count("max(") == 2  # both in one statement


def test_a_quote_for_an_unknown_or_unmade_product_names_the_sku(stack):
    from loopline.models.db import transaction
    from loopline.models.records import Product

    with transaction(stack.runtime.sessions) as session:
        session.add(Product(sku="P9", name="Product 9"))  # no line makes it
    ask(stack, "2026-12-10")  # a kept problem does not hide which of the two is missing
    body = {"qty": 10, "requested_date": "2026-12-10", "priority": "normal"}
    for sku, why in (("NOPE", "unknown product 'NOPE'"), ("P9", "no line can make 'P9'")):
        resp = httpx.post(
            f"{stack.url}/api/v1/quotes", headers=stack.auth, json={**body, "sku": sku}, timeout=10
        )
        assert resp.status_code == 422, resp.text
        assert why in resp.text
