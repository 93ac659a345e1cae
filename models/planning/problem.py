"""The planning problem: lines, jobs and a start time, as plain frozen dataclasses.

``parse_problem`` turns the JSON form (DESIGN.md, "Planner problem") into a ``Problem``;
``check_problem`` checks the rules that span fields. Both raise ``ProblemError`` naming
every failing field path, e.g. ``jobs[3].qty: must be > 0``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

# Longest plan the planner accepts, in hours (about 114 years): past this, timestamps
# leave datetime's range and the numbers are surely a unit mistake.
MAX_HORIZON_H = 1_000_000.0
# Only so many issues go into the message; ``ProblemError.errors`` keeps them all.
MAX_ISSUES_IN_MESSAGE = 20

# RFC 3339 section 5.6 date-time; the offset may be left out (then UTC is assumed).
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Line:
    """A production line and its rate (units per hour) for each product it can make."""

    id: str
    rates: Mapping[str, float]


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


@dataclass(frozen=True)
class Problem:
    """Everything the planner needs: when planning starts, the lines and the jobs."""

    start: datetime
    lines: tuple[Line, ...]
    jobs: tuple[Job, ...]

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


def _timestamp(value: Any) -> datetime:
    """An RFC 3339 timestamp as an aware UTC datetime (no offset means UTC)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and _RFC3339.match(value):
        text = value.upper().replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:  # e.g. month 13: the shape matched, the calendar did not
            raise PydanticCustomError(
                "timestamp", "not a valid RFC 3339 timestamp: {value}", {"value": value}
            ) from None
    else:
        raise PydanticCustomError(
            "timestamp", "must be an RFC 3339 timestamp, got {value}", {"value": _cut(value)}
        )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]
Id = Annotated[str, Field(min_length=1)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _LineIn(BaseModel):
    # Unknown keys are allowed: calendars and changeovers will extend the format.
    model_config = ConfigDict(extra="allow")

    id: Id
    rates: dict[str, Positive]


class _JobIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: Id
    product: Id
    qty: Positive
    due: Timestamp
    weight: NonNegative = 1.0
    release: Timestamp | None = None
    pinned_line: Id | None = None
    pinned_start: Timestamp | None = None


class _ProblemIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    start: Timestamp
    lines: list[_LineIn]
    jobs: list[_JobIn]


def parse_problem(data: Any) -> Problem:
    """The ``Problem`` in a decoded JSON document; raises ``ProblemError`` when invalid."""
    try:
        raw = _ProblemIn.model_validate(data)
    except ValidationError as exc:
        raise ProblemError([_issue(e) for e in exc.errors()]) from None
    problem = Problem(
        start=raw.start,
        lines=tuple(Line(id=ln.id, rates=dict(ln.rates)) for ln in raw.lines),
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
            )
            for j in raw.jobs
        ),
    )
    check_problem(problem)
    return problem


def check_problem(problem: Problem) -> None:
    """Check the rules across fields (ids, products, lines, times); raises ``ProblemError``."""
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
    if issues:
        raise ProblemError(issues)


def _aware(value: datetime) -> bool:
    return value.tzinfo is not None and value.utcoffset() is not None


def _issue(error: Any) -> Issue:
    """A pydantic error as an ``Issue`` with a JSON-ish path and a short message."""
    path = "".join(
        f"[{part}]" if isinstance(part, int) else _key(str(part)) for part in error["loc"]
    ).lstrip(".")
    kind, ctx = error["type"], error.get("ctx") or {}
    messages = {
        "missing": "required",
        "greater_than": f"must be > {ctx.get('gt')}",
        "greater_than_equal": f"must be >= {ctx.get('ge')}",
        "finite_number": "must be a finite number",
        "string_too_short": "must not be empty",
    }
    return Issue(path or "(root)", messages.get(kind, error["msg"]))


def _key(name: str) -> str:
    """A path step for a mapping key: ``.qty`` when it reads as a name, else ``["P-1.2"]``."""
    return f".{name}" if _IDENTIFIER.match(name) else f"[{json.dumps(name)}]"


def _cut(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
