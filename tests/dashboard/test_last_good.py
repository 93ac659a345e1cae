"""Pages rendered while the live store is down: the last good data greyed, or a notice;
never an exception (which leaves the browser a blank page)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
import redis

from loopline.dashboard import ids
from loopline.dashboard.last_good import LastGood
from loopline.dashboard.live_push import BANNER_SHOWN, Screens
from loopline.dashboard.pages import alerts, board, orders, plan, wall
from loopline.models.live import LiveState
from loopline.models.live_store import open_live_store
from tests.dashboard.seed import seed
from tests.dashboard.test_views import find
from tests.servers import free_port

NOW = datetime(2026, 11, 28, 8, 30, tzinfo=UTC)
LATER = NOW + timedelta(minutes=47)


@pytest.fixture
def up() -> Screens:
    store = open_live_store(None)
    live = LiveState(store.sync)
    seed(live, NOW)
    return Screens(live=live, new_async_redis=store.new_async, tz=UTC, now=lambda: NOW)


@pytest.fixture
def down(up: Screens) -> Screens:
    """The same screens (and their last good readings) with Redis gone, 47 minutes on."""
    dead = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", decode_responses=True)
    return dataclasses.replace(up, live=LiveState(dead), now=lambda: LATER)


PAGES = [
    (wall.layout, ids.WALL, ids.WALL_GRID, "Line 2 · CNC"),
    (board.layout, ids.BOARD, ids.BOARD_ROWS, "SO-1002"),
    (alerts.layout, ids.ALERTS, ids.ALERTS_LIST, "A-1"),
]


@pytest.mark.parametrize(("layout", "live_ids", "body_id", "expected"), PAGES)
def test_a_page_opened_in_an_outage_shows_the_last_good_data_greyed(
    up, down, layout, live_ids, body_id, expected
):
    fresh = layout(up)
    assert find(fresh, live_ids.stale).className == "stale-banner"
    page = layout(down)
    banner = find(page, live_ids.stale)
    assert banner.className == BANNER_SHOWN
    assert banner.children == "Live data stale since 08:30 — reconnecting…"
    assert expected in repr(find(page, body_id))
    start = find(page, live_ids.start).data
    assert start["shown"] is not None and start["notice"] == banner.children


@pytest.mark.parametrize(("layout", "live_ids", "body_id", "expected"), PAGES)
def test_a_page_never_read_says_since_when_live_data_is_unavailable(
    down, layout, live_ids, body_id, expected
):
    down = dataclasses.replace(down, last_good=LastGood())
    page = layout(down, lang="zh-CN")
    banner = find(page, live_ids.stale)
    assert banner.className == BANNER_SHOWN
    assert banner.children == "实时数据自 09:17 起不可用，正在重新连接…"
    assert find(page, body_id).children == []  # drawn by the stream once the store answers
    start = find(page, live_ids.start).data
    assert start["shown"] is None


def test_the_orders_lookup_searches_the_last_good_orders_in_an_outage(up, down):
    orders.layout(up)
    page = orders.layout(down, q="globex")
    [note, table] = find(page, ids.ORDERS_RESULTS).children
    assert note.className == "stale-note" and "08:30" in note.children
    assert "SO-1002" in repr(table)


def test_last_good_readings_are_bounded_and_copied():
    kept = LastGood(max_readings=2)
    value = {"a": [1]}
    kept.read("x", lambda: value, NOW)
    value["a"].append(2)  # the caller's copy changes; the kept one does not
    for key in ("y", "z"):
        kept.read(key, lambda: {}, NOW)

    def fail() -> dict[str, list[int]]:
        raise redis.ConnectionError("gone")

    assert kept.read("x", fail, LATER).value is None  # evicted: two newer keys
    assert kept.read("z", fail, LATER).value == {}
    kept = LastGood()
    kept.read("x", lambda: value, NOW)
    value["a"].append(3)
    reading = kept.read("x", fail, LATER)
    assert reading.value == {"a": [1, 2]} and reading.read_at == NOW
    assert reading.down_since == LATER and reading.store == "redis"


def test_the_plan_page_keeps_its_last_good_reading_through_a_database_outage(up, sessions):
    from loopline.models.db import make_engine, make_sessions

    with_db = dataclasses.replace(up, sessions=sessions)
    plan.layout(with_db)
    dead = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone")
    try:
        down = dataclasses.replace(with_db, sessions=make_sessions(dead), now=lambda: LATER)
        page = plan.layout(down, lang="zh-CN")
        banner = find(page, ids.PLAN.stale)
        assert banner.className == BANNER_SHOWN and "08:30" in banner.children
        assert find(page, ids.PLAN_REVISION).children  # the last good sections, greyed
        never = plan.layout(dataclasses.replace(down, last_good=LastGood()))
        assert "unavailable since 09:17" in find(never, ids.PLAN.stale).children
    finally:
        dead.dispose()


def test_a_decision_refused_by_an_outage_says_so():
    body = {"detail": "the database cannot be reached; retry later", "store": "database"}
    text, css = plan.decision_message({"status": 503, "body": body, "change": 7}, "zh-CN")
    assert text == "变更 #7 未能处理：系统暂时不可用，请稍后重试"
    assert "refused" in css
