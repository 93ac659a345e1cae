"""The planner: a pure pipeline from a problem (plain dataclasses) to a schedule.

``solve`` (``solver.py``) is planner v1: calendars, changeovers, materials, pinned and
frozen work, iterated local search in a numba kernel (``optimize.py``, ``kernel.py``),
explanations (``explain.py``). ``quote`` answers "when could this order be done".
``dispatch.py`` keeps v0 (ATC dispatch) as a baseline for comparisons.
"""

from loopline.models.planning.materials import PurchaseRequest
from loopline.models.planning.problem import (
    Calendar,
    Closure,
    Issue,
    Job,
    Line,
    Material,
    Materials,
    Problem,
    ProblemError,
    PurchaseOrder,
    WeeklyWindow,
    check_problem,
    parse_problem,
)
from loopline.models.planning.schedule import (
    Assignment,
    IdleLine,
    LateJob,
    Schedule,
    build_schedule,
    plan_json,
    rfc3339,
    tardiness_h,
    to_json,
    weighted_tardiness,
)
from loopline.models.planning.solver import solve

__all__ = [
    "Assignment",
    "Calendar",
    "Closure",
    "IdleLine",
    "Issue",
    "Job",
    "LateJob",
    "Line",
    "Material",
    "Materials",
    "Problem",
    "ProblemError",
    "PurchaseOrder",
    "PurchaseRequest",
    "Schedule",
    "WeeklyWindow",
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
