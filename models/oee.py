"""OEE per line and shift: availability x performance x quality, after the six big losses.

- Planned time: the shift (from the line's calendar; a calendar without shifts, or no
  calendar, uses the reason tree's daily shifts) minus its breaks, holidays and closures,
  up to now for the running shift.
- Availability = run time / planned time, where run time = planned time minus the stops
  counted as breakdown, setup or unexplained (small stops stay in run time).
- Performance = ideal time / run time; ideal time is each unit made over the line's rate
  for its product in the factory file (``rates``: the ideal rate), so small stops and slow
  cycles show here.
- Quality = good / (good + scrap); scrap is a startup reject when the progress message
  carried a startup-reject code, else a production reject.

Counts reach Redis as the ingest applies progress (per line and minute, ``ll:oee:...``),
so a shift adds up exactly the minutes it spans; stops are rows in SQL
(``models/downtime.py``). The worker stores each shift's figures in SQL (``ShiftOee``) and
puts the running shift's on the live line (field ``oee``), where the wall tile shows them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, NamedTuple
from zoneinfo import ZoneInfo

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from loopline.models.downtime import (
    AVAILABILITY_LOSSES,
    UNEXPLAINED,
    ReasonTree,
    first_report,
    load_tree,
    loss_of,
    stops_between,
)
from loopline.models.live import LiveState, Update
from loopline.models.oee_records import ShiftOee
from loopline.models.planning.calendar import working_spans
from loopline.models.planning.problem import Calendar, WeeklyWindow, parse_calendar
from loopline.models.quarantine import Findings
from loopline.models.records import Line

Span = tuple[datetime, datetime]
# Minute buckets of counts live this long in Redis (SQL keeps every shift's totals).
COUNTS_TTL_S: Final = 8 * 24 * 3600
# A shift's figures are final this long after it ended (late messages still count before).
FINAL_AFTER_S: Final = 300.0
OEE_STEP: Final = "oee"
_ALL_DAYS: Final = frozenset(range(7))


# -- counts (Redis) ------------------------------------------------------------------
@dataclass(frozen=True)
class Counts:
    """Units made in some span, and the time they would take at the ideal rate."""

    good: int = 0
    scrap: int = 0
    startup_scrap: int = 0
    ideal_s: float = 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.good + other.good,
            self.scrap + other.scrap,
            self.startup_scrap + other.startup_scrap,
            self.ideal_s + other.ideal_s,
        )


class CountDelta(NamedTuple):
    """What one progress report added on a line: units, their ideal time, and the reason
    code the scrap came with (None: no code, a production reject). A tuple: one is made
    per message on the ingest's hot path."""

    line: str
    at: datetime
    good: int
    scrap: int
    ideal_s: float
    scrap_code: str | None = None


def counts_key(line_id: str, hour: datetime) -> str:
    """The Redis hash of a line's counts in one UTC hour.

    Fields per minute ``MM``: ``MM:g`` good, ``MM:s`` scrap, ``MM:i`` ideal seconds,
    ``MM:r:CODE`` scrap that came with a reason code (part of ``MM:s``).
    """
    return f"ll:oee:{line_id}:{hour.astimezone(UTC):%Y%m%d%H}"


def add_counts(pipe: redis.client.Pipeline, deltas: Iterable[CountDelta]) -> None:
    """Queue a batch's increments on ``pipe`` (summed per line, minute and code first:
    a burst of messages costs a few commands per line, not a few per message)."""
    sums: dict[tuple[str, int, str | None], list[float]] = {}
    for d in deltas:
        k = (d.line, int(d.at.timestamp()) // 60, d.scrap_code if d.scrap else None)
        acc = sums.get(k)
        if acc is None:
            sums[k] = [d.good, d.scrap, d.ideal_s]
        else:
            acc[0] += d.good
            acc[1] += d.scrap
            acc[2] += d.ideal_s
    ints: dict[tuple[str, str], int] = {}
    floats: dict[tuple[str, str], float] = {}
    for (line_id, minute, code), (good, scrap, ideal) in sums.items():
        at = datetime.fromtimestamp(minute * 60, UTC)
        name = counts_key(line_id, at)
        mm = f"{at.minute:02d}"
        for fld, value in ((f"{mm}:g", good), (f"{mm}:s", scrap)):
            if value:
                ints[(name, fld)] = ints.get((name, fld), 0) + int(value)
        if scrap and code:
            fld = f"{mm}:r:{code}"
            ints[(name, fld)] = ints.get((name, fld), 0) + int(scrap)
        if ideal:
            floats[(name, f"{mm}:i")] = floats.get((name, f"{mm}:i"), 0.0) + ideal
    for (name, fld), n in ints.items():
        pipe.hincrby(name, fld, n)
    for (name, fld), x in floats.items():
        pipe.hincrbyfloat(name, fld, x)
    for name in {n for n, _ in ints} | {n for n, _ in floats}:
        pipe.expire(name, COUNTS_TTL_S)


def read_counts(
    client: redis.Redis,
    line_id: str,
    start: datetime,
    end: datetime,
    *,
    startup_codes: frozenset[str] = frozenset(),
) -> Counts:
    """A line's counts in the minutes from ``start`` up to ``end`` (one round trip);
    scrap with one of ``startup_codes`` is startup reject."""
    hours = []
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour < end:
        hours.append(hour)
        hour += timedelta(hours=1)
    pipe = client.pipeline(transaction=False)
    for h in hours:
        pipe.hgetall(counts_key(line_id, h))
    good = scrap = startup = 0
    ideal = 0.0
    for h, raw in zip(hours, pipe.execute(), strict=True):
        for fld, value in raw.items():
            mm, kind, *code = str(fld).split(":", 2)
            minute = h + timedelta(minutes=int(mm))
            if not start <= minute < end:
                continue
            if kind == "g":
                good += int(value)
            elif kind == "s":
                scrap += int(value)
            elif kind == "i":
                ideal += float(value)
            elif kind == "r" and code and code[0] in startup_codes:
                startup += int(value)
    return Counts(good, scrap, startup, ideal)


# -- shifts --------------------------------------------------------------------------
@dataclass(frozen=True)
class Shift:
    """One occurrence of a shift on a line, and its planned (working) spans."""

    line: str
    name: str
    start: datetime
    end: datetime
    planned: tuple[Span, ...]


def line_calendar(line: Line, tree: ReasonTree) -> Calendar:
    """The calendar OEE counts planned time by: the line's, with the tree's daily shifts
    when it names none."""
    cal = parse_calendar(line.id, line.calendar) if line.calendar else Calendar(id=line.id)
    if not cal.shifts:
        daily = tuple(WeeklyWindow(_ALL_DAYS, s.start, s.end) for s in tree.shifts)
        # No daily shifts either: one 24-hour shift a day, from midnight.
        cal = dataclasses.replace(cal, shifts=daily or (WeeklyWindow(_ALL_DAYS, time(0), time(0)),))
    return cal


def _shift_name(w: WeeklyWindow, tree: ReasonTree) -> str:
    for s in tree.shifts:
        if s.start == w.start and s.end == w.end:
            return s.name
    return f"{w.start:%H:%M}-{w.end:%H:%M}"


def _occurrences(
    cal: Calendar, tree: ReasonTree, start: datetime, end: datetime
) -> list[tuple[str, datetime, datetime]]:
    """(name, start, end) of each shift overlapping ``[start, end)``, in order."""
    zone = ZoneInfo(cal.timezone)
    day: date = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date()
    out = []
    while day <= last:
        for w in cal.shifts:
            if day.weekday() not in w.days:
                continue
            begin = datetime.combine(day, w.start, tzinfo=zone).astimezone(UTC)
            end_day = day if w.end > w.start else day + timedelta(days=1)
            finish = datetime.combine(end_day, w.end, tzinfo=zone).astimezone(UTC)
            if finish > start and begin < end:
                out.append((_shift_name(w, tree), begin, finish))
        day += timedelta(days=1)
    return sorted(out, key=lambda o: o[1])


def _shift(line_id: str, cal: Calendar, occurrence: tuple[str, datetime, datetime]) -> Shift:
    name, begin, finish = occurrence
    return Shift(line_id, name, begin, finish, tuple(working_spans(cal, begin, finish)))


def shifts_between(
    line_id: str, cal: Calendar, tree: ReasonTree, start: datetime, end: datetime
) -> list[Shift]:
    """The shifts of a line overlapping ``[start, end)``, in order."""
    return [_shift(line_id, cal, o) for o in _occurrences(cal, tree, start, end)]


def shift_at(line_id: str, cal: Calendar, tree: ReasonTree, at: datetime) -> Shift | None:
    """The shift running at ``at``, else the last one that ended before it (within a week)."""
    found = _occurrences(cal, tree, at - timedelta(days=7), at + timedelta(seconds=1))
    current = [o for o in found if o[1] <= at < o[2]]
    if current:
        return _shift(line_id, cal, current[0])
    ended = [o for o in found if o[2] <= at]
    return _shift(line_id, cal, ended[-1]) if ended else None


# -- the arithmetic ------------------------------------------------------------------
@dataclass(frozen=True)
class StopSpan:
    """A stop, as the arithmetic needs it: when, and the loss it counts against."""

    start: datetime
    end: datetime
    loss: str  # one of the stop losses, or "unexplained"


@dataclass(frozen=True)
class OeeFigures:
    """A span's OEE and what it is made of (seconds, units, fractions 0-1)."""

    planned_s: float
    run_s: float
    ideal_s: float
    good: int
    scrap: int
    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    losses: dict[str, float]


def _overlap(spans: Sequence[Span], a: datetime, b: datetime) -> float:
    return sum(max(0.0, (min(b, y) - max(a, x)).total_seconds()) for x, y in spans)


def compute_oee(
    planned: Sequence[Span], stops: Sequence[StopSpan], counts: Counts, *, until: datetime
) -> OeeFigures:
    """OEE over the planned spans up to ``until`` (only stop time inside planned time counts)."""
    spans = [(a, min(b, until)) for a, b in planned if a < until]
    planned_s = sum((b - a).total_seconds() for a, b in spans)
    lost = {"breakdown": 0.0, "setup": 0.0, "small_stop": 0.0, UNEXPLAINED: 0.0}
    for stop in stops:
        lost[stop.loss] = lost.get(stop.loss, 0.0) + _overlap(spans, stop.start, stop.end)
    down_s = sum(v for k, v in lost.items() if k in AVAILABILITY_LOSSES or k == UNEXPLAINED)
    run_s = max(0.0, planned_s - down_s)
    total = counts.good + counts.scrap
    availability = run_s / planned_s if planned_s > 0 else None
    performance = counts.ideal_s / run_s if run_s > 0 else None
    quality = counts.good / total if total > 0 else None
    factors = (availability, performance, quality)
    if any(f == 0 for f in factors if f is not None):
        oee: float | None = 0.0
    elif all(f is not None for f in factors):
        oee = float(availability * performance * quality)  # type: ignore[operator]
    else:
        oee = None
    losses = {
        "breakdown_s": lost["breakdown"],
        "setup_s": lost["setup"],
        "unexplained_s": lost[UNEXPLAINED],
        "small_stop_s": lost["small_stop"],
        # Run time neither at the ideal rate nor in a small stop: the line ran slow.
        "slow_cycle_s": max(0.0, run_s - counts.ideal_s - lost["small_stop"]),
        "startup_reject": float(counts.startup_scrap),
        "production_reject": float(counts.scrap - counts.startup_scrap),
    }
    return OeeFigures(
        planned_s=planned_s,
        run_s=run_s,
        ideal_s=counts.ideal_s,
        good=counts.good,
        scrap=counts.scrap,
        availability=_r(availability),
        performance=_r(performance),
        quality=_r(quality),
        oee=_r(oee),
        losses={k: round(v, 3) for k, v in losses.items()},
    )


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# -- per line and shift --------------------------------------------------------------
def stop_spans(
    session: Session, tree: ReasonTree, line_id: str, start: datetime, end: datetime
) -> list[StopSpan]:
    """A line's stops in ``[start, end)`` with the loss each counts against."""
    out = []
    for stop in stops_between(session, line_id, start, end):
        loss, _ = loss_of(stop, tree, end=end)
        out.append(StopSpan(stop.started_at, stop.ended_at or end, loss))
    return out


def shift_figures(
    session: Session, client: redis.Redis, tree: ReasonTree, shift: Shift, *, now: datetime
) -> OeeFigures:
    """A shift's figures up to ``now`` (its end, once over); planned time starts when the
    line first reported, if that was during the shift."""
    until = min(now, shift.end)
    first = first_report(session, shift.line)
    planned = shift.planned
    if first is not None and first > shift.start:
        planned = tuple((max(a, first), b) for a, b in planned if b > first)
    stops = stop_spans(session, tree, shift.line, shift.start, until)
    startup = frozenset(r.code for r in tree.reasons if r.loss == "startup_reject")
    counts = read_counts(client, shift.line, shift.start, until, startup_codes=startup)
    return compute_oee(planned, stops, counts, until=until)


def store_shift(session: Session, shift: Shift, figures: OeeFigures, *, now: datetime) -> ShiftOee:
    """Write a shift's figures (insert or update its row)."""
    row = session.get(ShiftOee, (shift.line, shift.start))
    if row is None:
        row = ShiftOee(line_id=shift.line, shift_start=shift.start)
        session.add(row)
    return _fill(row, shift, figures, now=now)


def shift_row(shift: Shift, figures: OeeFigures, *, now: datetime) -> ShiftOee:
    """A new row of a shift's figures, not yet added (a backfill adds many at once)."""
    return _fill(ShiftOee(line_id=shift.line, shift_start=shift.start), shift, figures, now=now)


def _fill(row: ShiftOee, shift: Shift, figures: OeeFigures, *, now: datetime) -> ShiftOee:
    row.shift_end = shift.end
    row.shift_name = shift.name
    for name in (
        "planned_s",
        "run_s",
        "ideal_s",
        "good",
        "scrap",
        "availability",
        "performance",
        "quality",
        "oee",
        "losses",
    ):
        setattr(row, name, getattr(figures, name))
    row.final = (now - shift.end).total_seconds() >= FINAL_AFTER_S
    row.computed_at = now
    return row


def shift_view(row: ShiftOee) -> dict[str, Any]:
    """A stored shift as the API answers it."""
    return {
        "line": row.line_id,
        "shift": row.shift_name,
        "shift_start": _iso(row.shift_start),
        "shift_end": _iso(row.shift_end),
        "final": row.final,
        "planned_s": round(row.planned_s, 3),
        "run_s": round(row.run_s, 3),
        "ideal_s": round(row.ideal_s, 3),
        "good": row.good,
        "scrap": row.scrap,
        "availability": row.availability,
        "performance": row.performance,
        "quality": row.quality,
        "oee": row.oee,
        "losses": dict(row.losses),
        "computed_at": _iso(row.computed_at),
    }


def live_fields(row: ShiftOee) -> dict[str, Any]:
    """What the live line carries of its shift's OEE (the wall tile shows it)."""
    return {
        "shift": row.shift_name,
        "shift_start": _iso(row.shift_start),
        "availability": row.availability,
        "performance": row.performance,
        "quality": row.quality,
        "oee": row.oee,
    }


def refresh_line(
    session: Session, live: LiveState, tree: ReasonTree, line: Line, *, now: datetime
) -> ShiftOee | None:
    """Compute and store the line's shift at ``now`` (and finish the one before); the
    row of the shift shown on the wall, or None when the line has had no shift yet."""
    cal = line_calendar(line, tree)
    shown = shift_at(line.id, cal, tree, now)
    if shown is None:
        return None
    todo = [shown]
    if shown.start <= now < shown.end:
        before = shift_at(line.id, cal, tree, shown.start - timedelta(microseconds=1))
        if before is not None and before.end <= shown.start:
            todo.insert(0, before)
    row = None
    for shift in todo:
        stored = session.get(ShiftOee, (shift.line, shift.start))
        if stored is not None and stored.final:
            row = stored
            continue
        figures = shift_figures(session, live.redis, tree, shift, now=now)
        if stored is not None and _restore_counts(live, tree, shift, stored, figures):
            figures = shift_figures(session, live.redis, tree, shift, now=now)
        row = store_shift(session, shift, figures, now=now)
    return row


def _restore_counts(
    live: LiveState, tree: ReasonTree, shift: Shift, stored: ShiftOee, figures: OeeFigures
) -> bool:
    """Put back counts Redis lost (it restarted empty): a shift's stored units only grow,
    so fewer counted now than stored means the difference went missing. It is booked in
    the shift's first minute; whether it happened.
    """
    good = stored.good - figures.good
    scrap = stored.scrap - figures.scrap
    if good <= 0 and scrap <= 0:
        return False
    startup = int(stored.losses.get("startup_reject", 0)) - int(
        figures.losses.get("startup_reject", 0)
    )
    code = next((r.code for r in tree.reasons if r.loss == "startup_reject"), None)
    ideal = max(0.0, stored.ideal_s - figures.ideal_s)
    deltas = [
        CountDelta(shift.line, shift.start, max(good, 0), max(scrap - max(startup, 0), 0), ideal)
    ]
    if startup > 0 and code is not None:
        deltas.append(CountDelta(shift.line, shift.start, 0, startup, 0.0, code))
    pipe = live.redis.pipeline(transaction=False)
    add_counts(pipe, deltas)
    pipe.execute()
    return True


def refresh_oee(
    session: Session,
    live: LiveState,
    *,
    now: datetime,
    findings: Findings | None = None,
    isolate: bool = False,
) -> int:
    """The worker's step: every line's shift figures into SQL and onto the live line; how
    many lines have figures. With ``isolate`` a line whose data fails is left out alone
    (named in ``findings``)."""
    findings = findings if findings is not None else Findings()
    tree = load_tree(session)
    updates = []
    lines = list(session.scalars(select(Line).order_by(Line.id)))
    known = live.get_many("line", [ln.id for ln in lines])
    for line, lv in zip(lines, known, strict=True):
        if not (lv or {}).get("reported_state"):
            continue  # never reported: no figures rather than an OEE of 0 for a silent line
        with findings.unit(session, OEE_STEP, "line", line.id, isolate=isolate):
            row = refresh_line(session, live, tree, line, now=now)
            session.flush()
            if row is not None:
                updates.append(Update("line", line.id, {"oee": live_fields(row)}))
    live.apply(updates)
    return len(updates)


def current_shift(
    session: Session, live: LiveState, line_id: str, *, at: datetime, now: datetime
) -> dict[str, Any] | None:
    """The figures of the shift at ``at`` (running or last ended), computed afresh unless
    stored as final; None for an unknown line or one that had no shift."""
    line = session.get(Line, line_id)
    if line is None:
        return None
    tree = load_tree(session)
    shift = shift_at(line_id, line_calendar(line, tree), tree, at)
    if shift is None:
        return None
    stored = session.get(ShiftOee, (line_id, shift.start))
    if stored is not None and stored.final:
        return shift_view(stored)
    figures = shift_figures(session, live.redis, tree, shift, now=now)
    # A read: the worker stores the figures; this row is never added to the session.
    row = ShiftOee(line_id=line_id, shift_start=shift.start)
    return shift_view(_fill(row, shift, figures, now=now))


def downtime_pareto(
    session: Session, line_id: str, *, start: datetime, end: datetime
) -> list[dict[str, Any]] | None:
    """A line's stop time in ``[start, end)`` per reason, largest first, with each reason's
    share and the cumulative share (the Pareto's line). Only stop time inside planned
    (shift) time counts, as in OEE; unexplained stops are one row (code None). None for an
    unknown line."""
    line = session.get(Line, line_id)
    if line is None:
        return None
    tree = load_tree(session)
    spans = [
        (max(a, start), min(b, end))
        for shift in shifts_between(line_id, line_calendar(line, tree), tree, start, end)
        for a, b in shift.planned
        if b > start and a < end
    ]
    totals: dict[str | None, list[float]] = {}
    for stop in stops_between(session, line_id, start, end):
        stop_end = min(stop.ended_at or end, end)
        seconds = _overlap(spans, stop.started_at, stop_end)
        if seconds <= 0:
            continue
        _, code = loss_of(stop, tree, end=stop_end)
        entry = totals.setdefault(code, [0.0, 0])
        entry[0] += seconds
        entry[1] += 1
    grand = sum(v[0] for v in totals.values())
    out = []
    cumulative = 0.0
    for code, (seconds, count) in sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0] or "")):
        reason = tree.get(code)
        cumulative += seconds
        out.append(
            {
                "code": code,
                "name": reason.name if reason else None,
                "loss": reason.loss if reason else UNEXPLAINED,
                "seconds": round(seconds, 3),
                "stops": int(count),
                "share": round(seconds / grand, 4),
                "cumulative": round(cumulative / grand, 4),
            }
        )
    return out


def iso_week(week: str | None, *, now: datetime, tz: str = "UTC") -> tuple[datetime, datetime]:
    """The span of an ISO week (``2026-W49``; None: the week of ``now``), Monday 00:00 in
    ``tz``; raises ValueError for a malformed week."""
    zone = ZoneInfo(tz)
    if week is None:
        today = now.astimezone(zone).date()
        monday = today - timedelta(days=today.weekday())
    else:
        try:
            monday = date.fromisocalendar(int(week[:4]), int(week.split("-W", 1)[1]), 1)
        except (ValueError, IndexError):
            raise ValueError(f"week '{week}' is not an ISO week like 2026-W49") from None
    begin = datetime.combine(monday, datetime.min.time(), tzinfo=zone)
    return begin.astimezone(UTC), (begin + timedelta(days=7)).astimezone(UTC)


# -- for other modules (KPIs) --------------------------------------------------------
@dataclass(frozen=True)
class PeriodOee:
    """A line's OEE over the stored shifts that started in a period."""

    line: str
    start: datetime
    end: datetime
    shifts: int
    figures: OeeFigures


def oee_for_line(
    session: Session, line_id: str, *, start: datetime, end: datetime
) -> PeriodOee | None:
    """A line's OEE over the shifts starting in ``[start, end)``, from the stored shift
    rows (time-weighted: the sums of planned, run and ideal time and of units, not an
    average of percentages); None when no shift of the line was stored there."""
    rows = list(
        session.scalars(
            select(ShiftOee).where(
                ShiftOee.line_id == line_id,
                ShiftOee.shift_start >= start,
                ShiftOee.shift_start < end,
            )
        )
    )
    figures = period_figures(rows)
    if figures is None:
        return None
    return PeriodOee(line_id, start, end, len(rows), figures)


def period_figures(rows: Sequence[ShiftOee]) -> OeeFigures | None:
    """The OEE of several stored shifts together (None for none): recomputed from their
    sums, one planned span of the total length with the stops as lost time."""
    if not rows:
        return None
    planned_s = sum(r.planned_s for r in rows)
    ideal_s = sum(r.ideal_s for r in rows)
    good = sum(r.good for r in rows)
    scrap = sum(r.scrap for r in rows)
    startup = sum(int(r.losses.get("startup_reject", 0)) for r in rows)
    base = datetime(2000, 1, 1, tzinfo=UTC)
    planned = [(base, base + timedelta(seconds=planned_s))]
    stops = []
    cursor = base
    for key, loss in (
        ("breakdown_s", "breakdown"),
        ("setup_s", "setup"),
        ("unexplained_s", UNEXPLAINED),
        ("small_stop_s", "small_stop"),
    ):
        seconds = sum(float(r.losses.get(key, 0.0)) for r in rows)
        stops.append(StopSpan(cursor, cursor + timedelta(seconds=seconds), loss))
        cursor += timedelta(seconds=seconds)
    return compute_oee(planned, stops, Counts(good, scrap, startup, ideal_s), until=planned[0][1])


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
