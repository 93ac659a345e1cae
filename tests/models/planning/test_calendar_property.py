"""Random calendars (issue 10): no traceback on any calendar; jobs only in working time;
a line without working time takes no job and the plan says why."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopline.models.planning import ProblemError, parse_problem, solve
from loopline.models.planning.calendar import first_working_h
from tests.models.planning.invariants import assert_valid

START = datetime(2026, 12, 1, tzinfo=UTC)
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _ts(hours: float) -> str:
    return (START + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


_clock = st.tuples(st.integers(0, 23), st.integers(0, 59), st.integers(0, 59)).map(
    lambda t: f"{t[0]:02d}:{t[1]:02d}:{t[2]:02d}"
)
_window = st.fixed_dictionaries(
    {
        "days": st.lists(st.sampled_from(DAYS), min_size=1, max_size=3),
        "start": _clock,
        "end": _clock,
    }
)
# Short service stops up to closures for good (past the planner's reach).
_closure = st.tuples(
    st.sampled_from([-24.0, 0.0]) | st.floats(-1_000, 50_000),
    st.sampled_from([0.5, 30.0, 2_000.0, 200_000.0, 2_000_000.0]),
).map(lambda t: {"start": _ts(t[0]), "end": _ts(t[0] + t[1])})
_calendar = st.fixed_dictionaries(
    {
        "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kathmandu"]),
        "shifts": st.lists(_window, max_size=3),
        "breaks": st.lists(_window, max_size=2),
        "holidays": st.lists(
            st.integers(-5, 400).map(lambda d: (date(2026, 12, 1) + timedelta(days=d)).isoformat()),
            max_size=30,
        ),
        "closures": st.lists(_closure, max_size=3),
    }
)
_job = st.fixed_dictionaries({"qty": st.floats(0.01, 2_000), "due": st.floats(0, 2_000).map(_ts)})


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(_calendar, min_size=1, max_size=2),
    st.lists(_job, min_size=1, max_size=6),
    st.booleans(),
)
def test_any_calendar_plans_in_working_time_or_is_refused_by_field(
    calendars: list[dict[str, Any]], jobs: list[dict[str, Any]], spare_line: bool
) -> None:
    lines: list[dict[str, Any]] = [
        {"id": f"L{k}", "rates": {"P1": 10.0 + k}, "calendar": f"c{k}"}
        for k in range(len(calendars))
    ]
    if spare_line:
        lines.append({"id": "L9", "rates": {"P1": 1.0}})  # always working
    data = {
        "start": _ts(0),
        "calendars": {f"c{k}": c for k, c in enumerate(calendars)},
        "lines": lines,
        "jobs": [{"id": f"J{i}", "product": "P1", **j} for i, j in enumerate(jobs)],
    }
    try:
        problem = parse_problem(data)
    except ProblemError as exc:  # refused, every issue naming its field
        assert exc.errors and all(e.path and e.message for e in exc.errors)
        return
    schedule = solve(problem, max_rounds=3)
    assert_valid(problem, schedule)
    closed = {
        ln.id
        for ln in problem.lines
        if ln.calendar and first_working_h(problem.calendars[ln.calendar], problem.start) is None
    }
    assert {il.line for il in schedule.idle_lines} == closed
    assert not closed & {a.line for a in schedule.assignments}
