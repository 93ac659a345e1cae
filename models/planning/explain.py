"""Why a job ends late, or too close to its due date, in words and as data.

The causes, checked in this order (the first that holds is given):
- ``material``: the job starts the moment its material arrives (a purchase order, or a
  purchase still to be made when the material is short);
- ``rush``: a rush job runs before it on the same line, and without that job's time on
  the line this one would be on time;
- ``line_down``: its line is down, and the delay is no more than the downtime;
- ``material`` again: alone on its fastest line from when its material arrives it could
  not be on time (but from its release it could);
- ``lead_time``: even alone on its fastest line it could not be on time;
- ``capacity``: otherwise, the line is simply full.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from loopline.models.planning.problem import Job
from loopline.models.planning.schedule import Assignment, LateJob, rfc3339, tardiness_h

if TYPE_CHECKING:
    from loopline.models.planning.solver import PlanModel

# Start times equal to an arrival within this many hours count as waiting for it.
SAME_INSTANT_H = 1e-6


def explain(
    model: PlanModel, placed: Sequence[tuple[Assignment, Job, float]]
) -> tuple[tuple[LateJob, ...], tuple[LateJob, ...]]:
    """The late jobs and the jobs at risk, each with its cause, worst first; ``placed``:
    every assignment with its job and tardiness (``tardiness_h``), in order of start."""
    buffer_h = model.problem.risk_buffer_h
    late: list[LateJob] = []
    at_risk: list[LateJob] = []
    last_rush: dict[str, tuple[Assignment, Job]] = {}  # per line, the latest rush job so far
    for a, job, late_h in placed:
        slack_h = (job.due - a.end).total_seconds() / 3600
        if late_h > 0 or slack_h < buffer_h:
            cause = _cause(model, job, a, late_h, slack_h, last_rush.get(a.line))
            entry = LateJob(
                job=a.job,
                tardiness_h=late_h,
                weight=job.weight,
                reason=_words(cause),
                line=a.line,
                cause=cause,
                slack_h=max(0.0, slack_h),
            )
            (late if late_h > 0 else at_risk).append(entry)
        if job.priority == "rush" and job.pinned_line is None:
            last_rush[a.line] = (a, job)
    late.sort(key=lambda lj: (-lj.weight * lj.tardiness_h, lj.job))
    at_risk.sort(key=lambda lj: (lj.slack_h, lj.job))
    return tuple(late), tuple(at_risk)


def _cause(
    model: PlanModel,
    job: Job,
    a: Assignment,
    late_h: float,
    slack_h: float,
    rush_before: tuple[Assignment, Job] | None,
) -> dict[str, Any]:
    problem, origin = model.problem, model.origin
    li = model.line_index[a.line]
    line = problem.lines[li]
    timeline = model.timelines[li]
    start_h = (a.start - origin).total_seconds() / 3600
    wait = model.materials.waits.get(job.id)
    if wait is not None:
        arrive_h = timeline.next_working((wait.until - origin).total_seconds() / 3600)
        if abs(start_h - arrive_h) <= SAME_INSTANT_H:
            return {
                "kind": "material",
                "material": wait.material,
                "until": rfc3339(wait.until),
                "short": wait.short,
            }
    if rush_before is not None:
        rush_a, rush = rush_before
        took_h = (rush_a.end - rush_a.start).total_seconds() / 3600
        if late_h <= took_h + SAME_INSTANT_H and (
            late_h > 0 or slack_h + took_h >= problem.risk_buffer_h
        ):
            return {"kind": "rush", "job": rush.id, "order": rush.order or rush.id, "line": a.line}
    if line.down_until is not None and line.down_until > problem.start:
        down_h = (line.down_until - problem.start).total_seconds() / 3600
        if late_h <= down_h + SAME_INSTANT_H and (
            late_h > 0 or slack_h + down_h >= problem.risk_buffer_h
        ):
            return {
                "kind": "line_down",
                "line": a.line,
                "until": rfc3339(line.down_until),
                "reason": line.down_reason,
            }
    if _alone_late(model, job, problem.release_of(job)):
        return {"kind": "lead_time"}
    if wait is not None and _alone_late(model, job, wait.until):
        return {
            "kind": "material",
            "material": wait.material,
            "until": rfc3339(wait.until),
            "short": wait.short,
        }
    return {"kind": "capacity", "line": a.line}


def _alone_late(model: PlanModel, job: Job, ready: datetime) -> bool:
    """Whether the job, started at ``ready`` alone on its fastest line, ends late."""
    origin = model.origin
    at = max(0.0, (ready - origin).total_seconds() / 3600)
    best = min(
        timeline.finish(at, job.qty / rate)[1] for timeline, rate in model.makers(job.product)
    )
    return tardiness_h(job, origin + timedelta(hours=best)) > 0


def _words(cause: dict[str, Any]) -> str:
    kind = cause["kind"]
    if kind == "material":
        how = "short, a purchase is requested" if cause["short"] else "on order"
        return f"waits for material {cause['material']} until {cause['until']} ({how})"
    if kind == "rush":
        return f"rush order {cause['order']} took its place on line {cause['line']}"
    if kind == "line_down":
        why = f" ({cause['reason']})" if cause.get("reason") else ""
        return f"line {cause['line']} down{why} until {cause['until']}"
    if kind == "lead_time":
        return "lead time: cannot finish by due even on an idle line"
    return f"capacity on line {cause['line']}"
