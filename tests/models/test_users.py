"""People and scope in the core (issue 11): users, passwords, keys, and what a scope
lets one see, on SQLite and PostgreSQL (the same migration on both)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from loopline.models.clock import utcnow
from loopline.models.db import make_engine, make_sessions, migrate, transaction
from loopline.models.events import parse_crm_event
from loopline.models.live import Change
from loopline.models.orders import apply_crm_event
from loopline.models.records import Customer
from loopline.models.scope import LiveScope, scoped_line, scoped_plan, visible
from loopline.models.users import (
    OrderScope,
    UserError,
    add_user,
    authenticate,
    check_key,
    create_key,
    disable_user,
    revoke_key,
    scope_of,
)
from tests.factories import order_event, seed_small_factory

PASSWORD = "correct horse battery staple"


@pytest.fixture
def sessions(any_db_url):
    engine = make_engine(any_db_url)
    migrate(engine)
    factory = make_sessions(engine)
    with transaction(factory) as s:
        seed_small_factory(s)
        s.add(Customer(id="C-2", name="Globex", importance=1))
        s.flush()
        for order_id, customer, rep in (("SO-1", "C-1", "zhang.wei"), ("SO-2", "C-2", "li.lei")):
            body = order_event(order_id)
            body["order"]["customer"] = {"id": customer, "name": customer}
            body["order"]["sales_rep"] = rep
            apply_crm_event(
                s,
                event=parse_crm_event(body),
                source="canonical",
                webhook_id=order_id,
                raw="{}",
                actor="crm",
            )
    yield factory
    engine.dispose()


def test_users_are_checked_field_by_field(sessions):
    with transaction(sessions) as s:
        for kwargs, field in (
            ({"username": "admin"}, "username"),  # a role's name: the audit could not tell
            ({"username": "a:b"}, "username"),
            ({"roles": ["chef"]}, "roles"),
            ({"roles": []}, "roles"),
            ({"lang": "fr"}, "lang"),
            ({"password": "short"}, "password"),
        ):
            args = {"username": "ok.name", "name": "N", "roles": ["sales"], **kwargs}
            with pytest.raises(UserError) as err:
                add_user(s, actor="t", **args)  # type: ignore[arg-type]
            assert err.value.field == field
        add_user(s, username="dup", name="D", roles=["sales"], actor="t")
        with pytest.raises(UserError, match="exists already"):
            add_user(s, username="dup", name="D", roles=["sales"], actor="t")


def test_passwords_keys_and_disabling(sessions):
    now = utcnow()
    with transaction(sessions) as s:
        user = add_user(s, username="li", name="Li", roles=["sales"], password=PASSWORD, actor="t")
        assert user.password_hash and user.password_hash.startswith("$argon2id$")
        assert authenticate(s, username="li", password=PASSWORD) is user
        assert authenticate(s, username="li", password=PASSWORD + "x") is None
        assert authenticate(s, username="nobody", password=PASSWORD) is None
        key, row = create_key(s, user=user, name="excel", actor="li")
        assert check_key(s, key=key, now=now) is row and row.last_used_at == now
        # Used again within a minute: not written again (a busy script writes no row each call).
        assert check_key(s, key=key, now=now + timedelta(seconds=30)) is row
        assert row.last_used_at == now
        assert check_key(s, key=key[:-1] + ("A" if key[-1] != "A" else "B"), now=now) is None
        assert check_key(s, key="ll_nothing", now=now) is None
        other, _ = create_key(s, user=user, name="other", actor="li")
        assert revoke_key(s, key_id=row.id, actor="li") is row
        assert check_key(s, key=key, now=now) is None
        assert revoke_key(s, key_id=row.id, actor="li") is None  # already revoked
        disable_user(s, username="li", actor="t")
        assert check_key(s, key=other, now=now) is None  # a disabled user's keys stop
        assert authenticate(s, username="li", password=PASSWORD) is None


def test_a_scope_sees_its_customers_and_reps_orders(sessions):
    with transaction(sessions) as s:
        rep = add_user(s, username="r", name="R", roles=["sales"], customers=["C-2"], actor="t")
        by_rep = add_user(s, username="z", name="Z", roles=["sales"], reps=["zhang.wei"], actor="t")
        boss = add_user(s, username="b", name="B", roles=["sales", "admin"], actor="t")
        assert scope_of(boss) is None  # any role beyond sales sees everything
        vis = visible(s, scope_of(rep))
        assert vis is not None and vis.orders == {"SO-2"} and vis.work_orders == {"WO-2-1"}
        vis_z = visible(s, scope_of(by_rep))
        assert vis_z is not None and vis_z.orders == {"SO-1"}
        assert visible(s, OrderScope()) is not None and not visible(s, OrderScope()).orders
    line = {"id": "L1", "work_order": "WO-1-1", "eta": "x", "queue": ["WO-1-1", "WO-2-1"]}
    assert scoped_line(line, vis) == {
        "id": "L1",
        "work_order": None,
        "eta": None,
        "queue": ["WO-2-1"],
    }
    plan = {
        "trigger": "order SO-1 v2",
        "assignments": [{"job": "WO-1-1", "order": "SO-1"}, {"job": "WO-2-1", "order": "SO-2"}],
        "diff": {
            "trigger": "order SO-1",
            "moved": [{"job": "WO-1-1", "order": "SO-1"}],
            "added": ["WO-1-1", "WO-2-1"],
            "removed": [],
            "late": [],
            "at_risk": [],
        },
    }
    shown = scoped_plan(plan, vis)
    assert "SO-1" not in str(shown) and "WO-2-1" in str(shown)


def test_the_live_scope_filters_changes_and_learns_new_orders(sessions):
    clock = [0.0]
    scope = LiveScope(sessions, OrderScope(customers=frozenset({"C-2"})), clock=lambda: clock[0])
    assert scope.filter(Change("order", "SO-1", {}, {"status": "open"})) is None
    assert scope.filter(Change("order", "SO-2", {}, {"status": "open"})) is not None
    assert scope.filter(Change("work_order", "WO-1-1", {}, {"good": 3})) is None
    line = scope.filter(Change("line", "L1", {}, {"work_order": "WO-1-1", "queue": ["WO-1-1"]}))
    assert line is not None and line.new == {"work_order": None, "queue": []}
    assert scope.filter(Change("change", "7", {}, {"order_id": "SO-1"})) is None
    assert scope.filter(Change("kpi", "x", {}, {"v": 1})) is None  # unknown kinds: left out
    # A new order of the rep's customer arrives: its first change already reaches them.
    with transaction(sessions) as s:
        body = order_event("SO-3")
        body["order"]["customer"] = {"id": "C-2", "name": "Globex"}
        apply_crm_event(
            s,
            event=parse_crm_event(body),
            source="canonical",
            webhook_id="3",
            raw="{}",
            actor="crm",
        )
    assert scope.filter(Change("order", "SO-3", {}, {"status": "open"})) is not None
    assert scope.filter(Change("work_order", "WO-3-1", {}, {"good": 1})) is not None
    # An order moved to another customer leaves the scope at the next full read.
    with transaction(sessions) as s:
        from loopline.models.records import Order

        moved = s.get(Order, "SO-3")
        assert moved is not None
        moved.customer_id = "C-1"
    assert scope.filter(Change("order", "SO-3", {}, {"status": "open"})) is not None
    clock[0] += 31
    assert scope.filter(Change("order", "SO-3", {}, {"status": "open"})) is None


def test_changing_a_user_is_audited_and_ends_their_sessions_on_scope(sessions):
    from sqlalchemy import select

    from loopline.models.records import AuditEntry
    from loopline.models.users import update_user

    with transaction(sessions) as s:
        user = add_user(s, username="m", name="M", roles=["sales"], customers=["C-1"], actor="t")
        stamp = user.stamp
        update_user(s, username="m", actor="boss", name="Ma Min")
        assert user.stamp == stamp  # a new name keeps the person signed in
        update_user(s, username="m", actor="boss", customers=["C-2"], lang="zh-CN")
        assert user.customers == ["C-2"] and user.lang == "zh-CN" and user.stamp != stamp
        with pytest.raises(UserError) as err:
            update_user(s, username="m", actor="boss", roles=["chef"])
        assert err.value.field == "roles"
        assert update_user(s, username="ghost", actor="boss", name="G") is None
        changed = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "user.changed").order_by(AuditEntry.id)
        ).all()
        assert [c.actor for c in changed] == ["boss", "boss"]
        assert changed[1].details["customers"] == {"old": ["C-1"], "new": ["C-2"]}


def test_a_reps_order_detail_and_inbox_show_only_their_customers(sessions, live):
    """The order detail page (/orders/<id>) and the inbox read SQL, not the scoped live
    state: as a rep of another customer, another customer's order is not found and its
    follow-up tasks are not listed."""
    from dataclasses import replace as _replace

    from loopline.dashboard.live_push import Screens
    from loopline.dashboard.pages.inbox import read_tasks
    from loopline.dashboard.pages.order_detail import read_detail
    from loopline.models.followup import FollowupTask
    from loopline.models.scope import Acting, act_as, stop_acting

    with transaction(sessions) as s:
        rep = add_user(s, username="r", name="R", roles=["sales"], customers=["C-2"], actor="t")
        for order_id in ("SO-1", "SO-2"):
            s.add(
                FollowupTask(
                    order_id=order_id, kind="satisfaction", created_at=utcnow(), due_at=utcnow()
                )
            )
        scope = scope_of(rep)
    screens = _replace(
        Screens(live=live, new_async_redis=lambda: None),
        sessions=sessions,  # type: ignore[arg-type]
    )
    assert read_detail(screens, "SO-1") is not None  # nobody acting: everything
    token = act_as(Acting(name="r", roles=("sales",), scope=scope))
    try:
        assert read_detail(screens, "SO-1") is None
        assert read_detail(screens, "SO-2") is not None
        assert [t["order_id"] for t in read_tasks(screens, None) or []] == ["SO-2"]
    finally:
        stop_acting(token)
