"""The planner's answer: which job runs on which line when, and what ends up late."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from loopline.models.planning.materials import PurchaseRequest
from loopline.models.planning.problem import Job, Problem, parse_problem

# Float hours turned into microsecond datetimes can overshoot a due date by a hair;
# lateness below this is rounding, not lateness.
TARDINESS_TOLERANCE_S = 0.001


@dataclass(frozen=True)
class Assignment:
    """One job on one line, from start to end."""

    job: str
    line: str
    start: datetime  # the changeover (if any) starts here, then the run
    end: datetime
    setup_h: float = 0.0


@dataclass(frozen=True)
class LateJob:
    """A job planned to finish after its due date (or too close to it), and why.

    ``cause`` is the machine-readable reason: ``{"kind": "capacity", "line": "L2"}``,
    ``{"kind": "material", "material": "STEEL", "until": "<rfc3339>"}``,
    ``{"kind": "line_down", "line": "L3", "until": ..., "reason": "jam"}``,
    ``{"kind": "rush", "job": "WO-7-1", "order": "SO-7", "line": "L1"}`` or
    ``{"kind": "lead_time"}``; ``reason`` words it for people.
    """

    job: str
    tardiness_h: float
    weight: float
    reason: str  # human text, e.g. "capacity on line L2"
    line: str = ""
    cause: Mapping[str, Any] = field(default_factory=dict)
    slack_h: float = 0.0  # for jobs at risk: hours left before the due date


@dataclass(frozen=True)
class IdleLine:
    """A line that takes no job, and why: ``cause`` ``{"kind": "no_working_time",
    "calendar": "c"}`` for a calendar without working time within the planner's reach."""

    line: str
    reason: str
    cause: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Schedule:
    """Every job's assignment, the total weighted tardiness and the late jobs."""

    assignments: tuple[Assignment, ...]
    total_weighted_tardiness_h: float
    late_jobs: tuple[LateJob, ...]
    at_risk: tuple[LateJob, ...] = ()
    purchase_requests: tuple[PurchaseRequest, ...] = ()
    solver: str = "dispatch-v0"
    idle_lines: tuple[IdleLine, ...] = ()

    @property
    def makespan_end(self) -> datetime | None:
        """When the last job ends (None for an empty schedule)."""
        return max((a.end for a in self.assignments), default=None)


def tardiness_h(job: Job, end: datetime) -> float:
    """How many hours after its due date the job ends (0 when on time)."""
    late_s = (end - job.due).total_seconds()
    return late_s / 3600 if late_s > TARDINESS_TOLERANCE_S else 0.0


def weighted_tardiness(problem: Problem, assignments: Iterable[Assignment]) -> float:
    """The objective recomputed from assignments: sum of weight x tardiness in hours."""
    jobs = {j.id: j for j in problem.jobs}
    return sum(jobs[a.job].weight * tardiness_h(jobs[a.job], a.end) for a in assignments)


def build_schedule(problem: Problem, assignments: Iterable[Assignment]) -> Schedule:
    """A ``Schedule`` from assignments: sorted, with the objective and late jobs computed."""
    jobs = {j.id: j for j in problem.jobs}
    order = {ln.id: i for i, ln in enumerate(problem.lines)}
    lines = {ln.id: ln for ln in problem.lines}
    fastest: dict[str, float] = {}
    for ln in problem.lines:
        for product, rate in ln.rates.items():
            fastest[product] = max(rate, fastest.get(product, 0.0))
    placed = tuple(sorted(assignments, key=lambda a: (a.start, order.get(a.line, -1), a.job)))
    late = []
    for a in placed:
        job = jobs[a.job]
        late_h = tardiness_h(job, a.end)
        if late_h > 0:
            if job.pinned_line is not None:
                rate = lines[job.pinned_line].rates[job.product]
            else:
                rate = fastest[job.product]
            reason = _why_late(problem, job, a.line, rate)
            cause = (
                {"kind": "lead_time"}
                if reason.startswith("lead time")
                else {"kind": "capacity", "line": a.line}
            )
            late.append(LateJob(a.job, late_h, job.weight, reason, a.line, cause))
    late.sort(key=lambda lj: (-lj.weight * lj.tardiness_h, lj.job))
    return Schedule(
        assignments=placed,
        total_weighted_tardiness_h=weighted_tardiness(problem, placed),
        late_jobs=tuple(late),
    )


def _why_late(problem: Problem, job: Job, line: str, best_rate: float) -> str:
    """Capacity, unless the job could not be on time even alone on its best line."""
    earliest = problem.release_of(job)
    if job.pinned_start is not None:
        earliest = max(earliest, job.pinned_start)
    alone_end = earliest + timedelta(hours=job.qty / best_rate)
    if tardiness_h(job, alone_end) > 0:
        return "lead time: cannot finish by due even on an idle line"
    return f"capacity on line {line}"


def rfc3339(moment: datetime) -> str:
    """A datetime as an RFC 3339 UTC timestamp ending in 'Z'."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _late_json(lj: LateJob) -> dict[str, Any]:
    return {
        "job": lj.job,
        "line": lj.line,
        "tardiness_h": round(lj.tardiness_h, 6),
        "weight": lj.weight,
        "reason": lj.reason,
        "cause": dict(lj.cause),
    }


def to_json(schedule: Schedule) -> dict[str, Any]:
    """The schedule in its JSON form (DESIGN.md, "Planner problem")."""
    end = schedule.makespan_end
    doc: dict[str, Any] = {
        "assignments": [
            {
                "job": a.job,
                "line": a.line,
                "start": rfc3339(a.start),
                "end": rfc3339(a.end),
                "changeover_h": round(a.setup_h, 6),
            }
            for a in schedule.assignments
        ],
        "total_weighted_tardiness_h": float(schedule.total_weighted_tardiness_h),
        "late_jobs": [_late_json(lj) for lj in schedule.late_jobs],
        "at_risk": [{**_late_json(lj), "slack_h": round(lj.slack_h, 6)} for lj in schedule.at_risk],
        "purchase_requests": [
            {
                "material": pr.material,
                "qty": pr.qty,
                "needed_by": rfc3339(pr.needed_by),
                "arrives_if_ordered_now": rfc3339(pr.arrives),
                "jobs": list(pr.jobs),
            }
            for pr in schedule.purchase_requests
        ],
        "makespan_end": rfc3339(end) if end is not None else None,
        "solver": schedule.solver,
    }
    if schedule.idle_lines:  # only then, so plans without them read as before
        doc["idle_lines"] = [
            {"line": il.line, "reason": il.reason, "cause": dict(il.cause)}
            for il in schedule.idle_lines
        ]
    return doc


def plan_json(
    data: Any, *, time_limit: float | None = None, max_rounds: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """Parse a problem document, solve it and return the schedule's JSON form."""
    # Imported here because the solver builds on this module's types.
    from loopline.models.planning.solver import solve

    problem = parse_problem(data)
    return to_json(solve(problem, time_limit=time_limit, max_rounds=max_rounds, seed=seed))
