"""The planner: a pure pipeline from a problem (plain dataclasses) to a schedule."""

from models.planning.dispatch import solve
from models.planning.problem import (
    Issue,
    Job,
    Line,
    Problem,
    ProblemError,
    check_problem,
    parse_problem,
)
from models.planning.schedule import (
    Assignment,
    LateJob,
    Schedule,
    build_schedule,
    plan_json,
    rfc3339,
    tardiness_h,
    to_json,
    weighted_tardiness,
)

__all__ = [
    "Assignment",
    "Issue",
    "Job",
    "LateJob",
    "Line",
    "Problem",
    "ProblemError",
    "Schedule",
    "build_schedule",
    "check_problem",
    "parse_problem",
    "plan_json",
    "rfc3339",
    "solve",
    "tardiness_h",
    "to_json",
    "weighted_tardiness",
]
