"""What each page shows, computed without a browser: views, sorting, diffs and layouts."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest

from loopline.dashboard import ids
from loopline.dashboard.live_push import Screens, diff_singles, diff_views
from loopline.dashboard.pages import alerts, board, orders, plan, wall
from loopline.models.db import transaction
from loopline.models.live import Change, LiveState, Update
from loopline.models.live_store import open_live_store
from loopline.models.purchasing import open_purchase_requests
from loopline.models.records import (
    Material,
    Order,
    OrderLine,
    PendingChange,
    PlanRevision,
    PurchaseRequest,
    WorkOrder,
)
from loopline.models.views import current_plan
from tests.dashboard.seed import seed
from tests.factories import order_event

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
    # Down, it makes nothing: no rate from before it stopped, no ETA at that rate.
    assert view[ids.TILE_RATE]["children"] == "—"
    assert view[ids.TILE_ETA]["children"] == "—"
    assert view[ids.TILE_NEXT]["children"] == "Next: WO-2"
    running = wall.tile_view({**line, "state": "running"}, wo, lang="en", screens=screens, now=NOW)
    assert running[ids.TILE_RATE] == {"children": "42", "className": "metric-value"}
    assert running[ids.TILE_ETA]["children"] == "11:05"
    fast = wall.tile_view(
        {**line, "state": "running", "rate_uph": 25832.0}, wo, lang="en", screens=screens, now=NOW
    )
    # A fast line's rate is set smaller, as a long ETA is, so it cannot overlap them.
    assert fast[ids.TILE_RATE] == {
        "children": "25,832",
        "className": "metric-value metric-value--long",
    }


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
    # The lines' plan comes first, above the long order table, not below it.
    text = str(board_page)
    assert text.index(repr(ids.BOARD_GANTT)) < text.index(repr(ids.BOARD_ROWS))

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
    # Without a known name, the id.
    assert only["shown"]["singles"][ids.WALL_SITE]["children"] == "plant-2"


def test_the_wall_header_names_the_site_not_its_id(screens):
    screens.live.apply(
        [
            Update(
                "line",
                "X1",
                {"name": "Other", "site": "plant-2", "site_name": "Plant Two", "state": "idle"},
            )
        ]
    )
    only = find(wall.layout(screens, site="plant-2"), ids.WALL.start).data
    assert only["shown"]["singles"][ids.WALL_SITE]["children"] == "Plant Two"


# -- /plan ---------------------------------------------------------------------------------
def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def seed_plan_records(sessions) -> None:
    """SO-H stored at v1, a pending v2 that would push SO-V past its promise; a pending new
    order; a rejected change; a short material; one plan revision."""
    with transaction(sessions) as s:
        for oid, qty, requested, promised in (
            ("SO-H", 500, date(2026, 12, 3), None),
            ("SO-V", 400, date(2026, 12, 2), date(2026, 12, 2)),
        ):
            order = Order(
                id=oid,
                customer_id="C-1",
                version=1,
                status="open",
                priority="normal",
                requested_date=requested,
                promised_date=promised,
                promise_version=1 if promised else None,
            )
            order.lines = [OrderLine(line_no=1, sku="P2", qty=qty)]
            order.work_orders = [WorkOrder(id=f"WO-{oid[3:]}-1", line_no=1, sku="P2", qty=qty)]
            s.add(order)
        s.add(Material(id="M1", name="Steel bar", unit="kg", on_hand=10, lead_time_days=4))
        s.flush()
        impact = [
            {
                "order_id": "SO-V",
                "promised_date": "2026-12-02",
                "planned_end_before": "2026-12-02T10:00:00Z",
                "planned_end_after": "2026-12-03T14:00:00Z",
                "slip_h": 14.0,
                "delay_h": 28.0,
            }
        ]
        changes = [
            ("SO-H", 2, order_event("SO-H", 2, [("P2", 1500)], date(2026, 12, 1), "high")),
            ("SO-N", 1, order_event("SO-N", 1, [("P1", 300)], date(2026, 12, 1))),
            ("SO-R", 1, order_event("SO-R", 1, [("P1", 10)], date(2026, 12, 1))),
        ]
        for i, (oid, version, event) in enumerate(changes):
            s.add(
                PendingChange(
                    order_id=oid,
                    order_version=version,
                    source="canonical",
                    webhook_id=f"w-{i}",
                    event=event,
                    impact=impact,
                    status="rejected" if oid == "SO-R" else "pending",
                    created_at=NOW - timedelta(minutes=30 - i),
                    decided_at=NOW if oid == "SO-R" else None,
                    decided_by="production_manager" if oid == "SO-R" else None,
                )
            )
        rev = PlanRevision(
            plan_start=NOW,
            trigger="crm SO-V v1",
            solver="ils",
            jobs=2,
            total_weighted_tardiness_h=14.0,
            solve_ms=120.0,
            assignments=[{"job": "WO-V-1", "line": "L1"}],
            diff={
                "trigger": "crm SO-V v1",
                "moved": [
                    {
                        "job": "WO-V-1",
                        "order": "SO-V",
                        "from_line": "L1",
                        "to_line": "L1",
                        "start_shift_h": 20.0,
                        "end_shift_h": 20.5,
                    }
                ],
                "added": ["WO-H-1"],
                "removed": [],
                "late": [
                    {
                        "job": "WO-V-1",
                        "order": "SO-V",
                        "line": "L1",
                        "tardiness_h": 14.0,
                        "reason": "rush order SO-H took its place on line L1",
                        "cause": {"kind": "rush", "job": "WO-H-1", "order": "SO-H", "line": "L1"},
                    }
                ],
                "at_risk": [
                    {
                        "job": "WO-H-1",
                        "order": "SO-H",
                        "line": "L1",
                        "tardiness_h": 0.0,
                        "slack_h": 1.5,
                        "reason": "waits for material M1 until 2026-11-29T06:00:00Z",
                        "cause": {
                            "kind": "material",
                            "material": "M1",
                            "until": "2026-11-29T06:00:00Z",
                            "short": True,
                        },
                    }
                ],
            },
        )
        s.add(rev)
        s.flush()
        s.add(
            PurchaseRequest(
                material_id="M1",
                qty=170.0,
                needed_by=NOW + timedelta(days=1),
                arrives_if_ordered_now=NOW + timedelta(days=4),
                jobs=["WO-V-1"],
                plan_revision_id=rev.id,
                status="open",
            )
        )


@pytest.fixture
def plan_screens(screens, sessions) -> Screens:
    seed_plan_records(sessions)
    # No live record of SO-V: the impact's customer comes from SQL all the same.
    return dataclasses.replace(screens, sessions=sessions)


def test_the_plan_reads_what_the_api_reads(plan_screens):
    data = plan.read_plan_page(plan_screens.sessions, plan_screens.live)
    assert data is not None
    pending = data["changes"]["pending"]
    # Oldest first: a new change joins the end, nothing moves under the cursor.
    assert [c["order_id"] for c in pending] == ["SO-H", "SO-N"]
    assert [c["order_id"] for c in data["changes"]["decided"]] == ["SO-R"]
    assert pending[0]["current"]["version"] == 1  # the order as stored
    assert pending[1]["current"] is None  # a new order
    assert pending[0]["impact"][0]["customer"] == "Acme"
    with plan_screens.sessions() as session:
        assert data["requests"] == open_purchase_requests(session)
        api_plan = current_plan(session)
        assert data["plan"] == {
            **{k: v for k, v in api_plan.items() if k != "assignments"},
            "jobs": len(api_plan["assignments"]),
        }
    assert data["requests"][0]["jobs"] == [{"job": "WO-V-1", "order": "SO-V"}]


def test_a_change_shows_only_what_it_changes():
    change = {
        "event": order_event("SO-H", 2, [("P2", 1500)], date(2026, 12, 1), "high"),
        "current": {
            "version": 1,
            "priority": "normal",
            "requested_date": "2026-12-03",
            "lines": [{"sku": "P2", "qty": 500}],
            "customer": {"id": "C-1", "name": "Acme"},
        },
    }
    assert plan.change_facts(change) == [
        {"field": "lines", "before": "500 × P2", "after": "1,500 × P2"},
        {"field": "requested_date", "before": "2026-12-03", "after": "2026-12-01"},
        {"field": "priority", "before": "normal", "after": "high"},
    ]
    new = plan.change_facts({**change, "current": None})
    assert [f["field"] for f in new] == ["customer", "lines", "requested_date", "priority"]
    assert all(f["before"] is None for f in new)
    cancelled = {"event": order_event("SO-H", 3, event_type="order.cancelled"), "current": None}
    assert plan.change_facts(cancelled) == [{"field": "cancel", "before": None, "after": None}]


@pytest.mark.parametrize(
    ("result", "lang", "text", "kind"),
    [
        (
            {
                "change": "7",
                "action": "approve",
                "status": 200,
                "body": {"status": "approved", "order_id": "SO-H"},
            },
            "en",
            "Change #7 for SO-H: Approved",
            "decision--ok",
        ),
        (
            {
                "change": "7",
                "action": "approve",
                "status": 403,
                "body": {
                    "detail": "role 'display' may not do this; allowed: admin, production_manager"
                },
            },
            "en",
            "Not allowed: role 'display' may not do this; allowed: admin, production_manager",
            "decision--refused",
        ),
        (
            {"change": "7", "action": "reject", "status": 403, "body": {"detail": "nope"}},
            "zh-CN",
            "无权操作：nope",
            "decision--refused",
        ),
        (
            {
                "change": "7",
                "action": "reject",
                "status": 409,
                "body": {"detail": "change 7 is already approved"},
            },
            "en",
            "Change #7 not decided (409): change 7 is already approved",
            "decision--refused",
        ),
        (
            {"change": "7", "action": "reject", "status": 401, "body": {"detail": "x"}},
            "en",
            "Not signed in: open this page with ?token=<your token> once",
            "decision--refused",
        ),
        (
            {
                "change": "7",
                "action": "reject",
                "status": 0,
                "body": {"detail": "TypeError: Failed to fetch"},
            },
            "en",
            "Change #7: the server did not answer (TypeError: Failed to fetch)",
            "decision--refused",
        ),
    ],
)
def test_the_api_answer_to_a_decision_is_shown_as_it_is(result, lang, text, kind):
    shown, class_name = plan.decision_message(result, lang)
    assert shown == text
    assert kind in class_name.split()
    assert plan.decision_message(None, "en") == ("", "decision decision--none")


def test_late_work_is_worded_from_its_cause(screens):
    cause = {"kind": "line_down", "line": "L3", "until": "2026-11-28T10:00:00Z", "reason": "jam"}
    assert (
        plan.plan_cause_text(cause, "raw", "en", screens=screens, now=NOW)
        == "line L3 down until 10:00 (jam)"
    )
    material = {
        "kind": "material",
        "material": "M1",
        "until": "2026-11-29T06:00:00Z",
        "short": True,
    }
    assert plan.plan_cause_text(material, "raw", "zh-CN", screens=screens, now=NOW) == (
        "等待物料 M1，到 明天 06:00 · 缺料，已提出采购申请"
    )
    assert plan.plan_cause_text(
        {"kind": "weird"}, "stored words", "en", screens=screens, now=NOW
    ) == ("stored words")
    assert plan.plan_cause_text(
        {"kind": "capacity"}, "capacity on L9", "en", screens=screens, now=NOW
    ) == (
        "capacity on L9"  # a cause missing its fields keeps the planner's words
    )


def test_the_plan_page_shows_changes_purchases_and_the_latest_plan(plan_screens):
    page = plan.layout(plan_screens, lang="en", token="kiosk")
    changes = str(find(page, ids.PLAN_CHANGES).children)
    assert "2 pending" in changes
    assert "1,500 × P2" in changes and "500 × P2" in changes and "New order" in changes
    assert "Would break 1 promise; 14.0 h past the promised day" in changes
    assert "sales rep zhang.wei" in changes
    assert "Rejected by production_manager" in changes
    assert find(page, ids.part(ids.CHANGE_APPROVE, "change", "1")) is not None
    assert find(page, ids.part(ids.CHANGE_REJECT, "change", "2")) is not None
    assert find(page, ids.part(ids.CHANGE_APPROVE, "change", "3")) is None  # decided
    requests = str(find(page, ids.PLAN_REQUESTS).children)
    assert "Steel bar" in requests and "170 kg" in requests and "72.0 h late" in requests
    assert "WO-V-1" in requests and "SO-V" in requests
    revision = str(find(page, ids.PLAN_REVISION).children)
    assert "Plan #1" in revision and "crm SO-V v1" in revision and "1 jobs" in revision
    assert "+20.5 h" in revision and "WO-H-1" in revision
    assert "rush order SO-H took its place on line L1" in revision
    assert "1.5 h to spare" in revision
    start = find(page, ids.PLAN.start).data
    assert set(start["shown"]["sigs"]) == {ids.PLAN_CHANGES, ids.PLAN_REQUESTS, ids.PLAN_REVISION}
    assert "计划 #1" in str(
        find(plan.layout(plan_screens, lang="zh-CN"), ids.PLAN_REVISION).children
    )


def test_the_plan_page_without_a_database_says_so(screens):
    page = plan.layout(screens, lang="en")
    assert "has no database" in str(find(page, ids.PLAN_CHANGES).children)
    assert find(page, ids.PLAN.start).data["shown"]["sigs"] == {}


def test_the_plan_stream_redraws_only_the_sections_that_changed(plan_screens, monkeypatch):
    page = plan.layout(plan_screens, lang="en")
    stream = plan.PlanStream(plan_screens, find(page, ids.PLAN.start).data)
    sent: list[str] = []
    monkeypatch.setattr(plan, "set_props", lambda cid, props: sent.append(cid))
    data = plan.read_plan_page(plan_screens.sessions, plan_screens.live)
    stream.redraw_sections(data, NOW)
    assert sent == []  # nothing changed since the render
    with transaction(plan_screens.sessions) as s:
        s.get(PendingChange, 2).status = "approved"
    stream.redraw_sections(plan.read_plan_page(plan_screens.sessions, plan_screens.live), NOW)
    assert sent == [ids.PLAN_CHANGES]
    assert stream.wants(Change("plan", "2", {}, {"revision": 2}))
    assert not stream.wants(Change("order", "SO-1", {}, {"eta": "x"}))


def test_record_times_on_the_plan_page_are_on_the_screens_clock(plan_screens):
    """Records carry wall-clock times; the demo's screens run on its fast clock, so the
    page shows each record's time on that clock (not "received 07:37" beside 10:49)."""
    on_clock = dataclasses.replace(
        plan_screens, record_time=lambda moment: NOW - timedelta(minutes=5)
    )
    data = plan.read_plan_page(on_clock.sessions, on_clock.live)
    changes = str(plan.render_changes(data["changes"], "en", screens=on_clock, now=NOW))
    revision = str(plan.render_revision(data["plan"], "en", screens=on_clock, now=NOW))
    assert "received 08:25" in changes
    assert "08:25" in changes.split("received 08:25", 1)[1]  # the decided change too
    assert "08:25" in revision


def test_alert_ages_are_on_the_screens_clock(screens):
    """An alert is a record opened at wall-clock time; the demo's screens run simulated
    time, so its age is taken on the screens' clock (it showed the two clocks' gap)."""
    wall_opened = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)  # real time, hours "behind"
    demo = dataclasses.replace(screens, record_time=lambda moment: NOW - timedelta(minutes=14))
    alert = {
        "id": "a",
        "status": "open",
        "severity": "warning",
        "opened_at": wall_opened.isoformat(),
    }
    view = alerts.alert_view(alert, lang="en", screens=demo, now=NOW)
    assert view[ids.ALERT_AGE]["children"] == "14 min"


def test_wall_tile_shows_the_shift_oee(screens):
    oee = {"shift": "early", "availability": 0.7444, "performance": 0.9313, "quality": 0.9615,
           "oee": 0.6667}  # fmt: skip
    view = wall.tile_view({"id": "L1", "state": "running", "oee": oee}, None, lang="en",
                          screens=screens, now=NOW)  # fmt: skip
    assert view[ids.TILE_OEE]["children"] == "67 %"
    assert view[ids.TILE_APQ]["children"] == "A 74 · P 93 · Q 96"
    silent = wall.tile_view({"id": "L2"}, None, lang="en", screens=screens, now=NOW)
    assert silent[ids.TILE_OEE]["children"] == "—" and silent[ids.TILE_APQ]["children"] == ""
