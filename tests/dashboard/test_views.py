"""What each page shows, computed without a browser: views, sorting, diffs and layouts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboard import ids
from dashboard.live_push import Screens, diff_singles, diff_views
from dashboard.pages import alerts, board, orders, wall
from models.live import LiveState, Update
from models.live_store import open_live_store
from tests.dashboard.seed import seed

NOW = datetime(2026, 11, 28, 8, 30, tzinfo=UTC)


@pytest.fixture
def screens() -> Screens:
    store = open_live_store(None)
    live = LiveState(store.sync)
    seed(live, NOW)
    return Screens(live=live, new_async_redis=store.new_async, tz=UTC, now=lambda: NOW)


def find(component, component_id):
    """The component with ``component_id`` in a layout tree, or None."""
    if getattr(component, "id", None) == component_id:
        return component
    children = getattr(component, "children", None)
    if children is None or isinstance(children, str):
        return None
    for child in children if isinstance(children, list | tuple) else [children]:
        hit = find(child, component_id)
        if hit is not None:
            return hit
    return None


def test_a_down_tile_shows_its_reason_and_the_current_work_order(screens):
    line = {
        "id": "L2",
        "name": "CNC",
        "state": "down",
        "reason": "jam on feeder",
        "since": (NOW - timedelta(minutes=25)).isoformat(),
        "rate_uph": 41.5,
        "nominal_uph": 45,
        "work_order": "WO-1",
        "queue": ["WO-1", "WO-2"],
        "eta": "2026-11-28T11:05:00Z",
    }
    wo = {"id": "WO-1", "sku": "GEAR-B", "qty": 2000, "good": 500, "scrap": 0}
    view = wall.tile_view(line, wo, lang="en", screens=screens, now=NOW)
    assert view[ids.TILE]["className"] == "tile tile--down"
    assert view[ids.TILE_STATE]["children"] == "Down"
    assert view[ids.TILE_REASON] == {"children": "jam on feeder", "className": "tile-reason"}
    assert view[ids.TILE_SINCE]["children"] == "since 08:05 · 25 min"
    assert view[ids.TILE_WO]["children"] == "WO-1 · GEAR-B"
    assert view[ids.TILE_BAR]["style"] == {"width": "25.0%"}
    assert view[ids.TILE_COUNT]["children"] == "500 / 2,000"
    assert view[ids.TILE_RATE]["children"] == "42"
    assert view[ids.TILE_ETA]["children"] == "11:05"
    assert view[ids.TILE_NEXT]["children"] == "Next: WO-2"


def test_a_running_tile_hides_a_leftover_reason_and_a_line_without_work_says_so(screens):
    line = {"id": "L1", "state": "running", "reason": "old jam", "work_order": None}
    view = wall.tile_view(line, None, lang="zh-CN", screens=screens, now=NOW)
    assert view[ids.TILE_REASON]["className"].endswith("--empty")
    assert view[ids.TILE_WO]["children"] == "无工单"
    assert view[ids.TILE_NAME]["children"] == "L1"
    unavailable = wall.tile_view({"id": "L4"}, None, lang="en", screens=screens, now=NOW)
    assert unavailable[ids.TILE]["className"] == "tile tile--unavailable"


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, "cols-1 rows-1"),
        (4, "cols-2 rows-2"),
        (5, "cols-3 rows-2"),
        (6, "cols-3 rows-2"),
        (9, "cols-3 rows-3"),
        (12, "cols-4 rows-3"),
    ],
)
def test_the_grid_fills_the_screen(n, expected):
    assert wall.grid_class(n) == f"wall-grid {expected}"


def test_the_board_sorts_by_risk_then_promise_and_hides_finished_orders():
    orders_ = {
        "A": {"id": "A", "risk": "on_track", "promised_date": "2026-12-01", "status": "open"},
        "B": {"id": "B", "risk": "late", "promised_date": "2026-12-09", "status": "open"},
        "C": {
            "id": "C",
            "risk": "at_risk",
            "promised_date": None,
            "requested_date": "2026-12-02",
            "status": "in_progress",
        },
        "D": {"id": "D", "risk": "late", "promised_date": "2026-12-03", "status": "open"},
        "E": {"id": "E", "risk": "done", "status": "completed"},
        "F": {"id": "F", "risk": "on_track", "status": "cancelled"},
    }
    assert board.board_order(orders_) == ["D", "B", "C", "A"]


def test_an_eta_after_the_promise_is_marked(screens):
    order = {
        "id": "SO-1",
        "risk": "late",
        "promised_date": "2026-11-29",
        "eta": "2026-11-30T09:00:00Z",
        "progress": 0.25,
        "priority": "rush",
    }
    view = board.row_view(order, lang="en", screens=screens, now=NOW)
    assert view[ids.ROW_ETA] == {"children": "30 Nov 09:00", "className": "cell-eta cell-eta--late"}
    assert view[ids.ROW_RISK] == {"children": "Late", "className": "badge badge--late"}
    assert view[ids.ROW_PRIORITY]["children"] == "Rush"
    assert view[ids.ROW_PCT]["children"] == "25 %"


def test_alerts_open_first_then_severity_then_newest():
    alerts_ = {
        "a": {"id": "a", "status": "open", "severity": "info", "opened_at": "2026-11-28T08:00Z"},
        "b": {
            "id": "b",
            "status": "acked",
            "severity": "critical",
            "opened_at": "2026-11-28T08:10Z",
        },
        "c": {
            "id": "c",
            "status": "open",
            "severity": "critical",
            "opened_at": "2026-11-28T07:00Z",
        },
        "d": {
            "id": "d",
            "status": "open",
            "severity": "critical",
            "opened_at": "2026-11-28T08:20Z",
        },
    }
    assert alerts.alert_order(alerts_) == ["d", "c", "a", "b"]


def test_search_finds_by_id_or_customer_exact_id_first():
    found = orders.search_orders(
        [
            {"id": "SO-10", "customer": "Acme"},
            {"id": "SO-1", "customer": "Globex"},
            {"id": "SO-100", "customer": "so-1 fans"},
        ],
        " so-1 ",
    )
    assert [o["id"] for o in found][0] == "SO-1"
    assert {o["id"] for o in found} == {"SO-1", "SO-10", "SO-100"}
    assert [o["id"] for o in orders.search_orders([{"id": "X", "customer": "Acme"}], "acm")] == [
        "X"
    ]
    assert orders.search_orders([{"id": "X", "customer": "Acme"}], "zzz") == []


def test_diffs_carry_only_changed_props():
    old = {"L1": {"tile": {"className": "tile tile--running"}, "tile-eta": {"children": "10:00"}}}
    new = {
        "L1": {"tile": {"className": "tile tile--running"}, "tile-eta": {"children": "10:05"}},
        "L2": {"tile": {"className": "tile tile--down"}},
    }
    assert list(diff_views(old, new)) == [
        ("L1", "tile-eta", {"children": "10:05"}),
        ("L2", "tile", {"className": "tile tile--down"}),
    ]
    assert list(diff_singles({"c": {"children": "08:30"}}, {"c": {"children": "08:30"}})) == []


def test_layouts_render_from_the_live_state_and_ignore_other_query_params(screens):
    page = wall.layout(screens, lang="zh-CN", token="kiosk-token")
    start = find(page, ids.WALL.start).data
    assert start["params"]["lang"] == "zh-CN" and start["token"]
    assert start["shown"]["order"] == ["L1", "L2", "L3", "L4"]
    assert start["shown"]["views"]["L3"][ids.TILE_STATE]["children"] == "换型"
    assert find(page, ids.part(ids.TILE_REASON, "line", "L3")).children == "GEAR-A → GEAR-B"

    board_page = board.layout(screens, lang="en")
    assert find(board_page, ids.BOARD.start).data["shown"]["order"][0] == "SO-1003"
    assert find(board_page, ids.BOARD_GANTT).figure.layout.uirevision == "gantt"

    alerts_page = alerts.layout(screens, role="supervisor")
    assert find(alerts_page, ids.ALERTS.start).data["shown"]["order"] == ["A-1", "A-2"]

    orders_page = orders.layout(screens, q="initech")
    assert "SO-1003" in str(find(orders_page, ids.ORDERS_RESULTS).children)


def test_a_site_filter_keeps_other_sites_off_the_wall(screens):
    screens.live.apply(
        [Update("line", "X1", {"name": "Other", "site": "plant-2", "state": "running"})]
    )
    assert find(wall.layout(screens), ids.WALL.start).data["shown"]["order"][-1] == "X1"
    only = find(wall.layout(screens, site="plant-2"), ids.WALL.start).data
    assert only["shown"]["order"] == ["X1"]
    assert only["shown"]["singles"][ids.WALL_SITE]["children"] == "plant-2"
