"""The planning problem: lines, jobs and a start time, as plain frozen dataclasses.

Optional parts extend the contract's format without breaking it: working ``calendars``
(weekly shifts, breaks, holidays, closures), sequence-dependent ``changeovers`` per line,
and ``materials`` (stock, bills of material, open purchase orders). ``parse_problem``
turns the JSON form (DESIGN.md, "Planner problem") into a ``Problem``; ``check_problem``
checks the rules that span fields. Both raise ``ProblemError`` naming every failing field
path, e.g. ``jobs[3].qty: must be > 0`` or ``materials.bom.P9: unknown product``; a file
with bad fields still gets its cross-field rules checked, so one run lists every issue.

Input is strict: numbers are JSON numbers (never ``"60"``), timestamps are RFC 3339 with a
zone (``Z`` or ``+08:00``), line ids are MQTT topic names (``[A-Za-z0-9_-]+``, DESIGN.md),
other ids and free text carry no control characters, and every size is bounded.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

# Longest plan the planner accepts, in hours (about 114 years): past this, timestamps
# leave datetime's range and the numbers are surely a unit mistake.
MAX_HORIZON_H = 1_000_000.0
# Only so many issues go into the message; ``ProblemError.errors`` keeps them all.
MAX_ISSUES_IN_MESSAGE = 20
# Names that become MQTT topic segments (sites, lines): DESIGN.md's MQTT section.
TOPIC_NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
MAX_TOPIC_NAME_CHARS = 64  # the width of the id columns they are stored in
MAX_ID_CHARS = 80  # job (work order) ids, SKUs, order ids: the widest id column
MAX_TEXT_CHARS = 200  # names and reasons
MAX_LIST_ITEMS = 10_000  # holidays, closures, shifts or breaks in one calendar
# Plausible magnitudes: past these a number is a unit mistake, and sums of them would
# leave float and datetime range.
MAX_QUANTITY = 1e12  # units, units per hour, material on hand
MAX_WEIGHT = 1e6
MAX_DAYS = MAX_HORIZON_H / 24
# A stored calendar's closure no longer than half the planner's reach, so that a replan
# within decades of it still sees working time after it.
MAX_CLOSURE_H = MAX_HORIZON_H / 2
# Timestamps the planner can add its horizon to without leaving datetime's range.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)

# RFC 3339 section 5.6 date-time; the offset is checked separately to name it.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOPIC_NAME = re.compile(TOPIC_NAME_PATTERN)
# C0 and C1 control characters (NUL included) and lone surrogates, which no database
# column, log line or MQTT payload should carry.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PRIORITIES = ("normal", "high", "rush")


@dataclass(frozen=True)
class WeeklyWindow:
    """A time of day on some weekdays (0 = Monday); an ``end`` not after ``start`` runs
    past midnight into the next day."""

    days: frozenset[int]
    start: time
    end: time


@dataclass(frozen=True)
class Closure:
    """A one-off stretch of time when a line does not work (maintenance, a shutdown)."""

    start: datetime
    end: datetime
    reason: str = ""


@dataclass(frozen=True)
class Calendar:
    """When a line works, in its local time zone: weekly shifts minus breaks, holidays and
    closures. No shifts means around the clock."""

    id: str
    timezone: str = "UTC"
    shifts: tuple[WeeklyWindow, ...] = ()
    breaks: tuple[WeeklyWindow, ...] = ()
    holidays: tuple[date, ...] = ()
    closures: tuple[Closure, ...] = ()


@dataclass(frozen=True)
class Line:
    """A production line and its rate (units per hour) for each product it can make."""

    id: str
    rates: Mapping[str, float]
    calendar: str | None = None  # a key of ``Problem.calendars``; None: always working
    down_until: datetime | None = None  # a line that is down takes no work before this
    down_reason: str = ""
    setup: str | None = None  # the product the line is set up for at the start


@dataclass(frozen=True)
class Material:
    """A material on hand, and how long its supplier takes to deliver more."""

    id: str
    on_hand: float = 0.0
    lead_time_days: float = 0.0
    unit: str = ""


@dataclass(frozen=True)
class PurchaseOrder:
    """Material already ordered, arriving at a known time."""

    id: str
    material: str
    qty: float
    arrives: datetime


@dataclass(frozen=True)
class Materials:
    """Stock, bills of material (product -> material -> quantity per unit) and open orders."""

    items: Mapping[str, Material]
    bom: Mapping[str, Mapping[str, float]]
    purchase_orders: tuple[PurchaseOrder, ...] = ()


@dataclass(frozen=True)
class Job:
    """A quantity of one product wanted by a due date; pinned work stays on its line."""

    id: str
    product: str
    qty: float
    due: datetime
    weight: float = 1.0
    release: datetime | None = None  # None: available from the problem's start
    pinned_line: str | None = None
    pinned_start: datetime | None = None  # pinned work starts no earlier than this
    priority: str = "normal"  # normal | high | rush: explains who took whose place
    deadline: datetime | None = None  # a promise the planner must keep once it is met
    planned_line: str | None = None  # where the previous plan had it (frozen window,
    planned_start: datetime | None = None  # and the start of an incremental replan)
    order: str | None = None  # the customer order this job belongs to, for explanations


@dataclass(frozen=True)
class Problem:
    """Everything the planner needs: when planning starts, the lines and the jobs, and
    optionally calendars, changeovers (line -> from product -> to product -> hours; line
    ``"*"`` is the default for every line) and materials."""

    start: datetime
    lines: tuple[Line, ...]
    jobs: tuple[Job, ...]
    calendars: Mapping[str, Calendar] = field(default_factory=dict)
    changeovers: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)
    materials: Materials | None = None
    frozen_h: float = 0.0  # planned work starting within this many hours stays put
    risk_buffer_h: float = 4.0  # a job ending closer than this to its due date is at risk

    def changeover_h(self, line: str, before: str, after: str) -> float:
        """Hours to change ``line`` over from product ``before`` to ``after``."""
        if before == after:
            return 0.0
        for key in (line, "*"):
            table = self.changeovers.get(key)
            if table is not None and before in table and after in table[before]:
                return table[before][after]
        return 0.0

    def release_of(self, job: Job) -> datetime:
        """When the job may start at the earliest (its release, never before the start)."""
        if job.release is None or job.release < self.start:
            return self.start
        return job.release


@dataclass(frozen=True)
class Issue:
    """One failing field: its path (``jobs[3].qty``) and what is wrong with it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ProblemError(ValueError):
    """A planning problem that cannot be solved as given; ``errors`` lists every issue."""

    def __init__(self, errors: list[Issue]) -> None:
        self.errors: tuple[Issue, ...] = tuple(errors)
        shown = "; ".join(str(e) for e in self.errors[:MAX_ISSUES_IN_MESSAGE])
        more = len(self.errors) - MAX_ISSUES_IN_MESSAGE
        super().__init__(shown + (f"; (+{more} more)" if more > 0 else ""))


# --- the JSON form, checked field by field with pydantic ---------------------------------


def _timestamp(value: Any, info: ValidationInfo) -> datetime:
    """An RFC 3339 timestamp with its zone as an aware UTC datetime.

    Stored data read with ``context={"naive_is_utc": True}`` may leave the zone out
    (files imported before the zone was required); then UTC is assumed.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and (match := _RFC3339.match(value)):
        text = value.upper().replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:  # e.g. month 13: the shape matched, the calendar did not
            raise PydanticCustomError(
                "timestamp", "not a valid RFC 3339 timestamp: {value}", {"value": _cut(value)}
            ) from None
        if match.group(2) is None and not (info.context or {}).get("naive_is_utc"):
            raise PydanticCustomError(
                "timestamp_zone",
                "needs a time zone (Z or +hh:mm), got {value}",
                {"value": _cut(value)},
            )
    else:
        raise PydanticCustomError(
            "timestamp", "must be an RFC 3339 timestamp, got {value}", {"value": _cut(value)}
        )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01 at +01:00 is before datetime's first instant
        parsed = datetime.min.replace(tzinfo=UTC)
    if not EARLIEST <= parsed < LATEST:
        raise PydanticCustomError(
            "timestamp_range",
            "must be between {earliest} and {latest}",
            {"earliest": EARLIEST.date().isoformat(), "latest": LATEST.date().isoformat()},
        )
    return parsed


def printable(value: str) -> str:
    """``value`` unless it holds control characters (NUL, newline, ESC, ...)."""
    if _CONTROL.search(value):
        raise PydanticCustomError(
            "control_characters", "must not contain control characters (NUL, newline, ...)"
        )
    return value


def _line_or_all(value: str) -> str:
    return value if value == "*" else _topic_name(value)


def _topic_name(value: str) -> str:
    printable(value)
    if len(value) > MAX_TOPIC_NAME_CHARS:  # dict keys have no Field constraints
        raise PydanticCustomError(
            "topic_name_too_long", "at most {n} characters", {"n": MAX_TOPIC_NAME_CHARS}
        )
    if not _TOPIC_NAME.match(value):
        raise PydanticCustomError(
            "topic_name",
            "must match [A-Za-z0-9_-]+ (an MQTT topic segment), got {value}",
            {"value": _cut(value)},
        )
    return value


Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]
# A name that becomes an MQTT topic segment: a site or a line.
TopicName = Annotated[
    str, Field(min_length=1, max_length=MAX_TOPIC_NAME_CHARS), AfterValidator(_topic_name)
]
# Any other id (job, product, order, material, calendar): printable and bounded.
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS), AfterValidator(printable)]
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS), AfterValidator(printable)]
# Numbers are JSON numbers: strict, so "60" and true are refused rather than converted.
Quantity = Annotated[float, Strict(), Field(gt=0, le=MAX_QUANTITY, allow_inf_nan=False)]
NonNegative = Annotated[float, Strict(), Field(ge=0, le=MAX_QUANTITY, allow_inf_nan=False)]
Hours = Annotated[float, Strict(), Field(ge=0, le=MAX_HORIZON_H, allow_inf_nan=False)]
Days = Annotated[float, Strict(), Field(ge=0, le=MAX_DAYS, allow_inf_nan=False)]
Weight = Annotated[float, Strict(), Field(ge=0, le=MAX_WEIGHT, allow_inf_nan=False)]


def _clock(value: Any) -> time:
    """``HH:MM`` (or ``HH:MM:SS``) as a time of day; ``24:00`` means the end of the day."""
    if isinstance(value, time):
        return value
    if isinstance(value, str) and re.match(r"^\d{2}:\d{2}(:\d{2})?$", value):
        if value in ("24:00", "24:00:00"):
            return time(0, 0)
        try:
            return time.fromisoformat(value)
        except ValueError:
            pass
    raise PydanticCustomError(
        "clock", "must be a time of day HH:MM, got {value}", {"value": _cut(value)}
    )


def _day(value: Any) -> int:
    if isinstance(value, str) and value.lower()[:3] in DAY_NAMES:
        return DAY_NAMES.index(value.lower()[:3])
    raise PydanticCustomError(
        "day",
        "must be one of mon, tue, wed, thu, fri, sat, sun, got {value}",
        {"value": _cut(value)},
    )


def _calendar_day(value: Any) -> date:
    """``YYYY-MM-DD`` as a date (a number is no date)."""
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}$", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise PydanticCustomError(
        "date", "must be a date YYYY-MM-DD, got {value}", {"value": _cut(value)}
    )


Clock = Annotated[time, BeforeValidator(_clock)]
Day = Annotated[int, BeforeValidator(_day)]


class _LineIn(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown keys are ignored, for later versions

    id: TopicName
    rates: dict[Id, Quantity]
    calendar: Id | None = None
    down_until: Timestamp | None = None
    down_reason: Text = ""
    setup: Id | None = None


class _JobIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: Id
    product: Id
    qty: Quantity
    due: Timestamp
    weight: Weight = 1.0
    release: Timestamp | None = None
    pinned_line: TopicName | None = None
    pinned_start: Timestamp | None = None
    priority: Literal["normal", "high", "rush"] = "normal"
    deadline: Timestamp | None = None
    planned_line: TopicName | None = None
    planned_start: Timestamp | None = None
    order: Id | None = None


class _WindowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: list[Day] = Field(min_length=1, max_length=7 * 4)
    start: Clock
    end: Clock


class _ClosureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: Timestamp
    end: Timestamp
    reason: Text = ""


class _CalendarIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] = "UTC"
    shifts: list[_WindowIn] = Field(default=[], max_length=MAX_LIST_ITEMS)
    breaks: list[_WindowIn] = Field(default=[], max_length=MAX_LIST_ITEMS)
    holidays: list[Annotated[date, BeforeValidator(_calendar_day)]] = Field(
        default=[], max_length=MAX_LIST_ITEMS
    )
    closures: list[_ClosureIn] = Field(default=[], max_length=MAX_LIST_ITEMS)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise PydanticCustomError(
                "timezone", "unknown time zone {value}", {"value": _cut(value)}
            ) from None
        return value


class _MaterialIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    on_hand: NonNegative = 0.0
    lead_time_days: Days = 0.0
    unit: Text = ""


class _PurchaseOrderIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: Id
    material: Id
    qty: Quantity
    arrives: Timestamp


class _MaterialsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: dict[Id, _MaterialIn] = {}
    bom: dict[Id, dict[Id, Quantity]] = {}
    purchase_orders: list[_PurchaseOrderIn] = []


class _ProblemIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    start: Timestamp
    lines: list[_LineIn]
    jobs: list[_JobIn]
    calendars: dict[Id, _CalendarIn] = {}
    # Line ids, or "*" for every line.
    changeovers: dict[Annotated[str, AfterValidator(_line_or_all)], dict[Id, dict[Id, Hours]]] = {}
    materials: _MaterialsIn | None = None
    frozen_h: Hours = 0.0
    risk_buffer_h: Hours = 4.0


def _window(w: _WindowIn) -> WeeklyWindow:
    return WeeklyWindow(days=frozenset(w.days), start=w.start, end=w.end)


def parse_problem(data: Any) -> Problem:
    """The ``Problem`` in a decoded JSON document; raises ``ProblemError`` when invalid.

    The error lists the bad fields and, for the rest of the document, the cross-field
    issues as well: the user fixes everything in one go.
    """
    try:
        raw = _ProblemIn.model_validate(data)
    except ValidationError as exc:
        issues = [_issue(e) for e in exc.errors()]
        raise ProblemError(issues + _issues_of_the_rest(data, exc.errors(), issues)) from None
    problem = _problem(raw)
    check_problem(problem)
    return problem


def _issues_of_the_rest(data: Any, errors: list[Any], known: list[Issue]) -> list[Issue]:
    """Cross-field issues of the document without its failing parts.

    A failing field of a job stands in with a harmless value; a failing purchase order (or
    a job without a valid product) is left out, its index mapped back; a failing line,
    calendar or material stays as a placeholder, so that what refers to it by name is not
    reported as unknown.
    """
    if not isinstance(data, dict):
        return []
    doc = dict(data)
    jobs_out: set[int] = set()
    pos_out: set[int] = set()
    for error in errors:
        loc = tuple(error["loc"])
        _salvage(doc, loc, jobs_out, pos_out)
    jobs_kept = [i for i in range(len(doc.get("jobs") or [])) if i not in jobs_out]
    if isinstance(doc.get("jobs"), list):
        doc["jobs"] = [doc["jobs"][i] for i in jobs_kept]
    pos_kept: list[int] = []
    materials = doc.get("materials")
    if isinstance(materials, dict) and isinstance(materials.get("purchase_orders"), list):
        orders = materials["purchase_orders"]
        pos_kept = [k for k in range(len(orders)) if k not in pos_out]
        doc["materials"] = {**materials, "purchase_orders": [orders[k] for k in pos_kept]}
    try:
        check_problem(_problem(_ProblemIn.model_validate(doc)))
    except ValidationError:  # a placeholder did not fit: the field errors must do
        return []
    except ProblemError as exc:
        seen = {issue.path for issue in known}
        remapped = (_remap(issue, jobs_kept, pos_kept) for issue in exc.errors)
        return [issue for issue in remapped if issue.path not in seen]
    return []


def _salvage(doc: dict[str, Any], loc: tuple[Any, ...], jobs: set[int], pos: set[int]) -> None:
    """Make the part of ``doc`` that failed at ``loc`` valid (in place, copying on write)."""
    head = loc[0] if loc else None
    if head == "start":
        doc["start"] = EARLIEST.isoformat()  # a start no valid timestamp lies before
    elif head in ("lines", "jobs") and (len(loc) == 1 or not isinstance(doc.get(head), list)):
        doc[head] = []
    elif head == "jobs":
        _salvage_job(doc, loc, jobs)
    elif head == "lines":
        lines = doc["lines"] = list(doc["lines"])
        lines[loc[1]] = _placeholder_line(lines[loc[1]], loc[1])
    elif head == "calendars" and len(loc) > 1 and isinstance(doc.get(head), dict):
        calendars = doc["calendars"] = dict(doc["calendars"])
        if len(loc) > 2 and loc[2] == "[key]":
            calendars.pop(loc[1], None)
        else:
            calendars[loc[1]] = {}  # around the clock: the name stays known
    elif head == "materials" and len(loc) > 2 and isinstance(doc.get(head), dict):
        materials = doc["materials"] = dict(doc["materials"])
        part = loc[1]
        if part == "purchase_orders":
            pos.add(loc[2])
        elif part == "items" and loc[3:4] != ("[key]",) and isinstance(materials["items"], dict):
            materials["items"] = {**materials["items"], loc[2]: {}}
        elif isinstance(materials.get(part), dict):
            materials[part] = {k: v for k, v in materials[part].items() if k != loc[2]}
    elif head == "changeovers" and len(loc) > 1 and isinstance(doc.get(head), dict):
        doc["changeovers"] = {k: v for k, v in doc["changeovers"].items() if k != loc[1]}
    elif head is not None:
        doc.pop(head, None)


# Stand-ins for a failing job's required fields: valid, and never the cause of an issue.
_JOB_STAND_INS = {"qty": 1e-9, "due": "8999-01-01T00:00:00Z"}


def _salvage_job(doc: dict[str, Any], loc: tuple[Any, ...], out: set[int]) -> None:
    """A failing job keeps its other fields (their references are still checked); one
    whose product fails, or that is no object, is left out."""
    jobs = doc["jobs"] = list(doc["jobs"])
    index = loc[1]
    job = jobs[index]
    if len(loc) < 3 or not isinstance(job, dict) or loc[2] == "product":
        out.add(index)
        return
    job = jobs[index] = dict(job)
    if loc[2] == "id":
        job["id"] = f"job-{index}"
    elif loc[2] in _JOB_STAND_INS:
        job[loc[2]] = _JOB_STAND_INS[loc[2]]
    else:
        job.pop(loc[2], None)


_TOPIC_NAME_CHECK = TypeAdapter(Annotated[str, AfterValidator(_topic_name)])
_ID_CHECK = TypeAdapter(Id)


def _placeholder_line(line: Any, index: int) -> dict[str, Any]:
    """A failing line reduced to its id and products, so references to it still resolve."""
    if not isinstance(line, dict):
        return {"id": f"line-{index}", "rates": {}}
    line_id = line.get("id")
    if not _valid(_TOPIC_NAME_CHECK, line_id):
        line_id = f"line-{index}"
    rates = line.get("rates")
    products = [k for k in rates if _valid(_ID_CHECK, k)] if isinstance(rates, dict) else []
    # The fastest rate there is: a placeholder never makes the work look longer.
    return {"id": line_id, "rates": dict.fromkeys(products, MAX_QUANTITY)}


def _valid(adapter: TypeAdapter[Any], value: Any) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def _remap(issue: Issue, jobs: list[int], orders: list[int]) -> Issue:
    """An issue of the reduced document with the original list indices."""
    for prefix, kept in (("jobs[", jobs), ("materials.purchase_orders[", orders)):
        if issue.path.startswith(prefix):
            index, rest = issue.path[len(prefix) :].split("]", 1)
            return Issue(f"{prefix}{kept[int(index)]}]{rest}", issue.message)
    return issue


def _problem(raw: _ProblemIn) -> Problem:
    """The validated JSON form as dataclasses."""
    materials = None
    if raw.materials is not None:
        materials = Materials(
            items={
                name: Material(name, m.on_hand, m.lead_time_days, m.unit)
                for name, m in raw.materials.items.items()
            },
            bom={product: dict(parts) for product, parts in raw.materials.bom.items()},
            purchase_orders=tuple(
                PurchaseOrder(po.id, po.material, po.qty, po.arrives)
                for po in raw.materials.purchase_orders
            ),
        )
    return Problem(
        start=raw.start,
        lines=tuple(
            Line(
                id=ln.id,
                rates=dict(ln.rates),
                calendar=ln.calendar,
                down_until=ln.down_until,
                down_reason=ln.down_reason,
                setup=ln.setup,
            )
            for ln in raw.lines
        ),
        jobs=tuple(
            Job(
                id=j.id,
                product=j.product,
                qty=j.qty,
                due=j.due,
                weight=j.weight,
                release=j.release,
                pinned_line=j.pinned_line,
                pinned_start=j.pinned_start,
                priority=j.priority,
                deadline=j.deadline,
                planned_line=j.planned_line,
                planned_start=j.planned_start,
                order=j.order,
            )
            for j in raw.jobs
        ),
        calendars={
            name: Calendar(
                id=name,
                timezone=c.timezone,
                shifts=tuple(_window(w) for w in c.shifts),
                breaks=tuple(_window(w) for w in c.breaks),
                holidays=tuple(c.holidays),
                closures=tuple(Closure(x.start, x.end, x.reason) for x in c.closures),
            )
            for name, c in raw.calendars.items()
        },
        changeovers={
            line: {before: dict(to) for before, to in table.items()}
            for line, table in raw.changeovers.items()
        },
        materials=materials,
        frozen_h=raw.frozen_h,
        risk_buffer_h=raw.risk_buffer_h,
    )


def check_problem(problem: Problem) -> None:
    """Check the rules across fields (ids, products, lines, times); raises ``ProblemError``.

    The last problem that passed is remembered (by identity): a replan checks the problem it
    builds, to leave out what the planner cannot take, and ``solve`` checks it again.
    """
    last = _LAST_CHECKED
    if last and last[0] is problem:
        return
    _check_problem(problem)
    _LAST_CHECKED[:] = [problem]


# The last problem that passed ``check_problem``, held so its identity stays its own.
_LAST_CHECKED: list[Problem] = []


def _check_problem(problem: Problem) -> None:
    issues: list[Issue] = []
    if not _aware(problem.start):
        issues.append(Issue("start", "must be timezone-aware"))
    lines: dict[str, Line] = {}
    slowest: dict[str, float] = {}  # the lowest rate per product
    for i, line in enumerate(problem.lines):
        if line.id in lines:
            issues.append(Issue(f"lines[{i}].id", f"duplicate line id {line.id!r}"))
        lines.setdefault(line.id, line)
        for product, rate in line.rates.items():
            # The JSON path checks this already; dataclasses built in code come here directly.
            if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
                issues.append(Issue(f"lines[{i}].rates{_key(product)}", "must be > 0"))
            else:
                slowest[product] = min(rate, slowest.get(product, math.inf))
    seen: set[str] = set()
    total_h = 0.0
    for i, job in enumerate(problem.jobs):
        at = f"jobs[{i}]"
        if job.id in seen:
            issues.append(Issue(f"{at}.id", f"duplicate job id {job.id!r}"))
        seen.add(job.id)
        if not (math.isfinite(job.qty) and job.qty > 0):
            issues.append(Issue(f"{at}.qty", "must be > 0"))
        elif job.product in slowest:
            run_h = job.qty / slowest[job.product]
            total_h += run_h
            if run_h > MAX_HORIZON_H:
                issues.append(Issue(f"{at}.qty", f"takes over {MAX_HORIZON_H:.0f} h on a line"))
        if not (math.isfinite(job.weight) and job.weight >= 0):
            issues.append(Issue(f"{at}.weight", "must be >= 0"))
        if job.product not in slowest:
            issues.append(Issue(f"{at}.product", f"no line can make product {job.product!r}"))
        for name in ("due", "release", "pinned_start"):
            value = getattr(job, name)
            if value is not None and not _aware(value):
                issues.append(Issue(f"{at}.{name}", "must be timezone-aware"))
        if _aware(job.due) and _aware(problem.start) and job.due < problem.start:
            issues.append(Issue(f"{at}.due", "before start"))
        if job.pinned_line is not None:
            pinned = lines.get(job.pinned_line)
            if pinned is None:
                issues.append(Issue(f"{at}.pinned_line", f"unknown line {job.pinned_line!r}"))
            elif job.product not in pinned.rates:
                issues.append(
                    Issue(
                        f"{at}.pinned_line",
                        f"line {job.pinned_line!r} cannot make product {job.product!r}",
                    )
                )
        elif job.pinned_start is not None:
            issues.append(Issue(f"{at}.pinned_start", "needs pinned_line"))
        for name in ("release", "pinned_start"):  # work starting this late ends off the map
            value = getattr(job, name)
            if (
                value is not None
                and _aware(value)
                and _aware(problem.start)
                and (value - problem.start).total_seconds() / 3600 > MAX_HORIZON_H
            ):
                issues.append(Issue(f"{at}.{name}", f"more than {MAX_HORIZON_H:.0f} h after start"))
    if total_h > MAX_HORIZON_H:
        issues.append(Issue("jobs", f"need over {MAX_HORIZON_H:.0f} h of work in total"))
    products = set(slowest) | {job.product for job in problem.jobs}
    issues += _check_lines(problem, products)
    issues += _check_jobs_extra(problem, lines)
    issues += _check_calendars(problem)
    # calendar.py builds on this module, hence the import here.
    from loopline.models.planning.calendar import calendar_issues

    issues += calendar_issues(problem)
    issues += _check_changeovers(problem, lines, products)
    issues += _check_materials(problem, products)
    if not (math.isfinite(problem.frozen_h) and problem.frozen_h >= 0):
        issues.append(Issue("frozen_h", "must be >= 0"))
    if issues:
        raise ProblemError(issues)


def _check_lines(problem: Problem, products: set[str]) -> list[Issue]:
    issues = []
    for i, line in enumerate(problem.lines):
        at = f"lines[{i}]"
        if line.calendar is not None and line.calendar not in problem.calendars:
            issues.append(Issue(f"{at}.calendar", f"unknown calendar {line.calendar!r}"))
        if line.down_until is not None and not _aware(line.down_until):
            issues.append(Issue(f"{at}.down_until", "must be timezone-aware"))
        if line.setup is not None and line.setup not in products:
            issues.append(Issue(f"{at}.setup", f"unknown product {line.setup!r}"))
    return issues


def _check_jobs_extra(problem: Problem, lines: Mapping[str, Line]) -> list[Issue]:
    issues = []
    for i, job in enumerate(problem.jobs):
        at = f"jobs[{i}]"
        if job.priority not in PRIORITIES:
            issues.append(Issue(f"{at}.priority", f"must be one of {', '.join(PRIORITIES)}"))
        for name in ("deadline", "planned_start"):
            value = getattr(job, name)
            if value is not None and not _aware(value):
                issues.append(Issue(f"{at}.{name}", "must be timezone-aware"))
        if job.planned_line is not None and job.planned_line not in lines:
            issues.append(Issue(f"{at}.planned_line", f"unknown line {job.planned_line!r}"))
        if job.planned_start is not None and job.planned_line is None:
            issues.append(Issue(f"{at}.planned_start", "needs planned_line"))
    return issues


def _check_calendars(problem: Problem) -> list[Issue]:
    issues = []
    for name, cal in problem.calendars.items():
        at = f"calendars{_key(name)}"
        try:
            ZoneInfo(cal.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            issues.append(Issue(f"{at}.timezone", f"unknown time zone {cal.timezone!r}"))
        for k, shift in enumerate(cal.shifts):
            if not shift.days or not shift.days <= set(range(7)):
                issues.append(Issue(f"{at}.shifts[{k}].days", "must name weekdays"))
        for k, closure in enumerate(cal.closures):
            if not (_aware(closure.start) and _aware(closure.end)):
                issues.append(Issue(f"{at}.closures[{k}]", "must be timezone-aware"))
            elif closure.end <= closure.start:
                issues.append(Issue(f"{at}.closures[{k}].end", "must be after start"))
    return issues


def _check_changeovers(
    problem: Problem, lines: Mapping[str, Line], products: set[str]
) -> list[Issue]:
    issues = []
    for line, table in problem.changeovers.items():
        at = f"changeovers{_key(line)}"
        if line != "*" and line not in lines:
            issues.append(Issue(at, f"unknown line {line!r}"))
        for before, row in table.items():
            if before not in products:
                issues.append(Issue(f"{at}{_key(before)}", f"unknown product {before!r}"))
            for after, hours in row.items():
                if after not in products:
                    issues.append(
                        Issue(f"{at}{_key(before)}{_key(after)}", f"unknown product {after!r}")
                    )
                elif not (math.isfinite(hours) and hours >= 0):
                    issues.append(Issue(f"{at}{_key(before)}{_key(after)}", "must be >= 0"))
    return issues


def _check_materials(problem: Problem, products: set[str]) -> list[Issue]:
    materials = problem.materials
    if materials is None:
        return []
    issues = []
    for name, item in materials.items.items():
        at = f"materials.items{_key(name)}"
        if not (math.isfinite(item.on_hand) and item.on_hand >= 0):
            issues.append(Issue(f"{at}.on_hand", "must be >= 0"))
        if not (math.isfinite(item.lead_time_days) and item.lead_time_days >= 0):
            issues.append(Issue(f"{at}.lead_time_days", "must be >= 0"))
    for product, parts in materials.bom.items():
        at = f"materials.bom{_key(product)}"
        if product not in products:
            issues.append(Issue(at, f"unknown product {product!r}"))
        for material, per_unit in parts.items():
            if material not in materials.items:
                issues.append(Issue(f"{at}{_key(material)}", f"unknown material {material!r}"))
            elif not (math.isfinite(per_unit) and per_unit > 0):
                issues.append(Issue(f"{at}{_key(material)}", "must be > 0"))
    for k, po in enumerate(materials.purchase_orders):
        at = f"materials.purchase_orders[{k}]"
        if po.material not in materials.items:
            issues.append(Issue(f"{at}.material", f"unknown material {po.material!r}"))
        if not (math.isfinite(po.qty) and po.qty > 0):
            issues.append(Issue(f"{at}.qty", "must be > 0"))
        if not _aware(po.arrives):
            issues.append(Issue(f"{at}.arrives", "must be timezone-aware"))
    return issues


def _aware(value: datetime) -> bool:
    # Parsed timestamps are all in UTC: the identity check spares a call per field.
    return value.tzinfo is UTC or (value.tzinfo is not None and value.utcoffset() is not None)


def _issue(error: Any) -> Issue:
    """A pydantic error as an ``Issue`` with a JSON-ish path and a short message."""
    path = "".join(
        f"[{part}]" if isinstance(part, int) else _key(str(part))
        for part in error["loc"]
        if part != "[key]"  # pydantic's marker for a bad key: the path names the key itself
    ).lstrip(".")
    return Issue(path or "(root)", error_message(error))


def error_message(error: Any) -> str:
    """A pydantic error's message in the planner's words (``must be a number``, ...)."""
    kind, ctx = error["type"], error.get("ctx") or {}
    messages = {
        "missing": "required",
        "greater_than": f"must be > {ctx.get('gt')}",
        "greater_than_equal": f"must be >= {ctx.get('ge')}",
        "finite_number": "must be a finite number",
        "string_too_short": "must not be empty",
        "too_short": "must not be empty",
        "literal_error": f"must be one of {ctx.get('expected')}",
        "extra_forbidden": "unknown field",
        "less_than_equal": f"must be <= {ctx.get('le')}",
        "string_too_long": f"at most {ctx.get('max_length')} characters",
        "too_long": f"at most {ctx.get('max_length')} items",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "int_type": "must be an integer",
        "string_type": "must be a string",
        "string_unicode": "must not contain control characters or lone surrogates",
        "dict_type": "must be an object",
        "model_type": "must be an object",
        "model_attributes_type": "must be an object",
        "list_type": "must be a list",
        "bool_type": "must be true or false",
        "int_from_float": "must be an integer",
    }
    return messages.get(kind, error["msg"])


def _key(name: str) -> str:
    """A path step for a mapping key: ``.qty`` when it reads as a name, else ``["P-1.2"]``."""
    return f".{name}" if _IDENTIFIER.match(name) else f"[{json.dumps(name)}]"


def _cut(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_calendar(name: str, data: Any, *, naive_is_utc: bool = True) -> Calendar:
    """A stored calendar definition (the JSON form of ``calendars`` entries) as a
    ``Calendar`` called ``name``; raises ``ProblemError`` naming the failing fields.

    ``naive_is_utc`` reads closure times without a zone as UTC, for calendars stored
    before the zone was required; a file being imported passes False.
    """
    context = {"naive_is_utc": naive_is_utc}
    try:
        raw = _CalendarIn.model_validate(data, context=context)
    except ValidationError as exc:
        issues = [_issue(e) for e in exc.errors()]
        # The closures that are valid on their own still get their cross-field check.
        closures = data.get("closures") if isinstance(data, dict) else None
        for k, item in enumerate(closures if isinstance(closures, list) else []):
            try:
                one = _ClosureIn.model_validate(item, context=context)
            except ValidationError:
                continue
            if one.end <= one.start:
                issues.append(Issue(f"closures[{k}].end", "must be after start"))
        raise ProblemError(issues) from None
    calendar = Calendar(
        id=name,
        timezone=raw.timezone,
        shifts=tuple(_window(w) for w in raw.shifts),
        breaks=tuple(_window(w) for w in raw.breaks),
        holidays=tuple(raw.holidays),
        closures=tuple(Closure(x.start, x.end, x.reason) for x in raw.closures),
    )
    issues = []
    for k, x in enumerate(calendar.closures):
        if x.end <= x.start:
            issues.append(Issue(f"closures[{k}].end", "must be after start"))
        elif (x.end - x.start).total_seconds() / 3600 > MAX_CLOSURE_H:
            issues.append(
                Issue(
                    f"closures[{k}].end",
                    f"closes the line for over {MAX_CLOSURE_H / (24 * 365):.0f} years: leave "
                    "the line out instead",
                )
            )
    from loopline.models.planning.calendar import weekly_hours  # calendar.py builds on this module

    if weekly_hours(calendar) <= 0:
        issues.append(Issue("shifts", "leave no working time in a week"))
    if issues:
        raise ProblemError(issues)
    return calendar
