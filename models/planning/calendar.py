"""Working calendars turned into working windows, in hours from the plan's start.

A calendar is weekly shifts in a local time zone, minus breaks, holidays (whole local
days) and one-off closures. The planner needs it as sorted, disjoint ``[open, close)``
pairs of float hours; ``Timeline`` answers "when does this much work, started at t,
finish?" for the Python side (pinned work, quotes, explanations) the same way the
optimisation kernel does. Each calendar is laid out as far as the work its lines could
get needs at its pace (``layout_hours``), up to the planner's reach (``MAX_HORIZON_H``, no
shorter cap). A line whose calendar has no working time within that reach (closed for
good, every shift a holiday) takes no job (``closed_lines``) and the plan says why.
``calendar_issues`` refuses what cannot be planned: a week with no working time, work
needing more calendar than the reach, and jobs only closed lines could make.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from loopline.models.planning.problem import (
    MAX_HORIZON_H,
    Calendar,
    Issue,
    Job,
    Problem,
    WeeklyWindow,
    _key,
)

Window = tuple[float, float]
WEEK_H = 168.0
# Past ``until`` the windows go on this far beyond the missing working time, so that a
# weekly shift falls inside the extension.
EXTENSION_SLACK = timedelta(days=8)
# Calendars are laid out this far past what the work could need at their pace.
HORIZON_MARGIN = timedelta(days=30)
# Looking for a calendar's first working time: a week and a day first, then twice as far
# each step, at most this far at once.
FIRST_LOOK = timedelta(days=8)
MAX_LOOK = timedelta(days=4 * 366)
# Windows are laid out to whole steps of this many hours (four weeks) past the start.
LAYOUT_STEP_H = 4 * WEEK_H


def working_windows(calendar: Calendar, origin: datetime, until: datetime) -> tuple[Window, ...]:
    """The calendar's working time from ``origin`` to ``until`` at least, in hours from origin
    (see ``_working_windows``).

    Laid out from an anchor on a fixed four-week grid (and to a whole number of steps
    past it), then shifted: every replan within the same four weeks, each starting at its
    own "now", reuses one cached layout.
    """
    steps = max(1, math.ceil(_hours(until, _anchor(origin)) / LAYOUT_STEP_H))
    return _shifted(_unnamed(calendar), origin, steps)


def _unnamed(calendar: Calendar) -> Calendar:
    """The calendar without its id, which names it but changes none of its windows: lines
    with calendars alike (each line's own copy of the plant's shifts) share one cached
    layout (one object, so one timeline and one array in the model)."""
    return replace(calendar, id="") if calendar.id else calendar


@lru_cache(maxsize=256)
def _shifted(calendar: Calendar, origin: datetime, steps: int) -> tuple[Window, ...]:
    """The anchored layout of ``steps`` grid steps, in hours from ``origin``."""
    anchor = _anchor(origin)
    base = _working_windows(calendar, anchor, anchor + timedelta(hours=steps * LAYOUT_STEP_H))
    shift = _hours(origin, anchor)
    if shift == 0 or not base:
        return base
    # As ``_moved`` window by window, in one pass over arrays (every replan has its own
    # origin, so this runs once per calendar and replan).
    windows = np.array(base, dtype=np.float64)
    windows = _moved_all(windows[windows[:, 1] > shift], shift)
    np.maximum(windows[:, 0], 0.0, out=windows[:, 0])
    return tuple(map(tuple, windows.tolist()))


def _moved(hours: float, shift: float) -> float:
    """``hours - shift`` snapped to whole microseconds, computed as ``_hours`` computes
    it, so that a window laid out from the anchor is bit for bit the one laid out from
    origin (plans are microsecond datetimes, checked against these windows)."""
    return (round((hours - shift) * 3.6e9) / 1e6) / 3600


def _moved_all(hours: np.ndarray, shift: float) -> np.ndarray:
    """``_moved`` of every element, bit for bit (``np.rint`` rounds half to even as
    ``round`` does, and the whole microseconds divide exactly as Python's ints do)."""
    return np.rint((hours - shift) * 3.6e9) / 1e6 / 3600


_ANCHOR = datetime(2001, 1, 1, tzinfo=UTC)
_STEP = timedelta(hours=LAYOUT_STEP_H)


def _anchor(origin: datetime) -> datetime:
    """The grid point at or before ``origin`` that layouts start from."""
    return _ANCHOR + _STEP * ((origin - _ANCHOR) // _STEP)


@lru_cache(maxsize=256)
def _working_windows(calendar: Calendar, origin: datetime, until: datetime) -> tuple[Window, ...]:
    """The calendar's working time from ``origin`` to ``until`` at least, in hours from origin.

    Without shifts the line works around the clock, apart from breaks, holidays and
    closures. Callers pick ``until`` far enough out at the calendar's weekly pace; where
    holidays or closures take working time out of that span (a closure running past
    ``until``, say), the windows go on past ``until`` until the span's working time is
    made up, so that the line never runs out of windows (after the last one the kernel
    takes it to work round the clock) while it is closed. They stop at
    ``MAX_HORIZON_H`` after origin (``calendar_issues`` refuses closures beyond it).
    Cached: every line on the same calendar, and every replan from the same start, share it.
    """
    windows = list(_windows(calendar, origin, until))
    weekly = weekly_hours(calendar)
    target = weekly / WEEK_H * _hours(until, origin)
    have = sum(b - a for a, b in windows)
    reach = origin + timedelta(hours=MAX_HORIZON_H)
    end = until
    while have + 1e-9 < target and end < reach:
        step = timedelta(hours=(target - have) * WEEK_H / weekly) + EXTENSION_SLACK
        new_end = min(end + step, reach)
        offset = _hours(end, origin)
        for a, b in _windows(calendar, end, new_end):
            if windows and windows[-1][1] >= a + offset:  # windows abutting at ``end``
                windows[-1] = (windows[-1][0], b + offset)
            else:
                windows.append((a + offset, b + offset))
            have += b - a
        end = new_end
    return tuple(windows)


def working_spans(
    calendar: Calendar, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The calendar's working time between ``start`` and ``end`` exactly, as datetimes."""
    return [
        (start + timedelta(hours=a), start + timedelta(hours=b))
        for a, b in _windows(calendar, start, end)
    ]


def _hours(moment: datetime, origin: datetime) -> float:
    return (moment - origin).total_seconds() / 3600


def _windows(calendar: Calendar, origin: datetime, until: datetime) -> tuple[Window, ...]:
    """The calendar's working time between ``origin`` and ``until`` exactly."""
    zone = ZoneInfo(calendar.timezone)
    first = origin.astimezone(zone).date() - timedelta(days=1)
    last = until.astimezone(zone).date() + timedelta(days=1)
    work = _weekly(calendar.shifts, zone, first, last) if calendar.shifts else [(origin, until)]
    off: list[tuple[datetime, datetime]] = _weekly(calendar.breaks, zone, first, last)
    for day in calendar.holidays:
        if first <= day <= last:
            begin = datetime.combine(day, time(0), tzinfo=zone)
            off.append((begin, datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)))
    off += [(c.start, c.end) for c in calendar.closures]
    hours = _subtract(_merge(_clip(work, origin, until)), _merge(_clip(off, origin, until)))
    return tuple(
        ((a - origin).total_seconds() / 3600, (b - origin).total_seconds() / 3600) for a, b in hours
    )


def _weekly(
    windows: Iterable[WeeklyWindow], zone: ZoneInfo, first: date, last: date
) -> list[tuple[datetime, datetime]]:
    spans = []
    windows = tuple(windows)
    day = first
    while day <= last:
        weekday = day.weekday()
        for w in windows:
            if weekday in w.days:
                begin = datetime.combine(day, w.start, tzinfo=zone)
                end_day = day if w.end > w.start else day + timedelta(days=1)
                spans.append((begin, datetime.combine(end_day, w.end, tzinfo=zone)))
        day += timedelta(days=1)
    return spans


def _clip(
    spans: Iterable[tuple[datetime, datetime]], origin: datetime, until: datetime
) -> list[tuple[datetime, datetime]]:
    return [(max(a, origin), min(b, until)) for a, b in spans if b > origin and a < until]


def _merge(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for a, b in sorted(spans):
        if b <= a:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _subtract(
    work: list[tuple[datetime, datetime]], off: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    """``work`` minus ``off``; both sorted and disjoint."""
    out = []
    k = 0
    for a, b in work:
        while k < len(off) and off[k][1] <= a:
            k += 1
        j = k
        cursor = a
        while j < len(off) and off[j][0] < b:
            if off[j][0] > cursor:
                out.append((cursor, off[j][0]))
            cursor = max(cursor, off[j][1])
            j += 1
        if cursor < b:
            out.append((cursor, b))
    return out


def weekly_hours(calendar: Calendar) -> float:
    """Working hours in a plain week (shifts minus breaks; without shifts, 168 minus breaks)."""
    return _weekly_hours(calendar.shifts, calendar.breaks)


@lru_cache(maxsize=256)
def _weekly_hours(shifts: tuple[WeeklyWindow, ...], breaks: tuple[WeeklyWindow, ...]) -> float:
    if not shifts:
        return WEEK_H - _weekly_hours(breaks, ()) if breaks else WEEK_H
    origin = datetime(2001, 1, 1, tzinfo=ZoneInfo("UTC"))  # a Monday, no DST in UTC
    plain = Calendar(id="week", shifts=shifts, breaks=breaks)
    return sum(b - a for a, b in _windows(plain, origin, origin + timedelta(days=7)))


def first_working_h(calendar: Calendar, origin: datetime) -> float | None:
    """Hours from ``origin`` to the calendar's first working instant, or None when it has
    no working time within the planner's reach (``MAX_HORIZON_H``): closed for good, or
    every shift a holiday."""
    return _first_working_h(_unnamed(calendar), origin)


@lru_cache(maxsize=256)
def _first_working_h(calendar: Calendar, origin: datetime) -> float | None:
    # As far as the layout from the anchor goes (``working_windows``).
    reach = _anchor(origin) + timedelta(hours=MAX_HORIZON_H)
    begin, step = origin, FIRST_LOOK
    while begin < reach:
        # A closure covering ``begin`` is skipped whole (a line shut for decades costs one step).
        inside = [c.end for c in calendar.closures if c.start <= begin < c.end]
        if inside:
            begin = min(max(inside), reach)
            continue
        end = min(begin + step, reach)
        windows = _windows(calendar, begin, end)
        if windows:
            return _hours(begin, origin) + windows[0][0]
        begin, step = end, min(step * 2, MAX_LOOK)
    return None


def closed_lines(problem: Problem) -> dict[int, str]:
    """Lines (by index) whose calendar has no working time within the planner's reach, with
    the calendar's name: they take no job, and the plan says so."""
    closed: dict[int, str] = {}
    for i, line in enumerate(problem.lines):
        cal = problem.calendars.get(line.calendar) if line.calendar is not None else None
        if (
            cal is not None
            and _zone_ok(cal)
            and weekly_hours(cal) > 0
            and first_working_h(cal, problem.start) is None
        ):
            closed[i] = cal.id
    return closed


def no_working_time_reason(calendar: str) -> str:
    """Why a closed line takes no job, in words."""
    years = MAX_HORIZON_H / (365.25 * 24)
    return f"calendar {calendar!r} has no working time within {years:.0f} years of start"


def layout_hours(problem: Problem, extra: Job | None = None) -> dict[str, float]:
    """Per calendar, how many hours from start its working windows must reach (see
    ``_layout_hours``); with ``extra``, for the problem with that job added after the rest.
    The last problem's sums are kept, as the check and the solver both ask for them (and a
    quote asks again with its order added)."""
    last = _LAST_LAYOUT
    if last and last[0] is problem:
        basis: _LayoutBasis = last[1]
        need: dict[str, float] = last[2]
    else:
        basis = _layout_basis(problem)
        need = _layout_hours(problem, basis)
        _LAST_LAYOUT[:] = [problem, basis, need]
    return need if extra is None else _layout_hours(problem, basis.plus(extra, problem.start))


# The last problem asked about, its layout sums and its layout hours (the check and the
# solver ask in turn).
_LAST_LAYOUT: list[Any] = []


@dataclass(frozen=True)
class _LayoutBasis:
    """What a problem's layout depends on: how late work may be held back, the quantity of
    each product, the number of jobs and the longest changeover."""

    delay_h: float
    qty: dict[str, float]
    n_jobs: int
    longest_h: float

    def plus(self, job: Job, start: datetime) -> _LayoutBasis:
        """The basis with ``job`` added after the others (sums in the same order)."""
        qty = dict(self.qty)
        qty[job.product] = qty.get(job.product, 0.0) + job.qty
        held = [_hours(t, start) for t in (job.release, job.planned_start, job.pinned_start) if t]
        return _LayoutBasis(max([self.delay_h, *held]), qty, self.n_jobs + 1, self.longest_h)


def _layout_basis(problem: Problem) -> _LayoutBasis:
    qty: dict[str, float] = {}
    for job in problem.jobs:
        qty[job.product] = qty.get(job.product, 0.0) + job.qty
    return _LayoutBasis(_delay_h(problem), qty, len(problem.jobs), _longest_changeover_h(problem))


def _layout_hours(problem: Problem, basis: _LayoutBasis) -> dict[str, float]:
    """Per calendar, how many hours from start its working windows must reach.

    Enough for the latest moment work may be held back to plus all the work its lines
    could get (every job they can make, one after another at their slowest rate, each
    with the longest changeover), at the calendar's weekly pace, plus a margin. Beyond
    ``MAX_HORIZON_H`` the calendar cannot be laid out (``calendar_issues`` says so).
    """
    delay = basis.delay_h
    margin = HORIZON_MARGIN.total_seconds() / 3600
    qty = basis.qty
    longest = basis.longest_h * basis.n_jobs
    slowest: dict[str, dict[str, float]] = {}  # calendar -> product -> lowest rate
    for line in problem.lines:
        if line.calendar is None:
            continue
        rates = slowest.setdefault(line.calendar, {})
        for product, rate in line.rates.items():
            rates[product] = min(rate, rates.get(product, rate))
    need: dict[str, float] = {}
    for name, rates in slowest.items():
        cal = problem.calendars.get(name)
        if cal is None or not _zone_ok(cal):
            continue
        weekly = weekly_hours(cal)
        if weekly <= 0:
            continue
        work = sum(q / rates[p] for p, q in qty.items() if p in rates) + longest
        need[name] = delay + work * max(1.0, WEEK_H / weekly) + margin
    return need


def layout_until(problem: Problem, extra: Job | None = None) -> dict[str, datetime]:
    """Per calendar, the moment its working windows are laid out to (``layout_hours``
    rounded up to whole steps of ``LAYOUT_STEP_H``, never past the planner's reach); with
    ``extra``, for the problem with that job added after the rest.

    Rounded so that replans after small changes ask for the same windows (cached).
    """
    return {
        name: problem.start
        + timedelta(hours=min(math.ceil(hours / LAYOUT_STEP_H) * LAYOUT_STEP_H, MAX_HORIZON_H))
        for name, hours in layout_hours(problem, extra).items()
    }


def _zone_ok(cal: Calendar) -> bool:
    try:
        ZoneInfo(cal.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False  # named by the field checks
    return True


def calendar_issues(problem: Problem) -> list[Issue]:
    """Calendars the planner cannot lay out, and work it cannot place, by field.

    A week with no working time; work needing more calendar than the planner's reach
    (``MAX_HORIZON_H``) at a calendar's pace; a job only lines without any working time
    could make, or pinned to such a line. (A line without working time is no issue by
    itself: it takes no job, and the plan says why.)
    """
    issues: list[Issue] = []
    for name, cal in problem.calendars.items():
        if _zone_ok(cal) and weekly_hours(cal) <= 0:
            issues.append(Issue(f"calendars{_key(name)}.shifts", "leave no working time in a week"))
    if issues:
        return issues
    closed = closed_lines(problem)
    closed_calendars = set(closed.values())
    years = MAX_HORIZON_H / (365.25 * 24)
    for name, need_h in layout_hours(problem).items():
        if need_h > MAX_HORIZON_H and name not in closed_calendars:
            weekly = weekly_hours(problem.calendars[name])
            issues.append(
                Issue(
                    f"calendars{_key(name)}",
                    f"at {weekly:.4g} working hours a week the work its lines can make needs "
                    f"about {need_h / (365.25 * 24):.0f} years of calendar, past the "
                    f"{years:.0f} years the planner plans ahead",
                )
            )
    if closed:
        issues += _work_for_closed_lines(problem, closed)
    return issues


def _work_for_closed_lines(problem: Problem, closed: dict[int, str]) -> list[Issue]:
    """Jobs that only lines without working time could make, or pinned to one."""
    issues = []
    shut = {problem.lines[i].id: cal for i, cal in closed.items()}
    open_products = {p for i, ln in enumerate(problem.lines) if i not in closed for p in ln.rates}
    for i, job in enumerate(problem.jobs):
        if job.pinned_line in shut:
            issues.append(
                Issue(
                    f"jobs[{i}].pinned_line",
                    f"line {job.pinned_line!r}: {no_working_time_reason(shut[job.pinned_line])}",
                )
            )
        elif job.pinned_line is None and job.product not in open_products:
            makers = [ln.id for ln in problem.lines if job.product in ln.rates]
            if makers:  # else "no line can make" is said already
                issues.append(
                    Issue(
                        f"jobs[{i}].product",
                        f"only lines without working time can make {job.product!r} ("
                        + "; ".join(f"{ln}: {no_working_time_reason(shut[ln])}" for ln in makers)
                        + ")",
                    )
                )
    return issues


def _delay_h(problem: Problem) -> float:
    """Hours from start to the latest moment work may be held back to."""
    start = problem.start
    moments = [start]
    for job in problem.jobs:
        moments += [t for t in (job.release, job.planned_start, job.pinned_start) if t]
    moments += [ln.down_until for ln in problem.lines if ln.down_until]
    if problem.materials is not None:
        moments += [po.arrives for po in problem.materials.purchase_orders]
        lead = max((m.lead_time_days for m in problem.materials.items.values()), default=0.0)
        moments.append(start + timedelta(days=lead))
    return max(0.0, _hours(max(moments), start))


def _longest_changeover_h(problem: Problem) -> float:
    return max(
        (
            h
            for table in problem.changeovers.values()
            for row in table.values()
            for h in row.values()
        ),
        default=0.0,
    )


@lru_cache(maxsize=64)
def _split(windows: tuple[Window, ...]) -> tuple[list[float], list[float]]:
    """Opens and closes of windows (shared, never changed: ``Timeline`` only reads them)."""
    return [a for a, _ in windows], [b for _, b in windows]


class Timeline:
    """Working windows of one line; no windows means always working, unless ``closed``
    (a line without working time, which takes no work: every finish is infinitely late).

    After the last window the line is taken to work all the time (windows are laid out
    past anything the plan could need, ``layout_hours``, so this only guards against
    running off the map).
    """

    def __init__(self, windows: Sequence[Window] = (), *, closed: bool = False) -> None:
        if isinstance(windows, tuple):
            self.opens, self.closes = _split(windows)
        else:
            self.opens, self.closes = [a for a, _ in windows], [b for _, b in windows]
        self.closed = closed

    def next_working(self, t: float) -> float:
        """The first working instant at or after ``t``."""
        if self.closed:
            return math.inf
        k = bisect_right(self.closes, t)
        if k == len(self.closes):
            return max(t, self.closes[-1]) if self.closes else t
        return max(t, self.opens[k])

    def finish(self, t: float, work_h: float) -> tuple[float, float]:
        """Start and end of ``work_h`` working hours begun no earlier than ``t``."""
        if self.closed:
            return math.inf, math.inf
        start = self.next_working(t)
        k = bisect_right(self.closes, start)
        now, left = start, work_h
        while k < len(self.closes):
            now = max(now, self.opens[k])
            room = self.closes[k] - now
            if left <= room:
                return start, now + left
            left -= room
            k += 1
        if self.closes:
            now = max(now, self.closes[-1])
        return start, now + left

    def working_between(self, a: float, b: float) -> float:
        """Working hours inside ``[a, b)``."""
        if self.closed:
            return 0.0
        if not self.closes:
            return max(0.0, b - a)
        total = 0.0
        k = bisect_right(self.closes, a)
        while k < len(self.closes) and self.opens[k] < b:
            total += max(0.0, min(b, self.closes[k]) - max(a, self.opens[k]))
            k += 1
        if b > self.closes[-1]:
            total += b - max(a, self.closes[-1])
        return total

    def is_working(self, t: float) -> bool:
        """Whether the line works at instant ``t``."""
        if self.closed:
            return False
        if not self.closes:
            return True
        k = bisect_right(self.closes, t)
        return k == len(self.closes) or self.opens[k] <= t
