"""Working calendars turned into working windows, in hours from the plan's start.

A calendar is weekly shifts in a local time zone, minus breaks, holidays (whole local
days) and one-off closures. The planner needs it as sorted, disjoint ``[open, close)``
pairs of float hours; ``Timeline`` answers "when does this much work, started at t,
finish?" for the Python side (pinned work, quotes, explanations) the same way the
optimisation kernel does. ``calendar_issues`` refuses the calendars the planner cannot lay
out (no working time in a week, closed past the planner's reach, work needing more years
of calendar than the solver lays out).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from loopline.models.planning.problem import (
    MAX_HORIZON_H,
    Calendar,
    Issue,
    Problem,
    WeeklyWindow,
    _key,
)

Window = tuple[float, float]
WEEK_H = 168.0
# Past ``until`` the windows go on this far beyond the missing working time, so that a
# weekly shift falls inside the extension.
EXTENSION_SLACK = timedelta(days=8)


@lru_cache(maxsize=256)
def working_windows(calendar: Calendar, origin: datetime, until: datetime) -> tuple[Window, ...]:
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


def calendar_issues(problem: Problem) -> list[Issue]:
    """Calendars the planner cannot lay out, by field.

    A week with no working time; a closure that keeps the line shut past the planner's
    reach (``MAX_HORIZON_H``); and work that needs more years of calendar than the
    solver lays out (``solver.MAX_CALENDAR_SPAN``), past which a line would silently
    work round the clock. The work is estimated the way the solver sizes its horizon.
    """
    from loopline.models.planning.solver import (  # solver imports us
        HORIZON_MARGIN,
        MAX_CALENDAR_SPAN,
    )

    issues: list[Issue] = []
    weekly: dict[str, float] = {}
    reach = problem.start + timedelta(hours=MAX_HORIZON_H)
    for name, cal in problem.calendars.items():
        at = f"calendars{_key(name)}"
        try:
            ZoneInfo(cal.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            continue  # named by the field checks
        weekly[name] = hours = weekly_hours(cal)
        if hours <= 0:
            issues.append(Issue(f"{at}.shifts", "leave no working time in a week"))
        for k, closure in enumerate(cal.closures):
            if closure.start < reach < closure.end:
                issues.append(
                    Issue(
                        f"{at}.closures[{k}].end",
                        f"leaves the line no working time within {MAX_HORIZON_H:.0f} h of "
                        "start (as far as the planner plans): end it sooner, or leave the "
                        "line out of the problem",
                    )
                )
    if issues or not any(ln.calendar in weekly for ln in problem.lines):
        return issues
    slowest_name = min(weekly, key=lambda n: weekly[n])
    pace = max(1.0, WEEK_H / weekly[slowest_name])
    need_h = _delay_h(problem) + _work_h(problem) * pace + HORIZON_MARGIN.total_seconds() / 3600
    span_h = MAX_CALENDAR_SPAN.total_seconds() / 3600
    if need_h > span_h:
        years = need_h / (365.25 * 24)
        limit = span_h / (365.25 * 24)
        if pace > 1.0:
            issues.append(
                Issue(
                    f"calendars{_key(slowest_name)}",
                    f"at {weekly[slowest_name]:.4g} working hours a week the work needs about "
                    f"{years:.0f} years of calendar; calendars are laid out {limit:.0f} "
                    "years ahead at most",
                )
            )
        else:
            issues.append(
                Issue(
                    "jobs",
                    f"need about {years:.0f} years of calendar; calendars are laid out "
                    f"{limit:.0f} years ahead at most",
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
    return max(0.0, max(_hours(m, start) for m in moments))


def _work_h(problem: Problem) -> float:
    """Every job one after another on its slowest line, with the longest changeover."""
    slowest: dict[str, float] = {}
    for ln in problem.lines:
        for product, rate in ln.rates.items():
            slowest[product] = min(rate, slowest.get(product, rate))
    work = sum(job.qty / slowest[job.product] for job in problem.jobs if job.product in slowest)
    longest = max(
        (
            h
            for table in problem.changeovers.values()
            for row in table.values()
            for h in row.values()
        ),
        default=0.0,
    )
    return work + longest * len(problem.jobs)


class Timeline:
    """Working windows of one line; no windows means always working.

    After the last window the line is taken to work all the time (windows are generated
    far past any plan's end, so this only guards against running off the map).
    """

    def __init__(self, windows: Sequence[Window] = ()) -> None:
        self.opens = [a for a, _ in windows]
        self.closes = [b for _, b in windows]

    def next_working(self, t: float) -> float:
        """The first working instant at or after ``t``."""
        k = bisect_right(self.closes, t)
        if k == len(self.closes):
            return max(t, self.closes[-1]) if self.closes else t
        return max(t, self.opens[k])

    def finish(self, t: float, work_h: float) -> tuple[float, float]:
        """Start and end of ``work_h`` working hours begun no earlier than ``t``."""
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
        if not self.closes:
            return True
        k = bisect_right(self.closes, t)
        return k == len(self.closes) or self.opens[k] <= t
