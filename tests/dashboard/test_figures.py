"""The Gantt is a pure function of work orders and lines, checked without a browser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import plotly.graph_objects as go

from loopline.dashboard.figures import PALETTE, UIREVISION, gantt_figure, gantt_signature

START = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
LINES = [{"id": "L1", "name": "Press"}, {"id": "L2", "name": "CNC"}]


def wo(wo_id, line, start_h, hours, status="planned", **extra):
    start = START + timedelta(hours=start_h)
    return {
        "id": wo_id,
        "line": line,
        "order_id": "SO-1",
        "sku": "GEAR-A",
        "qty": 500,
        "status": status,
        "planned_start": start.isoformat().replace("+00:00", "Z"),
        "planned_end": (start + timedelta(hours=hours)).isoformat(),
        **extra,
    }


WOS = [
    wo("WO-1", "L1", 0, 2, "done"),
    wo("WO-2", "L1", 2, 3, "running"),
    wo("WO-3", "L2", 1, 4),
    wo("WO-4", "L2", 5, 1),
]


def bars(fig: go.Figure) -> dict[str, list[str]]:
    return {trace.name: list(trace.text) for trace in fig.data}


def test_one_bar_per_work_order_one_trace_per_status():
    fig = gantt_figure(WOS, LINES, "en", tz=UTC)
    assert bars(fig) == {"Done": ["WO-1"], "Running": ["WO-2"], "Planned": ["WO-3", "WO-4"]}
    planned = next(t for t in fig.data if t.name == "Planned")
    assert list(planned.y) == ["CNC", "CNC"]
    assert planned.orientation == "h"
    assert planned.marker.color == PALETTE["wo.planned"]
    # Bars start at their planned start (site time) and last their planned duration.
    assert planned.base[0] == datetime(2026, 12, 1, 7, 0)
    assert list(planned.x) == [4 * 3600 * 1000.0, 3600 * 1000.0]


def test_lines_keep_their_order_top_down_and_uirevision_is_set():
    fig = gantt_figure(WOS, LINES, "en", tz=UTC)
    assert fig.layout.uirevision == UIREVISION
    assert list(fig.layout.yaxis.categoryarray) == ["CNC", "Press"]  # reversed: L1 on top
    assert fig.layout.height > 0


def test_labels_follow_the_language_and_work_orders_on_unknown_lines_still_show():
    fig = gantt_figure([*WOS, wo("WO-9", "L9", 0, 1)], LINES, "zh-CN", now=START, tz=UTC)
    assert {t.name for t in fig.data} == {"已完成", "生产中", "已计划"}
    assert "L9" in fig.layout.yaxis.categoryarray
    assert "工单" in fig.data[0].hovertemplate
    assert any(a.text == "现在" for a in fig.layout.annotations)
    assert fig.layout.shapes[0].x0 == datetime(2026, 12, 1, 6, 0)


def test_unplaceable_work_orders_are_skipped_and_empty_plans_say_so():
    broken = [
        wo("WO-5", "L1", 0, 1, planned_end=None),
        wo("WO-6", "", 0, 1),
        {**wo("WO-7", "L1", 3, 1), "planned_end": START.isoformat()},
    ]
    fig = gantt_figure(broken, LINES, "en")
    assert fig.data == ()
    assert [a.text for a in fig.layout.annotations] == ["No planned work orders"]


def test_signature_changes_only_with_what_the_chart_draws():
    same = [dict(w, progress=0.5, good=10) for w in WOS]
    assert gantt_signature(WOS) == gantt_signature(reversed(same))
    moved = [*WOS[:-1], wo("WO-4", "L2", 6, 1)]
    assert gantt_signature(moved) != gantt_signature(WOS)


def test_a_bar_label_that_does_not_fit_is_hidden_not_shrunk_unreadable():
    fig = gantt_figure(WOS, LINES, "en", tz=UTC)
    assert fig.layout.uniformtext.mode == "hide" and fig.layout.uniformtext.minsize >= 11


def test_pareto_bars_largest_first_with_the_cumulative_line():
    from loopline.dashboard.figures import LOSS_COLOURS, pareto_figure

    rows = [
        {"code": "BD-MECH", "name": "Mechanical", "loss": "breakdown", "seconds": 2700,
         "cumulative": 0.6},
        {"code": None, "name": None, "loss": "unexplained", "seconds": 1800, "cumulative": 1.0},
    ]  # fmt: skip
    fig = pareto_figure(rows, "en")
    bars, line = fig.data
    assert list(bars.x) == ["BD-MECH · Mechanical", "Unexplained"]
    assert list(bars.y) == [45.0, 30.0]  # minutes
    assert list(bars.marker.color) == [LOSS_COLOURS["breakdown"], LOSS_COLOURS["unexplained"]]
    assert list(line.y) == [60.0, 100.0] and line.yaxis == "y2"
    assert pareto_figure(rows, "zh-CN").data[0].x[1] == "原因未明"
    empty = pareto_figure([], "en")
    assert empty.layout.annotations[0].text == "No downtime this week"
