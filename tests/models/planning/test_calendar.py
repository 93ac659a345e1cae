"""Calendar layouts: shifted to each replan's start bit for bit, shared by calendars alike."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from datetime import time as clock

from hypothesis import given, settings
from hypothesis import strategies as st

from loopline.models.planning import Calendar, Job, Line, Problem, WeeklyWindow, solve
from loopline.models.planning.calendar import (
    LAYOUT_STEP_H,
    _anchor,
    _hours,
    _moved,
    _working_windows,
    working_windows,
)
from loopline.models.planning.solver import PlanModel

START = datetime(2026, 12, 1, 6, 30, tzinfo=UTC)
TWO_SHIFTS = Calendar(
    "plant",
    timezone="Europe/Berlin",
    shifts=(WeeklyWindow(frozenset(range(5)), clock(6), clock(22)),),
    breaks=(WeeklyWindow(frozenset(range(5)), clock(12), clock(12, 30)),),
)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, int(LAYOUT_STEP_H * 3600e6)))
def test_windows_shifted_to_any_start_are_the_window_by_window_shift(offset_us: int) -> None:
    origin = _anchor(START) + timedelta(microseconds=offset_us)
    until = origin + timedelta(days=90)
    windows = working_windows(TWO_SHIFTS, origin, until)
    anchor = _anchor(origin)
    steps = -(-_hours(until, anchor) // LAYOUT_STEP_H)
    base = _working_windows(
        replace(TWO_SHIFTS, id=""), anchor, anchor + timedelta(hours=steps * LAYOUT_STEP_H)
    )
    shift = _hours(origin, anchor)
    expected = tuple((max(0.0, _moved(a, shift)), _moved(b, shift)) for a, b in base if b > shift)
    assert windows == expected  # floats equal bit for bit


def _problem(calendars: dict[str, Calendar], names: list[str]) -> Problem:
    lines = tuple(Line(f"L{i}", {"A": 50.0, "B": 40.0}, calendar=n) for i, n in enumerate(names))
    jobs = tuple(
        Job(f"J{k}", "AB"[k % 2], 100.0 + 10 * k, START + timedelta(hours=4 + 3 * k))
        for k in range(12)
    )
    return Problem(start=START, lines=lines, jobs=jobs, calendars=calendars)


def test_lines_with_calendars_alike_share_one_layout_and_plan_as_with_one_calendar() -> None:
    # Each line's own copy of the plant's calendar, as a stored factory has them.
    own = {f"L{i}": replace(TWO_SHIFTS, id=f"L{i}") for i in range(3)}
    model = PlanModel(_problem(own, ["L0", "L1", "L2"]))
    assert model.windows[0] is model.windows[1] is model.windows[2]
    assert model.timelines[0] is model.timelines[1] is model.timelines[2]
    shared = solve(_problem({"plant": TWO_SHIFTS}, ["plant"] * 3), max_rounds=20)
    apart = solve(_problem(own, ["L0", "L1", "L2"]), max_rounds=20)
    assert apart.assignments == shared.assignments
