"""OEE on golden shifts, worked out by hand in each test, and the reason tree.

The golden shift (line L1 of the small factory, ideal rate 100 units/h of P1, so 36 s a
unit; a Tuesday, shift 06:00-14:00 UTC with a break 10:00-10:30: 7.5 h = 27,000 s planned):

    06:00 running
    06:30 progress good 0, scrap 5 with code SR-WARMUP (startup rejects)
    07:00 down, code BD-MECH      -> 07:45 running   breakdown 2,700 s
    09:00 changeover, no code     -> 09:20 running   setup 1,200 s
    09:50 down "jam", no code     -> 10:40 running   50 min, 30 in the break: 1,200 s unexplained
    11:00 down, no code           -> 11:03 running   180 s < 300 s: small stop
    12:00 idle, no code           -> 12:30 running   1,800 s unexplained
    13:00 progress good 500, scrap 5
    13:30 progress good 500, scrap 20 (15 production rejects)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from loopline.models.db import transaction
from loopline.models.downtime import (
    DowntimeConfig,
    assign_reason,
    default_tree,
    first_report,
    load_tree,
    record_first_reports,
    record_transitions,
    save_tree,
    unexplained_stops,
)
from loopline.models.live import Update
from loopline.models.oee import (
    Counts,
    StopSpan,
    compute_oee,
    current_shift,
    downtime_pareto,
    iso_week,
    oee_for_line,
    refresh_oee,
)
from loopline.models.oee_records import LineStop, ShiftOee
from loopline.models.records import Line
from loopline.models.replan import sync_live
from loopline.models.shopfloor import apply_reports

DAY = datetime(2026, 12, 1, tzinfo=UTC)  # a Tuesday
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
CALENDAR = {
    "timezone": "UTC",
    "shifts": [{"days": ALL_DAYS, "start": "06:00", "end": "14:00"}],
    "breaks": [{"days": ALL_DAYS, "start": "10:00", "end": "10:30"}],
}


def at(hhmm: str) -> datetime:
    hours, minutes = hhmm.split(":")
    return DAY + timedelta(hours=int(hours), minutes=int(minutes))


@dataclass(frozen=True)
class P:
    line: str
    seq: int
    ts: datetime
    work_order: str
    good: int
    scrap: int = 0
    reason_code: str | None = None
    site: str = "s1"


@dataclass(frozen=True)
class S:
    line: str
    seq: int
    ts: datetime
    state: str
    reason: str | None = None
    reason_code: str | None = None
    site: str = "s1"


GOLDEN = [
    ("06:00", "running", None, None),
    ("07:00", "down", None, "BD-MECH"),
    ("07:45", "running", None, None),
    ("09:00", "changeover", None, None),
    ("09:20", "running", None, None),
    ("09:50", "down", "jam", None),
    ("10:40", "running", None, None),
    ("11:00", "down", None, None),
    ("11:03", "running", None, None),
    ("12:00", "idle", None, None),
    ("12:30", "running", None, None),
]
PROGRESS = [("06:30", 0, 5, "SR-WARMUP"), ("13:00", 500, 5, None), ("13:30", 500, 20, None)]


# -- the arithmetic alone ----------------------------------------------------------------
def test_golden_shift_arithmetic():
    planned = [(at("06:00"), at("10:00")), (at("10:30"), at("14:00"))]
    stops = [
        StopSpan(at("07:00"), at("07:45"), "breakdown"),
        StopSpan(at("09:00"), at("09:20"), "setup"),
        StopSpan(at("09:50"), at("10:40"), "unexplained"),
        StopSpan(at("11:00"), at("11:03"), "small_stop"),
        StopSpan(at("12:00"), at("12:30"), "unexplained"),
    ]
    counts = Counts(good=500, scrap=20, startup_scrap=5, ideal_s=520 * 36.0)
    f = compute_oee(planned, stops, counts, until=at("14:00"))
    # planned 8 h - 30 min break = 27,000 s
    assert f.planned_s == 27_000
    # availability losses: 2,700 breakdown + 1,200 setup + (1,200 + 1,800) unexplained
    assert f.losses["breakdown_s"] == 2_700
    assert f.losses["setup_s"] == 1_200
    assert f.losses["unexplained_s"] == 1_200 + 1_800
    # run = 27,000 - 2,700 - 1,200 - 3,000 = 20,100 s (the small stop stays in run time)
    assert f.run_s == 20_100
    assert f.availability == round(20_100 / 27_000, 4) == 0.7444
    # performance = 520 units x 36 s / 20,100 s = 18,720 / 20,100
    assert f.performance == round(18_720 / 20_100, 4) == 0.9313
    # quality = 500 / 520
    assert f.quality == round(500 / 520, 4) == 0.9615
    # OEE = A x P x Q = good units x ideal cycle / planned time = 500 x 36 / 27,000
    assert f.oee == round(500 * 36 / 27_000, 4) == 0.6667
    # slow cycles: 20,100 run - 18,720 ideal - 180 small stop = 1,200 s
    assert f.losses["small_stop_s"] == 180
    assert f.losses["slow_cycle_s"] == 1_200
    assert f.losses["startup_reject"] == 5
    assert f.losses["production_reject"] == 15


def test_running_shift_counts_planned_time_up_to_now():
    # At 08:00: planned 06:00-08:00 = 7,200 s; the breakdown 07:00-07:45 = 2,700 s;
    # run 4,500 s; 100 units x 36 s = 3,600 s ideal; 98 good of 100.
    planned = [(at("06:00"), at("10:00")), (at("10:30"), at("14:00"))]
    stops = [StopSpan(at("07:00"), at("07:45"), "breakdown")]
    f = compute_oee(planned, stops, Counts(98, 2, 0, 3_600.0), until=at("08:00"))
    assert (f.planned_s, f.run_s) == (7_200, 4_500)
    assert f.availability == round(4_500 / 7_200, 4) == 0.625
    assert f.performance == round(3_600 / 4_500, 4) == 0.8
    assert f.quality == 0.98
    assert f.oee == round(0.625 * 0.8 * 0.98, 4) == 0.49


def test_a_line_down_all_shift_has_oee_zero_and_nothing_planned_has_none():
    planned = [(at("06:00"), at("14:00"))]
    down = compute_oee(
        planned, [StopSpan(at("05:00"), at("15:00"), "breakdown")], Counts(), until=at("14:00")
    )
    # The stop is clipped to the shift: 28,800 s of 28,800 lost, availability 0.
    assert (down.run_s, down.availability, down.performance, down.oee) == (0, 0, None, 0)
    nothing = compute_oee([], [], Counts(), until=at("14:00"))
    assert (nothing.availability, nothing.oee) == (None, None)


# -- the tree ----------------------------------------------------------------------------
def test_default_tree_covers_the_six_big_losses():
    tree = default_tree()
    assert {r.loss for r in tree.reasons} == {
        "breakdown",
        "setup",
        "small_stop",
        "slow_cycle",
        "startup_reject",
        "production_reject",
    }
    assert tree.get("BD-MECH").loss == "breakdown"
    assert tree.get("nope") is None


def test_a_bad_tree_is_refused_naming_the_field():
    with pytest.raises(ValidationError, match=r"reasons\[0\]\.children\[1\]\.code: 'X' appears"):
        DowntimeConfig.model_validate(
            {"reasons": [{"code": "A", "name": "a", "loss": "setup", "children": [
                {"code": "X", "name": "x"}, {"code": "X", "name": "y"}]}]}
        )  # fmt: skip
    with pytest.raises(ValidationError, match=r"reasons\[0\]\.loss: a top-level reason"):
        DowntimeConfig.model_validate({"reasons": [{"code": "A", "name": "a"}]})
    with pytest.raises(ValidationError, match="loss"):
        DowntimeConfig.model_validate({"reasons": [{"code": "A", "name": "a", "loss": "coffee"}]})


# -- the whole way: reports -> stops and counts -> shift figures -------------------------
def _golden_run(sessions, live):
    """Feed the golden shift through apply_reports (as the ingest does) and store stops."""
    with transaction(sessions) as s:
        s.get(Line, "L1").calendar = CALENDAR
    with sessions() as s:
        sync_live(s, live, now=at("06:00"))
    live.apply(
        [
            Update(
                "work_order",
                "WO-1-1",
                {"order_id": "SO-1", "line": "L1", "sku": "P1", "qty": 1000, "good": 0,
                 "scrap": 0, "status": "planned"},
            )
        ]
    )  # fmt: skip
    reports: list[P | S] = [
        S("L1", 0, at(t), state, reason, code) for t, state, reason, code in GOLDEN
    ]
    reports += [P("L1", 0, at(t), "WO-1-1", g, sc, code) for t, g, sc, code in PROGRESS]
    reports.sort(key=lambda r: r.ts)
    reports = [
        type(r)(**{**r.__dict__, "seq": k + 1}) for k, r in enumerate(reports)
    ]  # fmt: skip
    for r in reports:  # one at a time, as they would arrive
        out = apply_reports(live, [r], now=r.ts, received_at=r.ts)
        assert not out.refused
        with transaction(sessions) as s:
            record_transitions(s, out.transitions, load_tree(s))
            record_first_reports(s, out.first_reports)


def test_golden_shift_through_ingest_and_the_worker(sessions, live):
    _golden_run(sessions, live)
    with transaction(sessions) as s:
        assert refresh_oee(s, live, now=at("14:10")) == 1  # L2 never reported: no figures
    with sessions() as s:
        row = s.get(ShiftOee, ("L1", at("06:00")))
        assert row.final  # 10 min after the end: no late message changes it any more
        assert (row.planned_s, row.run_s, row.ideal_s) == (27_000, 20_100, 520 * 36)
        assert (row.good, row.scrap) == (500, 20)
        # the same figures as test_golden_shift_arithmetic
        assert (row.availability, row.performance, row.quality, row.oee) == (
            0.7444,
            0.9313,
            0.9615,
            0.6667,
        )
        assert row.losses["startup_reject"] == 5  # the scrap sent with SR-WARMUP
        assert row.losses["small_stop_s"] == 180
    # The live line carries the shift's OEE for the wall.
    assert live.get("line", "L1")["oee"]["oee"] == 0.6667


def test_operator_reasons_move_time_between_availability_and_performance(sessions, live):
    _golden_run(sessions, live)
    tree = default_tree()
    with sessions() as s:
        waiting = unexplained_stops(s, tree, now=at("14:10"), line_id="L1")
        # the two long stops without a code; not the changeover nor the 3-minute stop
        assert [w.started_at for w in waiting] == [at("12:00"), at("09:50")]
        ids = {w.started_at: w.id for w in waiting}
    with transaction(sessions) as s:
        assign_reason(s, stop_id=ids[at("09:50")], code="BD-ELEC", actor="op", now=at("14:00"),
                      tree=tree)  # fmt: skip
        assign_reason(s, stop_id=ids[at("12:00")], code="SS-JAM", actor="op", now=at("14:00"),
                      tree=tree)  # fmt: skip
    with sessions() as s:
        assert unexplained_stops(s, tree, now=at("14:10"), line_id="L1") == []
        view = current_shift(s, live, "L1", at=at("13:00"), now=at("14:10"))
    # breakdown 2,700 + 1,200 (09:50 in planned time) = 3,900; setup 1,200; the 1,800 s
    # idle is now a small stop, inside run time: run = 27,000 - 3,900 - 1,200 = 21,900
    assert view["losses"]["breakdown_s"] == 3_900
    assert view["losses"]["unexplained_s"] == 0
    assert view["run_s"] == 21_900
    assert view["availability"] == round(21_900 / 27_000, 4) == 0.8111
    assert view["performance"] == round(18_720 / 21_900, 4) == 0.8548
    # OEE does not move: still 500 good x 36 s / 27,000 s planned
    assert view["oee"] == 0.6667


def test_pareto_of_a_week(sessions, live):
    _golden_run(sessions, live)
    start, end = iso_week("2026-W49", now=at("14:00"))
    assert start == datetime(2026, 11, 30, tzinfo=UTC)
    with sessions() as s:
        rows = downtime_pareto(s, "L1", start=start, end=end)
    # unexplained 1,200 + 1,800 = 3,000; BD-MECH 2,700; SU (the changeover) 1,200;
    # SS (the 3-minute stop) 180: 7,080 s in all
    assert [(r["code"], r["seconds"], r["stops"]) for r in rows] == [
        (None, 3_000, 2),
        ("BD-MECH", 2_700, 1),
        ("SU", 1_200, 1),
        ("SS", 180, 1),
    ]
    assert [r["share"] for r in rows] == [
        round(3_000 / 7_080, 4),
        round(2_700 / 7_080, 4),
        round(1_200 / 7_080, 4),
        round(180 / 7_080, 4),
    ]
    assert rows[-1]["cumulative"] == 1.0
    assert rows[1]["cumulative"] == round(5_700 / 7_080, 4)


def test_oee_for_line_over_a_period_weights_by_time(sessions, live):
    _golden_run(sessions, live)
    with transaction(sessions) as s:
        refresh_oee(s, live, now=at("14:10"))
        # A second, made-up stored shift the next day: planned 27,000 s, run 27,000 s,
        # ideal 27,000 s (750 units), all good: OEE 1.
        s.add(
            ShiftOee(line_id="L1", shift_start=at("06:00") + timedelta(days=1),
                     shift_end=at("14:00") + timedelta(days=1), shift_name="x",
                     planned_s=27_000, run_s=27_000, ideal_s=27_000, good=750, scrap=0,
                     availability=1, performance=1, quality=1, oee=1, final=True,
                     losses={"breakdown_s": 0, "setup_s": 0, "unexplained_s": 0,
                             "small_stop_s": 0, "startup_reject": 0})
        )  # fmt: skip
    with sessions() as s:
        period = oee_for_line(s, "L1", start=DAY, end=DAY + timedelta(days=2))
        assert oee_for_line(s, "L1", start=DAY - timedelta(days=9), end=DAY) is None
    assert period.shifts == 2
    f = period.figures
    # planned 54,000; run 20,100 + 27,000 = 47,100; ideal 18,720 + 27,000 = 45,720;
    # good 1,250 of 1,270
    assert (f.planned_s, f.run_s, f.ideal_s) == (54_000, 47_100, 45_720)
    assert f.availability == round(47_100 / 54_000, 4)
    assert f.performance == round(45_720 / 47_100, 4)
    assert f.quality == round(1_250 / 1_270, 4)
    # = good x ideal cycle / planned: (500 x 36 + 750 x 36) / 54,000 (not the mean of 0.67 and 1)
    assert f.oee == round(1_250 * 36 / 54_000, 4) == 0.8333


def test_a_stored_tree_replaces_the_default(sessions):
    with transaction(sessions) as s:
        save_tree(
            s,
            DowntimeConfig.model_validate(
                {"small_stop_max_s": 60, "reasons": [{"code": "X", "name": "X", "loss": "setup"}]}
            ),
        )
    with sessions() as s:
        tree = load_tree(s)
    assert tree.small_stop_max_s == 60 and [r.code for r in tree.reasons] == ["X"]
    assert tree.shifts == ()  # no daily shifts given: lines without a calendar run 24 h


def test_recording_the_same_batch_twice_changes_nothing(sessions, live):
    _golden_run(sessions, live)
    with sessions() as s:
        before = s.query(LineStop).count()
    # A batch handed back after a Redis outage is worked out and recorded again.
    out = apply_reports(live, [S("L1", 100, at("13:40"), "down", "x")], now=at("13:40"),
                        received_at=at("13:40"))  # fmt: skip
    for _ in range(2):
        with transaction(sessions) as s:
            record_transitions(s, out.transitions, load_tree(s))
    with sessions() as s:
        assert s.query(LineStop).count() == before + 1


def test_the_andon_read_model(sessions, live):
    from loopline.models.andon_view import read_andon, read_pareto

    _golden_run(sessions, live)
    data = read_andon(sessions, now=at("14:10"))
    assert [(s["line"], s["started_at"], s["loss"]) for s in data["stops"]] == [
        ("L1", "2026-12-01T12:00:00Z", "unexplained"),
        ("L1", "2026-12-01T09:50:00Z", "unexplained"),
    ]
    assert data["lines"] == {"L1": "Line L1", "L2": "Line L2"}
    jam = next(r for r in data["reasons"] if r["code"] == "SS-JAM")
    assert jam == {
        "code": "SS-JAM",
        "name": "Jam",
        "loss": "small_stop",
        "parent_name": "Small stop",
    }
    pareto = read_pareto(sessions, "L1", now=at("14:10"))
    assert pareto["week"] == "2026-W49" and pareto["rows"][0]["seconds"] == 3_000


def test_counts_redis_lost_come_back_from_the_stored_shift(sessions, live):
    _golden_run(sessions, live)
    with transaction(sessions) as s:
        refresh_oee(s, live, now=at("13:45"))
    for k in live.redis.scan_iter("ll:oee:*"):
        live.redis.delete(k)  # Redis restarted empty (the live lines come back by rebuild)
    with transaction(sessions) as s:
        refresh_oee(s, live, now=at("13:50"))
    with sessions() as s:
        row = s.get(ShiftOee, ("L1", at("06:00")))
        # Still 500 good, 20 scrap (5 startup), 520 x 36 s ideal: the same figures
        assert (row.good, row.scrap, row.ideal_s) == (500, 20, 520 * 36)
        assert row.losses["startup_reject"] == 5


def test_planned_time_starts_when_the_line_first_reported(sessions, live):
    # Loopline installed mid-shift: the first message comes at 08:00, running. At 10:00
    # the shift has 2 h = 7,200 s planned (06:00-08:00 is unknown, not run time), and
    # 150 units x 36 s = 5,400 s ideal: A = 1, P = 0.75, Q = 1, OEE 0.75.
    with sessions() as s:
        sync_live(s, live, now=at("08:00"))
    live.apply([Update("work_order", "WO-9-1", {"order_id": "SO-9", "line": "L1", "sku": "P1",
                                               "qty": 1000, "good": 0, "scrap": 0})])  # fmt: skip
    for k, r in enumerate(
        [S("L1", 1, at("08:00"), "running"), P("L1", 2, at("09:30"), "WO-9-1", 150)]
    ):
        out = apply_reports(live, [r], now=r.ts, received_at=r.ts)
        with transaction(sessions) as s:
            record_transitions(s, out.transitions, load_tree(s))
            record_first_reports(s, out.first_reports)
        assert len(out.first_reports) == (1 if k == 0 else 0)
    with sessions() as s:
        assert first_report(s, "L1") == at("08:00")
        view = current_shift(s, live, "L1", at=at("10:00"), now=at("10:00"))
    assert (view["planned_s"], view["run_s"], view["ideal_s"]) == (7_200, 7_200, 5_400)
    assert (view["availability"], view["performance"], view["oee"]) == (1.0, 0.75, 0.75)
