"""Parsing and checking planning problems: good input in, every bad field named."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from loopline.models.planning import (
    Job,
    Line,
    Problem,
    ProblemError,
    check_problem,
    parse_problem,
    solve,
)
from loopline.models.planning.problem import parse_calendar

START = datetime(2026, 12, 1, tzinfo=UTC)


def base() -> dict[str, Any]:
    """A small valid problem document to break one field at a time."""
    return {
        "start": "2026-12-01T00:00:00Z",
        "lines": [
            {"id": "L1", "rates": {"P1": 60.0}},
            {"id": "L2", "rates": {"P1": 30.0, "P2": 20.0}},
        ],
        "jobs": [
            {"id": "J0", "product": "P1", "qty": 120, "due": "2026-12-01T06:00:00Z"},
            {"id": "J1", "product": "P2", "qty": 40, "due": "2026-12-01T08:00:00Z", "weight": 3},
            {
                "id": "J2",
                "product": "P1",
                "qty": 60,
                "due": "2026-12-02T00:00:00Z",
                "release": "2026-12-01T04:00:00Z",
            },
            {"id": "J3", "product": "P2", "qty": 10, "due": "2026-12-01T12:00:00Z"},
        ],
    }


def test_parses_the_design_example() -> None:
    problem = parse_problem(
        {
            "start": "2026-12-01T00:00:00Z",
            "lines": [{"id": "L1", "rates": {"P1": 60.0}}],
            "jobs": [
                {
                    "id": "J1",
                    "product": "P1",
                    "qty": 120,
                    "due": "2026-12-01T06:00:00Z",
                    "weight": 3,
                    "release": "2026-12-01T00:00:00Z",
                }
            ],
        }
    )
    assert problem == Problem(
        start=START,
        lines=(Line(id="L1", rates={"P1": 60.0}),),
        jobs=(
            Job(
                id="J1",
                product="P1",
                qty=120.0,
                due=START + timedelta(hours=6),
                weight=3.0,
                release=START,
            ),
        ),
    )


def test_defaults_weight_one_and_release_at_start() -> None:
    problem = parse_problem(base())
    job = problem.jobs[0]
    assert job.weight == 1.0
    assert job.release is None
    assert problem.release_of(job) == START
    assert problem.release_of(problem.jobs[2]) == START + timedelta(hours=4)


def test_release_before_start_means_start() -> None:
    data = base()
    data["jobs"][0]["release"] = "2026-11-30T00:00:00Z"
    problem = parse_problem(data)
    assert problem.release_of(problem.jobs[0]) == START


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T08:00:00+08:00", START),
        ("2026-12-01t00:00:00z", START),
        ("2026-12-01 00:00:00Z", START),
        ("2026-12-01T00:00:00.250Z", START + timedelta(milliseconds=250)),
    ],
)
def test_timestamps_become_aware_utc(text: str, expected: datetime) -> None:
    data = base()
    data["start"] = text
    problem = parse_problem(data)
    assert problem.start == expected
    assert problem.start.utcoffset() == timedelta(0)


def test_unknown_keys_are_allowed() -> None:
    data = base()
    data["shop"] = {"L1": [{"from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z"}]}
    data["lines"][0]["changeover_h"] = 0.5
    data["jobs"][0]["materials"] = [{"sku": "STEEL", "qty": 4}]
    assert len(parse_problem(data).jobs) == 4


def test_no_jobs_is_a_valid_problem() -> None:
    data = base()
    data["jobs"] = []
    assert parse_problem(data).jobs == ()


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        target: Any = data
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return change


def _drop(path: tuple[Any, ...]) -> Any:
    def change(data: dict[str, Any]) -> None:
        target: Any = data
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return change


def _duplicate_job(data: dict[str, Any]) -> None:
    data["jobs"][2]["id"] = "J0"


def _duplicate_line(data: dict[str, Any]) -> None:
    data["lines"][1]["id"] = "L1"


BAD = [
    (_set(("jobs", 3, "qty"), 0), "jobs[3].qty: must be > 0"),
    (_set(("jobs", 3, "qty"), -5), "jobs[3].qty: must be > 0"),
    (_set(("jobs", 1, "qty"), "many"), "jobs[1].qty"),
    (_set(("jobs", 0, "qty"), float("inf")), "jobs[0].qty"),
    (_drop(("jobs", 0, "qty")), "jobs[0].qty: required"),
    (_set(("jobs", 0, "product"), "X"), "jobs[0].product: no line can make product 'X'"),
    (_set(("jobs", 0, "product"), ""), "jobs[0].product: must not be empty"),
    (_set(("jobs", 1, "due"), "2026-11-30T23:00:00Z"), "jobs[1].due: before start"),
    (_set(("jobs", 0, "due"), "2026-13-01T00:00:00Z"), "jobs[0].due: not a valid RFC 3339"),
    (_set(("jobs", 0, "due"), "tomorrow"), "jobs[0].due: must be an RFC 3339 timestamp"),
    (_set(("jobs", 0, "due"), "2026-12-01"), "jobs[0].due: must be an RFC 3339 timestamp"),
    (_set(("jobs", 0, "due"), 1764547200), "jobs[0].due: must be an RFC 3339 timestamp"),
    (_set(("jobs", 2, "release"), "soon"), "jobs[2].release: must be an RFC 3339"),
    (_set(("start",), "2026-12-01T25:00:00Z"), "start: not a valid RFC 3339"),
    (_drop(("start",)), "start: required"),
    (_set(("jobs", 1, "weight"), -1), "jobs[1].weight: must be >= 0"),
    (_duplicate_job, "jobs[2].id: duplicate job id 'J0'"),
    (_duplicate_line, "lines[1].id: duplicate line id 'L1'"),
    (_set(("jobs", 0, "pinned_line"), "L9"), "jobs[0].pinned_line: unknown line 'L9'"),
    (
        _set(("jobs", 1, "pinned_line"), "L1"),
        "jobs[1].pinned_line: line 'L1' cannot make product 'P2'",
    ),
    (
        _set(("jobs", 0, "pinned_start"), "2026-12-01T00:00:00Z"),
        "jobs[0].pinned_start: needs pinned_line",
    ),
    (_set(("lines", 1, "rates", "P2"), 0), "lines[1].rates.P2: must be > 0"),
    (_set(("lines", 0, "rates", "P1"), -60), "lines[0].rates.P1: must be > 0"),
    (_set(("lines", 0, "rates", "GEAR-A"), 0), 'lines[0].rates["GEAR-A"]: must be > 0'),
    (_set(("lines", 0, "rates"), [60]), "lines[0].rates"),
    (_drop(("lines", 0, "id")), "lines[0].id: required"),
    (_set(("lines",), "L1"), "lines"),
    (_set(("jobs",), {"J0": {}}), "jobs"),
]


def rich() -> dict[str, Any]:
    """The small problem with calendars, changeovers and materials, all valid."""
    data = base()
    data["calendars"] = {
        "day": {
            "timezone": "Europe/Berlin",
            "shifts": [
                {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "06:00", "end": "22:00"}
            ],
            "breaks": [{"days": ["mon"], "start": "12:00", "end": "12:30"}],
            "holidays": ["2026-12-25"],
            "closures": [{"start": "2026-12-02T00:00:00Z", "end": "2026-12-02T04:00:00Z"}],
        }
    }
    data["lines"][0]["calendar"] = "day"
    data["changeovers"] = {"L2": {"P1": {"P2": 0.5}}, "*": {"P2": {"P1": 1.0}}}
    data["materials"] = {
        "items": {"STEEL": {"on_hand": 100, "lead_time_days": 5}},
        "bom": {"P1": {"STEEL": 2}},
        "purchase_orders": [
            {"id": "PO-1", "material": "STEEL", "qty": 50, "arrives": "2026-12-03T00:00:00Z"}
        ],
    }
    return data


def test_parses_calendars_changeovers_and_materials() -> None:
    problem = parse_problem(rich())
    assert problem.lines[0].calendar == "day"
    assert problem.calendars["day"].holidays[0].isoformat() == "2026-12-25"
    assert problem.changeover_h("L2", "P1", "P2") == 0.5
    assert problem.changeover_h("L1", "P2", "P1") == 1.0  # the "*" default
    assert problem.changeover_h("L1", "P1", "P2") == 0.0
    assert problem.materials is not None
    assert problem.materials.bom == {"P1": {"STEEL": 2.0}}


BAD_RICH = [
    (_set(("materials", "bom", "P9"), {"STEEL": 1}), "materials.bom.P9: unknown product 'P9'"),
    (_set(("materials", "bom", "P1", "GLUE"), 1), "materials.bom.P1.GLUE: unknown material"),
    (_set(("materials", "bom", "P1", "STEEL"), -2), "materials.bom.P1.STEEL: must be > 0"),
    (_set(("materials", "items", "STEEL", "on_hand"), -1), "materials.items.STEEL.on_hand"),
    (
        _set(("materials", "purchase_orders", 0, "material"), "GLUE"),
        "materials.purchase_orders[0].material: unknown material 'GLUE'",
    ),
    (_set(("lines", 0, "calendar"), "night"), "lines[0].calendar: unknown calendar 'night'"),
    (_set(("calendars", "day", "timezone"), "Mars/Olympus"), "calendars.day.timezone"),
    (_set(("calendars", "day", "shifts", 0, "start"), "6am"), "calendars.day.shifts[0].start"),
    (
        _set(("calendars", "day", "shifts", 0, "days"), ["monday", "xmas"]),
        "calendars.day.shifts[0].days[1]",
    ),
    (_set(("calendars", "day", "holidays"), ["25.12."]), "calendars.day.holidays[0]"),
    (
        _set(("calendars", "day", "closures", 0, "end"), "2026-12-01T00:00:00Z"),
        "calendars.day.closures[0].end: must be after start",
    ),
    (_set(("changeovers", "L7"), {}), "changeovers.L7: unknown line 'L7'"),
    (_set(("changeovers", "L2", "P1", "P2"), -1), "changeovers.L2.P1.P2"),
    (_set(("changeovers", "L2", "P1", "P8"), 1), "changeovers.L2.P1.P8: unknown product"),
    (_set(("jobs", 0, "priority"), "asap"), "jobs[0].priority"),
    (_set(("jobs", 0, "planned_line"), "L9"), "jobs[0].planned_line: unknown line 'L9'"),
    (_set(("frozen_h",), -2), "frozen_h"),
]


@pytest.mark.parametrize(
    ("start", "change", "expected"),
    [(base, c, e) for c, e in BAD] + [(rich, c, e) for c, e in BAD_RICH],
)
def test_bad_input_names_the_field(start: Any, change: Any, expected: str) -> None:
    data = start()
    change(data)
    with pytest.raises(ProblemError) as caught:
        parse_problem(data)
    assert expected in str(caught.value)
    path = expected.split(":")[0]
    assert path in [issue.path for issue in caught.value.errors]


def test_problem_error_is_a_value_error_listing_every_issue() -> None:
    data = base()
    data["jobs"][3]["qty"] = 0
    data["jobs"][0]["due"] = "nope"
    with pytest.raises(ValueError) as caught:
        parse_problem(data)
    assert isinstance(caught.value, ProblemError)
    assert [e.path for e in caught.value.errors] == ["jobs[0].due", "jobs[3].qty"]


def test_cross_field_issues_are_all_reported() -> None:
    data = base()
    data["jobs"][0]["product"] = "X"
    data["jobs"][1]["due"] = "2026-11-01T00:00:00Z"
    data["jobs"][3]["id"] = "J1"
    with pytest.raises(ProblemError) as caught:
        parse_problem(data)
    assert [e.path for e in caught.value.errors] == ["jobs[0].product", "jobs[1].due", "jobs[3].id"]


def test_root_must_be_an_object() -> None:
    with pytest.raises(ProblemError) as caught:
        parse_problem([1, 2])
    assert caught.value.errors[0].path == "(root)"


def test_long_error_lists_are_cut_in_the_message_only() -> None:
    data = base()
    data["jobs"] = [copy.deepcopy(data["jobs"][0]) | {"id": f"J{i}", "qty": 0} for i in range(30)]
    with pytest.raises(ProblemError) as caught:
        parse_problem(data)
    assert len(caught.value.errors) == 30
    assert "(+10 more)" in str(caught.value)


def test_dataclasses_built_in_code_are_checked_too() -> None:
    naive = datetime(2026, 12, 1)
    problem = Problem(
        start=naive,
        lines=(Line("L1", {"P1": 0.0}),),
        jobs=(Job("J1", "P1", 10, due=START),),
    )
    with pytest.raises(ProblemError) as caught:
        check_problem(problem)
    paths = [e.path for e in caught.value.errors]
    assert paths == ["start", "lines[0].rates.P1", "jobs[0].product"]
    with pytest.raises(ProblemError):
        solve(problem)


def test_other_offsets_compare_correctly() -> None:
    plus8 = timezone(timedelta(hours=8))
    problem = Problem(
        start=START,
        lines=(Line("L1", {"P1": 1.0}),),
        jobs=(Job("J1", "P1", 1, due=datetime(2026, 12, 1, 7, tzinfo=plus8)),),
    )
    with pytest.raises(ProblemError, match=r"jobs\[0\].due: before start"):
        check_problem(problem)


def test_absurd_sizes_are_refused_not_overflowed() -> None:
    data = base()
    data["lines"][1]["rates"]["P2"] = 1e-9
    data["jobs"][0]["release"] = "2200-01-01T00:00:00Z"
    with pytest.raises(ProblemError) as caught:
        parse_problem(data)
    paths = [e.path for e in caught.value.errors]
    assert paths == ["jobs[0].release", "jobs[1].qty", "jobs[3].qty", "jobs"]


# --- strict input (issue 8, item 12; issue 10) ----------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # numbers are JSON numbers, never strings or booleans
        (_set(("lines", 0, "rates", "P1"), "60"), "lines[0].rates.P1: must be a number"),
        (_set(("jobs", 0, "qty"), "120"), "jobs[0].qty: must be a number"),
        (_set(("jobs", 1, "weight"), True), "jobs[1].weight: must be a number"),
        (_set(("frozen_h",), "1"), "frozen_h: must be a number"),
        # timestamps carry a zone
        (_set(("jobs", 0, "due"), "2026-12-01T06:00:00"), "jobs[0].due: needs a time zone"),
        (_set(("start",), "2026-12-01T00:00:00"), "start: needs a time zone"),
        (_set(("jobs", 2, "release"), "2026-12-01 04:00:00"), "jobs[2].release: needs a time"),
        # line ids are MQTT topic names
        (_set(("lines", 0, "id"), "L.1"), "lines[0].id: must match [A-Za-z0-9_-]"),
        (_set(("lines", 0, "id"), "L/1"), "lines[0].id: must match [A-Za-z0-9_-]"),
        (_set(("lines", 0, "id"), "L1" * 40), "lines[0].id: at most 64 characters"),
        (_set(("jobs", 0, "pinned_line"), "L+"), "jobs[0].pinned_line: must match"),
        # other ids and names: no NUL or control characters, bounded
        (_set(("jobs", 0, "id"), "J\x000"), "jobs[0].id: must not contain control characters"),
        (_set(("jobs", 0, "order"), "SO\n1"), "jobs[0].order: must not contain control"),
        (_set(("jobs", 0, "product"), "P\x001"), "jobs[0].product: must not contain control"),
        (_set(("jobs", 0, "id"), "J" * 81), "jobs[0].id: at most 80 characters"),
        (_set(("jobs", 0, "id"), "J\ud800"), "jobs[0].id: must not contain"),
        (_set(("lines", 0, "down_reason"), "jam\x00"), "lines[0].down_reason: must not contain"),
        # dates the planner cannot reach are refused, not overflowed
        (_set(("jobs", 0, "due"), "9999-12-31T23:00:00Z"), "jobs[0].due: must be between"),
        (_set(("start",), "0001-01-01T00:00:00+01:00"), "start: must be between"),
        (_set(("jobs", 0, "weight"), 1e300), "jobs[0].weight: must be <="),
        (_set(("frozen_h",), 1e300), "frozen_h: must be <="),
    ],
)
def test_strict_fields_are_refused_by_name(change: Any, expected: str) -> None:
    data = base()
    change(data)
    with pytest.raises(ProblemError) as caught:
        parse_problem(data)
    assert expected in str(caught.value), caught.value.errors
    assert expected.split(":")[0] in [issue.path for issue in caught.value.errors]


def test_a_dict_key_that_is_no_topic_name_is_named() -> None:
    data = rich()
    data["changeovers"]["L.2"] = {}
    with pytest.raises(ProblemError) as caught:
        parse_problem(data)
    assert [e.path for e in caught.value.errors] == ['changeovers["L.2"]']


def test_field_errors_and_cross_field_errors_are_listed_together() -> None:
    data = rich()
    data["jobs"][0]["qty"] = "120"  # a field error
    data["jobs"][0]["pinned_line"] = "L7"  # and a cross-field error of the same job
    data["jobs"][1]["pinned_line"] = "L9"  # cross-field errors
    data["jobs"][3]["id"] = "J1"
    data["lines"][1]["rates"]["P2"] = "20"  # a bad line still makes P2 for the references
    data["materials"]["bom"]["P9"] = {"STEEL": 1}
    data["calendars"]["day"]["timezone"] = "Mars/Olympus"  # still a known calendar name
    with pytest.raises(ProblemError) as caught:
        parse_problem(data)
    assert sorted(e.path for e in caught.value.errors) == sorted(
        [
            "lines[1].rates.P2",
            "jobs[0].qty",
            "jobs[0].pinned_line",
            "calendars.day.timezone",
            "jobs[1].pinned_line",
            "jobs[3].id",
            "materials.bom.P9",
        ]
    )


# --- calendars the planner cannot lay out (issue 10) -----------------------------------


def _calendar_problem(calendar: dict[str, Any]) -> dict[str, Any]:
    data = base()
    data["calendars"] = {"c": calendar}
    data["lines"][0]["calendar"] = "c"
    return data


def test_a_line_closed_for_good_takes_no_job_and_the_plan_says_why() -> None:
    # L1 (the fast line) is closed past the planner's reach: it was planned around the clock.
    closed = {"closures": [{"start": "2026-11-01T00:00:00Z", "end": "8999-01-01T00:00:00Z"}]}
    schedule = solve(parse_problem(_calendar_problem(closed)), max_rounds=10)
    assert {a.line for a in schedule.assignments} == {"L2"}
    assert len(schedule.assignments) == 4
    [idle] = schedule.idle_lines
    assert idle.line == "L1" and idle.cause == {"kind": "no_working_time", "calendar": "c"}
    assert "no working time" in idle.reason


def test_every_shift_a_holiday_is_no_working_time() -> None:
    # Mondays only, and every Monday for 10,000 weeks (past the reach) a holiday: the line
    # has no working time, and was planned as if it worked around the clock.
    mondays = [
        (datetime(2026, 11, 30) + timedelta(weeks=k)).date().isoformat() for k in range(10_000)
    ]
    calendar = {
        "shifts": [{"days": ["mon"], "start": "06:00", "end": "14:00"}],
        "holidays": mondays,
    }
    schedule = solve(parse_problem(_calendar_problem(calendar)), max_rounds=10)
    assert {a.line for a in schedule.assignments} == {"L2"}
    assert [il.line for il in schedule.idle_lines] == ["L1"]


def test_work_only_a_closed_line_could_do_is_refused_by_job() -> None:
    closed = {"closures": [{"start": "2026-11-01T00:00:00Z", "end": "8999-01-01T00:00:00Z"}]}
    data = _calendar_problem(closed)
    data["jobs"].append({"id": "J9", "product": "P1", "qty": 5, "due": "2026-12-02T00:00:00Z"})
    data["lines"] = [data["lines"][0]]  # only L1 makes P1; P2 has no line at all
    data["jobs"] += [
        {"id": "J8", "product": "P1", "qty": 5, "due": "2026-12-02T00:00:00Z", "pinned_line": "L1"}
    ]
    with pytest.raises(ProblemError) as caught:
        parse_problem(data)
    paths = [e.path for e in caught.value.errors]
    assert paths.count("jobs[0].product") == 1 and "jobs[4].product" in paths
    assert "jobs[5].pinned_line" in paths
    assert "no working time" in str(caught.value)


def test_a_closure_past_the_horizon_keeps_the_line_closed() -> None:
    # Open on 1 Dec only, then closed for a year: the line was treated as working round
    # the clock after the closure began (the windows simply ran out).
    closed = {"closures": [{"start": "2026-12-01T01:00:00Z", "end": "2027-12-01T00:00:00Z"}]}
    problem = parse_problem(_calendar_problem(closed))
    schedule = solve(problem, max_rounds=20)
    closure = (datetime(2026, 12, 1, 1, tzinfo=UTC), datetime(2027, 12, 1, tzinfo=UTC))
    for a in schedule.assignments:
        if a.line == "L1":  # work may pause over the closure, never end inside it
            assert not closure[0] < a.end < closure[1], a


def test_a_week_without_working_time_is_listed_with_the_other_issues() -> None:
    data = _calendar_problem(
        {
            "shifts": [{"days": ["mon"], "start": "06:00", "end": "06:00"}],
            "breaks": [{"days": ["mon", "tue"], "start": "00:00", "end": "24:00"}],
        }
    )
    data["jobs"][0]["qty"] = 0
    with pytest.raises(ProblemError) as caught:
        parse_problem(data)
    assert [e.path for e in caught.value.errors] == ["jobs[0].qty", "calendars.c.shifts"]


def test_work_past_ten_years_of_calendar_is_planned_in_working_time() -> None:
    # One hour a week, 1,000 hours of work: about 19 years of calendar. There was a hidden
    # 10-year cap: past it the line worked round the clock (later: refused).
    data = _calendar_problem({"shifts": [{"days": ["mon"], "start": "06:00", "end": "07:00"}]})
    data["lines"] = [{"id": "L1", "rates": {"P1": 1.0, "P2": 1.0}, "calendar": "c"}]
    data["jobs"] = [{"id": "J0", "product": "P1", "qty": 1000, "due": "2026-12-02T00:00:00Z"}]
    [a] = solve(parse_problem(data), max_rounds=10).assignments
    assert a.start == datetime(2026, 12, 7, 6, tzinfo=UTC)  # the first Monday shift
    weeks = (a.end - a.start).days / 7
    assert 999 <= weeks <= 1000 and (a.end.hour, a.end.weekday()) == (7, 0)


def test_work_past_the_planners_reach_is_refused_by_calendar() -> None:
    # One hour a week, 10,000 hours of work: about 190 years, past the 114 the planner plans.
    data = _calendar_problem({"shifts": [{"days": ["mon"], "start": "06:00", "end": "07:00"}]})
    data["lines"] = [{"id": "L1", "rates": {"P1": 1.0, "P2": 1.0}, "calendar": "c"}]
    data["jobs"] = [{"id": "J0", "product": "P1", "qty": 10_000, "due": "2026-12-02T00:00:00Z"}]
    with pytest.raises(ProblemError) as caught:
        parse_problem(data)
    assert [e.path for e in caught.value.errors] == ["calendars.c"]
    assert "years" in str(caught.value)


def test_a_very_sparse_calendar_is_refused_not_overflowed() -> None:
    data = _calendar_problem({"shifts": [{"days": ["mon"], "start": "06:00", "end": "06:00:01"}]})
    data["jobs"][0]["qty"] = 500_000  # within the planner's 1,000,000 h, at one second a week
    data["lines"] = [{"id": "L1", "rates": {"P1": 1.0, "P2": 1.0}, "calendar": "c"}]
    with pytest.raises(ProblemError) as caught:
        solve(parse_problem(data), max_rounds=10)
    assert "calendars.c" in [e.path for e in caught.value.errors]


def test_a_stored_calendar_lists_field_and_cross_field_issues_together() -> None:
    # A bad field stopped the closure check: only the time zone and the shift were named.
    bad = {
        "timezone": "Mars/Olympus",
        "shifts": [{"days": ["mon"], "start": "25:00", "end": "07:00"}],
        "closures": [{"start": "2026-12-02T06:00:00Z", "end": "2026-12-01T00:00:00Z"}],
    }
    with pytest.raises(ProblemError) as caught:
        parse_calendar("L1", bad, naive_is_utc=False)
    assert [e.path for e in caught.value.errors] == [
        "timezone",
        "shifts[0].start",
        "closures[0].end",
    ]


def test_a_problem_that_passed_the_check_is_not_checked_again(monkeypatch: Any) -> None:
    from loopline.models.planning import problem as module

    calls: list[Problem] = []
    real = module._check_problem

    def counted(p: Problem) -> None:
        calls.append(p)
        real(p)

    monkeypatch.setattr(module, "_check_problem", counted)
    good = parse_problem(base())
    check_problem(good)
    check_problem(good)  # as replan's build checks it, then solve
    assert calls == [good]
    bad = dataclasses.replace(good, frozen_h=-1.0)
    for _ in range(2):  # a problem that failed is checked (and refused) every time
        with pytest.raises(ProblemError):
            check_problem(bad)
    assert calls == [good, bad, bad]
    other = dataclasses.replace(good, frozen_h=2.0)
    check_problem(other)
    check_problem(good)  # another problem passed in between: checked afresh
    assert calls == [good, bad, bad, other, good]
