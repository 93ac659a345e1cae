"""Shop-floor reports into live state: counters, rates, ETAs, risk, gaps and refusals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from loopline.models.clock import parse_ts
from loopline.models.live import Update
from loopline.models.shopfloor import COUNTER_QTY_FACTOR, SEQ_JUMP_MAX, apply_reports

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class P:
    line: str
    seq: int
    ts: datetime
    work_order: str
    good: int
    scrap: int = 0
    site: str = "s1"


@dataclass(frozen=True)
class S:
    line: str
    seq: int
    ts: datetime
    state: str
    reason: str | None = None
    site: str = "s1"


def _seed(live, promised="2026-12-01"):
    live.apply(
        [
            Update(
                "line",
                "L1",
                {
                    "state": "unavailable",
                    "queue": ["WO-1-1", "WO-2-1"],
                    "seq": None,
                    "rates": {"P1": 100.0},
                },
            ),
            Update(
                "work_order",
                "WO-1-1",
                {
                    "order_id": "SO-1",
                    "line": "L1",
                    "sku": "P1",
                    "qty": 100,
                    "good": 0,
                    "scrap": 0,
                    "status": "planned",
                    "planned_start": "2026-12-01T08:00:00Z",
                    "planned_end": "2026-12-01T09:00:00Z",
                },
            ),
            Update(
                "work_order",
                "WO-2-1",
                {
                    "order_id": "SO-2",
                    "line": "L1",
                    "sku": "P1",
                    "qty": 200,
                    "good": 0,
                    "scrap": 0,
                    "status": "planned",
                    "planned_start": "2026-12-01T09:00:00Z",
                    "planned_end": "2026-12-01T11:00:00Z",
                },
            ),
            Update(
                "order",
                "SO-1",
                {
                    "status": "open",
                    "promised_date": promised,
                    "work_orders": ["WO-1-1"],
                    "customer": "Acme",
                },
            ),
            Update(
                "order",
                "SO-2",
                {
                    "status": "open",
                    "promised_date": promised,
                    "work_orders": ["WO-2-1"],
                    "customer": "Acme",
                },
            ),
        ]
    )


def test_progress_sets_counters_rate_eta_and_progress(live):
    _seed(live)
    apply_reports(live, [P("L1", 1, T0, "WO-1-1", 10)], now=T0, received_at=T0)
    apply_reports(
        live,
        [P("L1", 2, T0 + timedelta(minutes=6), "WO-1-1", 20, 1)],
        now=T0 + timedelta(minutes=6),
        received_at=T0,
    )
    wo = live.get("work_order", "WO-1-1")
    assert (wo["good"], wo["scrap"], wo["status"], wo["progress"]) == (20, 1, "running", 0.2)
    assert wo["rate_uph"] == 100.0
    # 80 left at 100/h from 08:06 -> 08:54; the next one still starts as planned at 09:00.
    assert parse_ts(wo["eta"]) == T0 + timedelta(minutes=54)
    assert parse_ts(live.get("order", "SO-2")["eta"]) == T0 + timedelta(hours=3)
    # At 08:30 only 25 made at a slower pace: the next order chains after the late one.
    later = T0 + timedelta(minutes=30)
    apply_reports(live, [P("L1", 3, later, "WO-1-1", 25)], now=later, received_at=later)
    eta1 = parse_ts(live.get("work_order", "WO-1-1")["eta"])
    assert eta1 > T0 + timedelta(hours=1)
    assert parse_ts(live.get("order", "SO-2")["eta"]) == eta1 + timedelta(hours=2)
    assert live.get("order", "SO-1")["status"] == "in_progress"


def test_repeated_or_older_counters_change_nothing(live):
    _seed(live)
    apply_reports(live, [P("L1", 1, T0, "WO-1-1", 50)], now=T0, received_at=T0)
    out = apply_reports(
        live, [P("L1", 1, T0, "WO-1-1", 50), P("L1", 1, T0, "WO-1-1", 40)], now=T0, received_at=T0
    )
    assert live.get("work_order", "WO-1-1")["good"] == 50
    assert not [c for c in out.changes if c.entity == "work_order" and "good" in c.new]


def test_state_down_with_reason_and_order_goes_at_risk(live):
    _seed(live, promised="2026-12-01")
    apply_reports(live, [S("L1", 1, T0, "down", "jam on feeder")], now=T0, received_at=T0)
    line = live.get("line", "L1")
    assert (line["state"], line["reason"], line["since"]) == (
        "down",
        "jam on feeder",
        "2026-12-01T08:00:00Z",
    )
    # Twenty hours later nothing was made: SO-2 cannot finish on the 1st any more.
    later = T0 + timedelta(hours=20)
    apply_reports(live, [S("L1", 2, later, "down", "jam on feeder")], now=later, received_at=later)
    order = live.get("order", "SO-2")
    assert order["risk"] == "at_risk"
    assert "line L1 is down (jam on feeder)" in order["risk_reason"]


def test_completion_marks_done(live):
    _seed(live)
    apply_reports(live, [P("L1", 1, T0, "WO-1-1", 100)], now=T0, received_at=T0)
    assert live.get("work_order", "WO-1-1")["status"] == "done"
    order = live.get("order", "SO-1")
    assert (order["status"], order["risk"], order["progress"]) == ("completed", "done", 1.0)


def test_gap_unknown_line_and_unknown_work_order(live):
    _seed(live)
    out = apply_reports(
        live,
        [
            S("L1", 1, T0, "running"),
            S("L1", 5, T0, "idle"),
            S("L9", 1, T0, "running"),
            P("L1", 6, T0, "WO-X", 1),
        ],
        now=T0,
        received_at=T0,
    )
    assert [(g.line, g.expected, g.got) for g in out.gaps] == [("L1", 2, 5)]
    assert sorted(r.reason for r in out.refused) == ["unknown_line", "unknown_work_order"]


def test_older_state_is_ignored(live):
    _seed(live)
    apply_reports(live, [S("L1", 5, T0, "down", "jam")], now=T0, received_at=T0)
    apply_reports(live, [S("L1", 4, T0, "running")], now=T0, received_at=T0)
    assert live.get("line", "L1")["state"] == "down"


def test_state_report_overtaken_by_progress_still_counts(live):
    _seed(live)
    apply_reports(live, [P("L1", 2, T0, "WO-1-1", 5)], now=T0, received_at=T0)
    apply_reports(live, [S("L1", 1, T0, "down", "jam")], now=T0, received_at=T0)
    line = live.get("line", "L1")
    assert (line["state"], line["reason"], line["seq"]) == ("down", "jam", 2)


def test_restarted_sensor_counter_is_accepted(live):
    _seed(live)
    apply_reports(live, [S("L1", 5000, T0, "running")], now=T0, received_at=T0)
    out = apply_reports(live, [S("L1", 1, T0, "down", "power cut")], now=T0, received_at=T0)
    assert out.resets == ["L1"]
    line = live.get("line", "L1")
    assert (line["state"], line["reason"], line["seq"]) == ("down", "power cut", 1)


def test_counters_beyond_the_plausible_are_refused_and_not_stored(live):
    _seed(live)
    apply_reports(live, [P("L1", 1, T0, "WO-1-1", 5)], now=T0, received_at=T0)
    limit = COUNTER_QTY_FACTOR * 100  # WO-1-1 is 100 units
    out = apply_reports(
        live,
        [
            P("L1", 2, T0, "WO-1-1", 10**15),
            P("L1", 3, T0, "WO-1-1", 2**31),
            P("L1", 4, T0, "WO-1-1", limit - 7, 8),
        ],
        now=T0,
        received_at=T0,
    )
    assert [r.reason for r in out.refused] == ["implausible_counter"] * 3
    assert "good 1000000000000000" in out.refused[0].detail
    assert str(limit) in out.refused[0].detail and "qty 100" in out.refused[0].detail
    wo = live.get("work_order", "WO-1-1")
    assert (wo["good"], wo["status"]) == (5, "running")
    # At the bound is still a count (overproduction happens), and is applied.
    out = apply_reports(live, [P("L1", 5, T0, "WO-1-1", limit - 7, 7)], now=T0, received_at=T0)
    assert out.refused == []
    assert live.get("work_order", "WO-1-1")["good"] == limit - 7


def test_a_huge_seq_jump_is_a_reset_not_a_gap(live):
    _seed(live)
    apply_reports(live, [S("L1", 5, T0, "running")], now=T0, received_at=T0)
    out = apply_reports(live, [S("L1", 2**50, T0, "down", "jam")], now=T0, received_at=T0)
    assert out.gaps == []
    assert [(j.line, j.expected, j.got) for j in out.jumps] == [("L1", 6, 2**50)]
    assert out.resets == ["L1"]
    line = live.get("line", "L1")
    assert (line["state"], line["seq"]) == ("down", 2**50)
    # The sensor's real numbering goes on: a restart, not 2^50 messages lost or ignored.
    out = apply_reports(live, [S("L1", 6, T0, "running")], now=T0, received_at=T0)
    assert (out.gaps, out.resets) == ([], ["L1"])
    assert live.get("line", "L1")["state"] == "running"
    # A gap within the window is still a gap.
    out = apply_reports(live, [S("L1", 6 + SEQ_JUMP_MAX, T0, "idle")], now=T0, received_at=T0)
    assert [(g.expected, g.got) for g in out.gaps] == [(7, 6 + SEQ_JUMP_MAX)]
    assert out.jumps == []
