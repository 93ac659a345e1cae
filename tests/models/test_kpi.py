"""KPIs computed on hand-made golden data (every number below is worked out by hand)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from loopline.models.db import transaction
from loopline.models.followup import FollowupTask, OrderDelivery
from loopline.models.kpi import kpi_report, nearest_rank, week_windows
from loopline.models.oee import oee_for_line
from loopline.models.oee_records import ShiftOee
from loopline.models.records import (
    Alert,
    BomLine,
    Material,
    Order,
    OrderLine,
    PurchaseOrder,
    WorkOrder,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


# order id: (ordered, delivered, requested, promised, P1 qty, line, good, scrap)
ORDERS = {
    "SO-A": (at(1, 8), at(4, 8), date(2026, 11, 5), date(2026, 11, 4), 100, "L1", 95, 5),
    "SO-B": (at(2), at(6, 12), date(2026, 11, 5), date(2026, 11, 7), 0, None, 0, 0),
    "SO-C": (at(10), at(20), date(2026, 11, 15), date(2026, 11, 18), 50, None, 0, 0),
    "SO-D": (at(20), at(24), date(2026, 11, 24), None, 0, None, 0, 0),
}


@pytest.fixture
def golden(sessions):
    write_golden(sessions)
    with sessions() as s:
        yield kpi_report(s, now=NOW, weeks=4)


def write_golden(sessions):
    with transaction(sessions) as s:
        s.add(Material(id="M1", name="Steel", unit="kg", on_hand=1000.0, lead_time_days=3))
        s.flush()
        s.add(BomLine(sku="P1", material_id="M1", qty_per_unit=2.0))
        s.add(
            PurchaseOrder(
                id="PO-1", material_id="M1", qty=500, arrives_at=at(18), status="received"
            )
        )
        for oid, (ordered, delivered, req, prom, qty, line, good, scrap) in ORDERS.items():
            s.add(
                Order(
                    id=oid,
                    customer_id="C-1",
                    version=1,
                    status="delivered",
                    requested_date=req,
                    promised_date=prom,
                    created_at=ordered,
                    sales_rep="li.na",
                )
            )
            s.flush()
            s.add(OrderLine(order_id=oid, line_no=1, sku="P1" if qty else "P2", qty=qty or 10))
            s.add(
                WorkOrder(
                    id=f"WO-{oid}-1",
                    order_id=oid,
                    line_no=1,
                    sku="P1",
                    qty=qty or 10,
                    status="done",
                    line_id=line,
                    good=good,
                    scrap=scrap,
                )
            )
            s.add(OrderDelivery(order_id=oid, delivered_at=delivered, source="crm", actor="crm"))
        for oid, done, score in [("SO-A", at(5), 80), ("SO-B", at(6), 90), ("SO-C", at(21), 60)]:
            s.add(
                FollowupTask(
                    order_id=oid,
                    kind="satisfaction",
                    assignee="li.na",
                    status="done",
                    created_at=done,
                    due_at=done,
                    done_at=done,
                    done_by="li.na",
                    score=score,
                )
            )
        s.add(FollowupTask(order_id="SO-D", kind="satisfaction", status="open",
                           created_at=at(24), due_at=at(24)))  # fmt: skip
        for key, line, opened, resolved, severity in [
            ("line_down:L1", "L1", at(3), at(4), "critical"),
            ("line_down:L2", "L2", at(8), None, "critical"),
            ("x:1", "L1", at(25, 11, 30), None, "warning"),
        ]:
            s.add(
                Alert(
                    key=key,
                    kind=key.split(":")[0],
                    entity="line",
                    entity_id=line,
                    severity=severity,
                    message="m",
                    status="resolved" if resolved else "open",
                    opened_at=opened,
                    resolved_at=resolved,
                )
            )


def _kpi(report, key):
    return next(k for k in report["kpis"] if k["key"] == key)


def _trend(report, key):
    return [p["value"] for p in _kpi(report, key)["trend"]]


def test_weeks_are_iso_weeks_ending_now(golden):
    assert golden["weeks"] == ["2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23"]
    assert golden["start"] == "2026-11-02T00:00:00Z" and golden["end"] == "2026-11-25T12:00:00Z"
    assert week_windows(NOW, 1) == [(at(23), NOW)]


def test_delivery_figures(golden):
    on_time = _kpi(golden, "on_time_delivery")
    assert (on_time["value"], on_time["count"]) == (50.0, 4)  # A and D by the requested day
    assert _trend(golden, "on_time_delivery") == [50.0, None, 0.0, 100.0]
    assert _kpi(golden, "lead_time_avg")["value"] == 5.4  # (3 + 4.5 + 10 + 4) / 4 = 5.375
    assert _trend(golden, "lead_time_avg") == [3.8, None, 10.0, 4.0]  # 3.75 rounds up
    assert _kpi(golden, "lead_time_p90")["value"] == 10.0  # nearest rank: 4th of 4
    assert _trend(golden, "lead_time_p90") == [4.5, None, 10.0, 4.0]
    kept = _kpi(golden, "promise_reliability")
    assert (kept["value"], kept["count"]) == (66.7, 3)  # D had no promise
    assert _trend(golden, "promise_reliability") == [100.0, None, 0.0, None]
    assert _kpi(golden, "promise_slip")["value"] == 0.3  # (0 - 1 + 2) / 3
    assert _trend(golden, "promise_slip") == [-0.5, None, 2.0, None]


def test_inventory_turns_work_stock_back_from_today(golden):
    # Week 1 used 200 kg (A); stock then: 1000 + 300 used since - 500 received since = 800
    # at its start, 600 at its end: 200 / 700 * 52 = 14.86. Week 3 used 100 (C) over
    # (600 + 1000) / 2: 6.5. The period: 300 / 900, annualised over 23.5 days: 5.16.
    turns = _kpi(golden, "inventory_turns")
    assert turns["value"] == 5.2
    assert _trend(golden, "inventory_turns") == [14.9, None, 6.5, None]


def test_satisfaction_and_alerts(golden):
    assert _kpi(golden, "satisfaction")["value"] == 76.7
    assert _trend(golden, "satisfaction") == [85.0, None, 60.0, None]
    alerts = _kpi(golden, "open_alerts")
    assert alerts["value"] == 2.0
    assert _trend(golden, "open_alerts") == [1.0, 1.0, 1.0, 2.0]
    by_age = {b["bucket"]: (b["count"], b["critical"]) for b in golden["alerts_by_age"]}
    assert by_age == {
        "lt_1h": (1, 0),
        "1h_8h": (0, 0),
        "8h_24h": (0, 0),
        "1d_7d": (0, 0),
        "gt_7d": (1, 1),
    }


def test_availability_per_line_from_line_down_alerts(golden):
    assert golden["oee"]["measure"] == "availability"
    lines = {ln["line"]: ln for ln in golden["oee"]["lines"]}
    assert lines["L1"]["availability"] == 95.7  # 1 day down in 23.5
    assert lines["L1"]["quality"] == 95.0  # 95 good, 5 scrap
    assert lines["L1"]["oee"] is None and lines["L1"]["performance"] is None
    assert [p["value"] for p in lines["L1"]["trend"]] == [85.7, 100.0, 100.0, 100.0]
    assert lines["L2"]["availability"] == 25.5  # down since the 8th: 17.5 days of 23.5
    assert [p["value"] for p in lines["L2"]["trend"]] == [85.7, 0.0, 0.0, 0.0]


# Stored shifts of L1 (8 h planned each): (start, breakdown s, setup s, small-stop s,
# ideal s, good, scrap). L2 has none.
SHIFTS = [
    (at(3, 6), 3000, 0, 0, 20_640, 950, 50),  # run 25 800 s
    (at(4, 6), 0, 1800, 600, 24_300, 1000, 0),  # run 27 000 s (a small stop is no downtime)
    (at(9), 0, 0, 0, 14_400, 500, 0),  # on the Monday 00:00: week 2, not week 1
    (at(17, 6), 7200, 0, 0, 17_280, 900, 100),  # run 21 600 s
    (at(25, 13), 0, 0, 0, 28_800, 1000, 0),  # starts after NOW: not counted yet
]


def test_oee_per_line_from_the_stored_shifts(sessions):
    write_golden(sessions)
    with transaction(sessions) as s:
        for start, breakdown, setup, small, ideal, good, scrap in SHIFTS:
            planned, run = 28_800.0, 28_800.0 - breakdown - setup
            s.add(
                ShiftOee(
                    line_id="L1",
                    shift_start=start,
                    shift_end=start.replace(hour=(start.hour + 8) % 24),
                    shift_name="day",
                    planned_s=planned,
                    run_s=run,
                    ideal_s=float(ideal),
                    good=good,
                    scrap=scrap,
                    availability=run / planned,
                    performance=ideal / run,
                    quality=good / (good + scrap),
                    oee=None,  # the sums are recomputed, not these shift figures averaged
                    losses={"breakdown_s": breakdown, "setup_s": setup, "small_stop_s": small},
                    final=True,
                )
            )
    with sessions() as s:
        report = kpi_report(s, now=NOW, weeks=4)
        whole = oee_for_line(s, "L1", start=at(2), end=NOW)
    assert report["oee"]["measure"] == "oee" and report["oee"]["source"] == "shifts"
    lines = {ln["line"]: ln for ln in report["oee"]["lines"]}
    l1 = lines["L1"]
    # The period, time-weighted over the 4 shifts started by NOW: planned 115 200 s, down
    # 3000 + 1800 + 7200 = 12 000 s, so run 103 200 s: availability 89.58 %; ideal
    # 20 640 + 24 300 + 14 400 + 17 280 = 76 620 s over the run: 74.24 %; 3350 good of
    # 3500: 95.71 %; OEE 0.8958 x 0.7424 x 0.9571 = 63.66 %.
    assert (l1["availability"], l1["performance"], l1["quality"], l1["oee"]) == (
        89.6,
        74.2,
        95.7,
        63.7,
    )
    assert l1["shifts"] == 4
    # The same figures as oee_for_line over the period (one arithmetic).
    assert whole is not None and whole.shifts == 4 and whole.figures.oee == 0.6366
    # Week 1: run 52 800 of 57 600 s (91.67 %) x 44 940 / 52 800 ideal (85.11 %) x 1950 /
    # 2000 good (97.5 %) = 76.07 %. Week 2: 100 % x 50 % x 100 % = 50 %. Week 3: 75 % x
    # 80 % x 90 % = 54 %. Week 4 has no stored shift yet: the records know no OEE.
    assert [p["value"] for p in l1["trend"]] == [76.1, 50.0, 54.0, None]
    assert [p["count"] for p in l1["trend"]] == [2, 1, 1, 0]
    # L2 stored no shift: it falls back to the records (availability from its line-down
    # alert, as in the test above), and has no OEE.
    l2 = lines["L2"]
    assert (l2["availability"], l2["oee"], l2["shifts"]) == (25.5, None, 0)
    assert [p["value"] for p in l2["trend"]] == [None] * 4  # the trend shows OEE


def test_a_source_that_measures_oee_is_shown_as_oee(sessions):
    class Fixed:
        name = "fixed"

        def __call__(self, session, windows):
            m = {"availability": 0.9, "performance": 0.8, "quality": 0.5, "oee": 0.36}
            return {"L1": [m for _ in windows]}

    with sessions() as s:
        report = kpi_report(s, now=NOW, weeks=4, oee_source=Fixed())
    assert report["oee"]["measure"] == "oee" and report["oee"]["source"] == "fixed"
    assert report["oee"]["lines"][0]["oee"] == 36.0
    assert [p["value"] for p in report["oee"]["lines"][0]["trend"]] == [36.0] * 4


def test_nothing_delivered_leaves_figures_unknown_not_zero(sessions):
    with sessions() as s:
        report = kpi_report(s, now=NOW, weeks=8)
    assert _kpi(report, "on_time_delivery")["value"] is None
    assert _kpi(report, "on_time_delivery")["count"] == 0
    with pytest.raises(ValueError, match="weeks"):
        kpi_report(s, now=NOW, weeks=5)


def test_nearest_rank():
    assert nearest_rank([], 0.9) is None
    assert nearest_rank([5.0], 0.9) == 5.0
    assert nearest_rank([float(n) for n in range(1, 11)], 0.9) == 9.0
    assert nearest_rank([float(n) for n in range(1, 12)], 0.9) == 10.0
