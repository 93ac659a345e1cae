"""Parsing and checking planning problems: good input in, every bad field named."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from models.planning import Job, Line, Problem, ProblemError, check_problem, parse_problem, solve

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
        ("2026-12-01T00:00:00", START),  # no offset: UTC
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
