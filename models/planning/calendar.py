"""Working calendars turned into working windows, in hours from the plan's start.

A calendar is weekly shifts in a local time zone, minus breaks, holidays (whole local
days) and one-off closures. The planner needs it as sorted, disjoint ``[open, close)``
pairs of float hours; ``Timeline`` answers "when does this much work, started at t,
finish?" for the Python side (pinned work, quotes, explanations) the same way the
optimisation kernel does.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from models.planning.problem import Calendar, WeeklyWindow

Window = tuple[float, float]


@lru_cache(maxsize=256)
def working_windows(calendar: Calendar, origin: datetime, until: datetime) -> tuple[Window, ...]:
    """The calendar's working time between ``origin`` and ``until``, in hours from origin.

    Without shifts the line works around the clock, apart from breaks, holidays and
    closures. The last window ends at ``until``; callers pick ``until`` far enough out.
    Cached: every line on the same calendar, and every replan from the same start, share it.
    """
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
    """Working hours in a plain week (shifts minus breaks); 168 without shifts."""
    if not calendar.shifts:
        return 168.0
    origin = datetime(2001, 1, 1, tzinfo=ZoneInfo("UTC"))  # a Monday, no DST in UTC
    plain = Calendar(id=calendar.id, shifts=calendar.shifts, breaks=calendar.breaks)
    return sum(b - a for a, b in working_windows(plain, origin, origin + timedelta(days=7)))


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
