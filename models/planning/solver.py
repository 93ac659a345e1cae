"""The planner: a problem in, a schedule that keeps promises out.

The pipeline: check the problem; place pinned work (running, or inside the frozen
window) where it is; net materials to get each job's material date and the purchase
requests; turn calendars into working windows; hand the rest as arrays to the
optimisation kernel (``optimize``: construction, then iterated local search within a time
limit, starting from the previous plan when there is one); explain every late or at-risk
job. ``solve`` keeps the signature of planner v0, so every caller got the new planner.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from operator import itemgetter

import numpy as np

from loopline.models.planning.calendar import (
    Timeline,
    closed_lines,
    layout_until,
    no_working_time_reason,
    working_windows,
)
from loopline.models.planning.explain import explain
from loopline.models.planning.materials import MaterialPlan, commitment, netting
from loopline.models.planning.optimize import Arrays, Solution, decode, optimize
from loopline.models.planning.problem import Job, Problem, check_problem
from loopline.models.planning.schedule import Assignment, IdleLine, Schedule, tardiness_h

SOLVER_NAME = "ils-v1"
# Default time: a full plan gets up to 0.85 s counted from the call, compiling the model
# included, which leaves time to build the answer (10k jobs x 50 lines in <= 1 s all told;
# measured within 1 % of the weighted tardiness 30 s of the same search reach); a replan
# from the previous plan gets INCREMENTAL_TIME_S.
FULL_TIME_S = 0.85
# Among plans equally late, a fresh plan prefers the one that finishes work earlier (which
# batches changeovers and leaves slack): 1,000 weighted job-hours sooner are worth one
# weighted hour of tardiness, so the tie-breaker never trades real lateness for it.
FLOW_TIE_BREAK = 1e-4
# A replan from the previous plan repairs it: new (or changed) jobs placed where they cost
# least, then a local search over the lines the change touched, stopping at its first
# local optimum or this limit, whichever comes first.
INCREMENTAL_TIME_S = 0.03
REINSERT_UP_TO = 20
# A job starting this much off its previous plan's start (hours) means its line changed;
# less is time passing between replans (as models/replan.py's MOVE_EPSILON_H).
MOVED_H = 0.25


def default_time_limit(jobs: int, *, incremental: bool = False) -> float:
    """Seconds of search when the caller sets none: small plans need very little, and a
    replan that starts from the previous plan (after one order changed) only repairs it.
    """
    if incremental:
        return INCREMENTAL_TIME_S
    return min(FULL_TIME_S, 0.05 + jobs * 1e-4)


def solve(
    problem: Problem,
    *,
    time_limit: float | None = None,
    max_rounds: int | None = None,
    seed: int = 0,
) -> Schedule:
    """A schedule for every job: finite capacity on working time, changeovers, material
    dates, pinned and frozen work kept, promises met once met; late jobs explained.

    ``max_rounds`` alone (``time_limit=None``) gives the same answer on every machine.
    """
    called = time.perf_counter()  # the time limit counts from here, model building included
    check_problem(problem)
    model = PlanModel(problem)
    solution = None
    if model.free:
        repair = model.repair_start()
        default = max_rounds is None and time_limit is None
        if default:
            time_limit = default_time_limit(len(model.free), incremental=repair is not None)
        arrays = model.arrays
        initial = focus = None
        if repair is not None:
            # A replan repairs the previous plan: only lateness is worth moving work for,
            # never the tie-breaker, or every replan would shuffle the floor's queue.
            arrays = replace(arrays, flow=None)
            initial = repair[:2]
            # With the default limit the search repairs the touched lines only; a limit
            # given searches the whole plan from the repaired start that long.
            focus = repair[2] if default else None
        solution = optimize(
            arrays,
            time_limit=time_limit,
            max_rounds=max_rounds,
            seed=seed,
            initial=initial,
            started=called,
            focus=focus,
        )
    return model.schedule(solution)


def _h(moment: datetime, origin: datetime) -> float:
    return (moment - origin).total_seconds() / 3600


def _hours_exact(origin: datetime, moments: list[datetime | None]) -> np.ndarray:
    """``_h`` of each moment (aware datetimes; None: NaN), bit for bit, as one array.

    A timestamp is within a quarter microsecond of the exact seconds (and so of its whole
    microseconds) for any date the planner sees, so rounding it gives the exact microseconds
    ``_h`` divides, in the same order (``total_seconds`` then hours).
    """
    stamps = np.array([m.timestamp() if m is not None else np.nan for m in moments])
    with np.errstate(invalid="ignore"):
        micros = np.rint(stamps * 1e6) - np.rint(origin.timestamp() * 1e6)
    return micros / 1e6 / 3600


def _hours_from(origin: datetime, moments: list[datetime]) -> np.ndarray:
    """Hours from ``origin`` to each moment (aware datetimes), as one array."""
    base = origin.timestamp()
    return (np.array([m.timestamp() for m in moments], dtype=np.float64) - base) / 3600


@dataclass
class _Start:
    """The previous plan as a start (``PlanModel.initial``): each job's line and the order,
    when each line is free after it and of which product (worked out when first needed),
    and the (due, id) of the last new job placed (None: no job was new)."""

    line_of: np.ndarray
    order: np.ndarray
    ends: tuple[list[float], list[int]] | None = None
    last_new: tuple[datetime, str] | None = None


@dataclass(frozen=True)
class Placed:
    """A pinned job's placement, in hours from the plan's start."""

    job: Job
    line: int
    start: float
    end: float
    setup_h: float


class PlanModel:
    """The problem compiled for the kernel: indices, windows, pinned work, materials."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.origin = origin = problem.start
        self.lines = problem.lines
        self.line_index = {ln.id: i for i, ln in enumerate(self.lines)}
        # Lines without working time take no job (the check refuses work only they could do).
        self.closed = closed_lines(problem)
        products = sorted(
            {p for ln in self.lines for p in ln.rates} | {j.product for j in problem.jobs}
        )
        self.products = products
        self.product_index = {p: i for i, p in enumerate(products)}
        # The fastest rate per product among lines with working time.
        self.fastest = {
            p: max(rates)
            for p in products
            if (
                rates := [
                    ln.rates[p]
                    for i, ln in enumerate(self.lines)
                    if p in ln.rates and i not in self.closed
                ]
            )
        }
        frozen_until = origin + timedelta(hours=problem.frozen_h)
        pinned: list[Job] = []
        free: list[Job] = []
        for job in problem.jobs:
            if job.pinned_line is not None or (
                problem.frozen_h > 0
                and job.planned_line in self.line_index
                and self.line_index[job.planned_line] not in self.closed
                and job.planned_start is not None
                and job.planned_start < frozen_until
                and job.product in self.lines[self.line_index[job.planned_line]].rates
            ):
                pinned.append(job)
            else:
                free.append(job)
        self.free = free
        self.netting = netting(
            problem, self.fastest, skip=frozenset(j.id for j in pinned if j.pinned_line)
        )
        self.materials: MaterialPlan = self.netting.plan()
        self.until = layout_until(problem)
        self.timelines = self._timelines(self.until)
        self._pinned_jobs = pinned
        self.pinned, free_at, last_product = self._place_pinned(pinned)
        self.arrays = self._arrays(free_at, last_product)
        self._makers: dict[str, list[tuple[Timeline, float]]] = {}
        self._initial: _Start | None = None
        self._initial_known = False

    def makers(self, product: str) -> list[tuple[Timeline, float]]:
        """The timeline and rate of every line making ``product``, in line order (kept: the
        explanations of one plan ask about the same few products, job after job)."""
        found = self._makers.get(product)
        if found is None:
            found = self._makers[product] = [
                (self.timelines[li], ln.rates[product])
                for li, ln in enumerate(self.lines)
                if product in ln.rates
            ]
        return found

    # --- compiling ----------------------------------------------------------------------

    def _timelines(self, until: dict[str, datetime]) -> list[Timeline]:
        self.windows: list[tuple[tuple[float, float], ...]] = []
        shared: dict[str, tuple[tuple[float, float], ...]] = {}  # lines on one calendar
        # Lines whose calendars lay out alike get one windows object (``working_windows``),
        # and so one timeline: keyed by that object.
        timelines: dict[tuple[int, bool], Timeline] = {}
        out = []
        for li, ln in enumerate(self.lines):
            closed = li in self.closed
            if ln.calendar is None or closed:
                self.windows.append(())
            else:
                if ln.calendar not in shared:
                    cal = self.problem.calendars[ln.calendar]
                    shared[ln.calendar] = working_windows(cal, self.origin, until[ln.calendar])
                self.windows.append(shared[ln.calendar])
            key = (id(self.windows[-1]), closed)
            if key not in timelines:
                timelines[key] = Timeline(self.windows[-1], closed=closed)
            out.append(timelines[key])
        return out

    def _place_pinned(self, pinned: list[Job]) -> tuple[list[Placed], list[float], list[int]]:
        p, origin = self.problem, self.origin
        free_at = [
            max(0.0, _h(ln.down_until, origin)) if ln.down_until else 0.0 for ln in self.lines
        ]
        last = [self.product_index[ln.setup] if ln.setup else -1 for ln in self.lines]
        placed: list[Placed] = []

        def anchor(job: Job) -> float:
            at = job.pinned_start if job.pinned_line is not None else job.planned_start
            return max(0.0, _h(at, origin)) if at else 0.0

        running = [j for j in pinned if j.pinned_line is not None]
        frozen = [j for j in pinned if j.pinned_line is None]
        # Running work first on its line (it is set up already), then frozen work.
        for group in (running, frozen):
            for job in sorted(group, key=lambda j: (anchor(j), j.id)):
                li = self.line_index[job.pinned_line or job.planned_line or ""]
                line = self.lines[li]
                product = self.product_index[job.product]
                setup = 0.0
                if job.pinned_line is None and last[li] >= 0 and last[li] != product:
                    setup = p.changeover_h(line.id, self.products[last[li]], job.product)
                t = max(free_at[li], anchor(job), self._ready_h(job))
                start, end = self.timelines[li].finish(t, setup + job.qty / line.rates[job.product])
                placed.append(Placed(job, li, start, end, setup))
                free_at[li], last[li] = end, product
        return placed, free_at, last

    def _ready_h(self, job: Job) -> float:
        ready = self.problem.release_of(job)
        wait = self.materials.ready(job.id)
        if wait is not None and wait > ready:
            ready = wait
        return max(0.0, _h(ready, self.origin))

    def _ready_hours(self, jobs: list[Job]) -> np.ndarray:
        """``_ready_h`` of every job, as one array (most jobs are ready at the start)."""
        origin, waits = self.origin, self.materials.waits
        out = np.zeros(len(jobs))
        for k, job in enumerate(jobs):
            ready = job.release
            if ready is None or ready < origin:
                ready = origin
            wait = waits.get(job.id)
            if wait is not None and wait.until > ready:
                ready = wait.until
            if ready != origin:
                out[k] = max(0.0, _h(ready, origin))
        return out

    def _arrays(self, free_at: list[float], last_product: list[int]) -> Arrays:
        p, origin, jobs = self.problem, self.origin, self.free
        n, n_lines, n_products = len(jobs), len(self.lines), len(self.product_index)
        self.rates = rates = np.zeros((n_lines, max(1, n_products)))
        for li, ln in enumerate(self.lines):
            for name, rate in ln.rates.items():
                rates[li, self.product_index[name]] = rate
        product = np.array([self.product_index[j.product] for j in jobs], dtype=np.int32)
        qty = np.array([j.qty for j in jobs], dtype=np.float64)
        job_rates = rates[:, product].T if n else np.zeros((0, n_lines))
        with np.errstate(divide="ignore"):
            proc = np.where(
                job_rates > 0, qty[:, None] / np.where(job_rates > 0, job_rates, 1.0), np.inf
            )
        if self.closed:  # no job on a line without working time
            proc[:, sorted(self.closed)] = np.inf
        setup = np.zeros((n_lines, n_products, n_products))
        for key in ["*"] + [ln.id for ln in self.lines]:  # line tables override "*"
            table = p.changeovers.get(key)
            if not table:
                continue
            pi = self.product_index
            pairs = [
                (pi[before], pi[after], hours)
                for before, row in table.items()
                for after, hours in row.items()
                if before != after
            ]
            if not pairs:
                continue
            a, b, hours = (np.array(col) for col in zip(*pairs, strict=True))
            if key == "*":
                setup[:, a, b] = hours
            else:
                setup[self.line_index[key], a, b] = hours
        ptr, cal_open, cal_close = self._calendar_arrays()
        weight = np.array([j.weight for j in jobs], dtype=np.float64)
        return Arrays(
            proc=proc,
            ready=self._ready_hours(jobs),
            due=_hours_from(origin, [j.due for j in jobs]),
            weight=weight,
            deadline=np.nan_to_num(_hours_exact(origin, [j.deadline for j in jobs]), nan=np.inf),
            product=product,
            setup=setup,
            cal_ptr=ptr,
            cal_open=cal_open,
            cal_close=cal_close,
            free_at=np.array(free_at, dtype=np.float64),
            last_product=np.array(last_product, dtype=np.int32),
            flow=FLOW_TIE_BREAK * weight,
        )

    def _calendar_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The lines' windows for the kernel: offsets per line, opens, closes."""
        ptr = np.zeros(len(self.lines) + 1, dtype=np.int64)
        for li, w in enumerate(self.windows):
            ptr[li + 1] = ptr[li] + len(w)
        as_array: dict[int, np.ndarray] = {}  # each windows object converted once
        for w in self.windows:
            if id(w) not in as_array:
                as_array[id(w)] = np.array(w, dtype=np.float64).reshape(-1, 2)
        flat = np.concatenate([as_array[id(w)] for w in self.windows] or [np.zeros((0, 2))])
        return ptr, flat[:, 0], flat[:, 1]

    # --- the previous plan as a start ---------------------------------------------------

    def repair_start(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """A replan's start and the jobs its search visits: the previous plan with each new
        (or changed) job placed where it costs least, and the jobs on the lines that change
        touched; None when nothing was planned before.

        A new job is tried at its due-date position and at the end of every line that can
        make it (first ``REINSERT_UP_TO`` new jobs, by due date; the rest stay where
        ``initial`` put them). A line is touched when a new job lands on it or when any
        of its jobs no longer starts when the previous plan said.
        """
        start = self.initial()
        if start is None:
            return None
        line_of, order = start
        jobs, a = self.free, self.arrays
        new = [j for j, job in enumerate(jobs) if job.planned_line not in self.line_index]
        new = [j for j in new if math.isfinite(a.proc[j, line_of[j]])]
        new.sort(key=lambda j: (a.due[j], jobs[j].id))
        for j in new[:REINSERT_UP_TO]:
            line_of, order = self._reinsert(line_of, order, j)
        sol = decode(a, line_of, order)
        planned = _hours_exact(self.origin, [job.planned_start for job in jobs])
        with np.errstate(invalid="ignore"):
            moved = ~(np.abs(sol.start - planned) <= MOVED_H)  # NaN (new job) counts as moved
        touched = np.zeros(a.n_lines, dtype=bool)
        touched[line_of[moved]] = True
        focus = np.flatnonzero(touched[line_of]).astype(np.int32)
        return line_of, order, focus

    def _reinsert(
        self, line_of: np.ndarray, order: np.ndarray, j: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``j`` moved to where the plan costs least (fewest missed deadlines first)."""
        a = self.arrays
        rest = order[order != j]
        best: tuple[tuple[int, float], np.ndarray, np.ndarray] | None = None
        for li in np.flatnonzero(np.isfinite(a.proc[j])):
            on_line = np.flatnonzero(line_of[rest] == li)
            later = on_line[a.due[rest[on_line]] > a.due[j]]
            spots = {len(rest)}
            if len(later):
                spots.add(int(later[0]))
            trial_line = line_of.copy()
            trial_line[j] = li
            for at in spots:
                trial_order = np.concatenate((rest[:at], [j], rest[at:])).astype(np.int32)
                sol = decode(a, trial_line, trial_order)
                key = (int(np.count_nonzero(sol.end > a.deadline + 1e-6)), sol.cost)
                if best is None or key < best[0]:
                    best = (key, trial_line, trial_order)
        assert best is not None
        return best[1], best[2]

    def initial(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The previous plan (jobs on their planned lines, in planned order) with new jobs
        appended where they end soonest; None when nothing was planned before."""
        start = self._start()
        if start is None:
            return None
        return start.line_of.copy(), start.order.copy()

    def _start(self) -> _Start | None:
        """``initial``'s answer, worked out once."""
        if not self._initial_known:
            self._initial, self._initial_known = self._initial_start(), True
        return self._initial

    def _initial_start(self) -> _Start | None:
        jobs = self.free
        proc = self.arrays.proc
        line_index = self.line_index
        planned = [
            j
            for j, job in enumerate(jobs)
            if job.planned_line in line_index
            and math.isfinite(proc[j, line_index[job.planned_line]])
        ]
        if not planned:
            return None
        line_of = np.full(len(jobs), -1, dtype=np.int32)
        for j in planned:
            line_of[j] = line_index[jobs[j].planned_line or ""]
        origin = self.origin

        # By planned start (hours from origin are as ordered as the moments; none: last),
        # then by id.
        def when(j: int) -> tuple[bool, datetime, str]:
            start = jobs[j].planned_start
            return (start is None, start or origin, jobs[j].id)

        order = sorted(planned, key=when)
        if len(order) == len(jobs):
            return _Start(line_of, np.array(order, dtype=np.int32))
        # New jobs go, by due date, to the end of the line where they finish first.
        ends, lasts = self._line_ends(line_of, order)
        new = sorted(
            (j for j in range(len(jobs)) if line_of[j] < 0), key=lambda j: (jobs[j].due, jobs[j].id)
        )
        for j in new:
            li = self._place_at_end(self.arrays, j, ends, lasts)
            line_of[j] = li
            order.append(j)
        last = jobs[new[-1]]
        return _Start(line_of, np.array(order, dtype=np.int32), (ends, lasts), (last.due, last.id))

    def _line_ends(self, line_of: np.ndarray, order: list[int]) -> tuple[list[float], list[int]]:
        """When each line is free, and of which product, after the jobs in ``order``."""
        ends = list(self.arrays.free_at)
        lasts = list(self.arrays.last_product)
        partial = self._decode_partial(line_of, order)
        for j in order:
            li = int(line_of[j])
            if partial[j] > ends[li]:
                ends[li] = partial[j]
                lasts[li] = int(self.arrays.product[j])
        return ends, lasts

    def _place_at_end(self, arrays: Arrays, j: int, ends: list[float], lasts: list[int]) -> int:
        """The line where job ``j`` ends soonest after the work in ``ends``/``lasts``
        (which take it); the first such line on a tie."""
        best: tuple[float, int] | None = None
        for li in range(len(self.lines)):
            p_h = arrays.proc[j, li]
            if not math.isfinite(p_h):
                continue
            prev = lasts[li]
            setup = arrays.setup[li, prev, arrays.product[j]] if prev >= 0 else 0.0
            t = max(ends[li], arrays.ready[j])
            _, end = self.timelines[li].finish(t, setup + p_h)
            if best is None or end < best[0]:
                best = (end, li)
        assert best is not None
        ends[best[1]], lasts[best[1]] = best[0], int(arrays.product[j])
        return best[1]

    # --- one job more (quotes) ----------------------------------------------------------

    def with_job(self, job: Job) -> PlanModel | None:
        """This model with ``job`` (new, not pinned, its product known) added after every
        other job, the same as ``PlanModel`` of the problem with it, built from this one in
        a fraction of the time (where its work needs calendars laid out further, the windows
        and the start are worked out again); None where adding it changes others' part (its
        material netted before other new work, or new work placed after it): then build
        that problem's model.
        """
        problem = self.problem
        if (
            job.pinned_line is not None
            or job.planned_line is not None
            or job.product not in self.product_index
            or job.product not in self.fastest
        ):
            return None
        materials = problem.materials
        if (
            materials is not None
            and materials.bom.get(job.product)
            and self.netting.last is not None
            and commitment(job) <= self.netting.last
        ):
            return None
        start = self._start()
        if start is not None and start.last_new is not None and (job.due, job.id) <= start.last_new:
            return None
        until = layout_until(problem, job)
        other = copy.copy(self)
        other.problem = replace(problem, jobs=(*problem.jobs, job))
        other.free = [*self.free, job]
        other.netting = self.netting.copy()
        other.netting.take(job)
        other.materials = other.netting.plan()
        other._makers = {}
        if until != self.until:
            # Its work needs some calendar laid out further: the lines' windows, the pinned
            # work placed in them and the previous plan as a start, all afresh.
            other.until = until
            other.timelines = other._timelines(until)
            other.pinned, free_at, last_product = other._place_pinned(self._pinned_jobs)
            other.arrays = self._arrays_with(
                job,
                other,
                other._calendar_arrays(),
                np.array(free_at, dtype=np.float64),
                np.array(last_product, dtype=np.int32),
            )
            if start is None or start.last_new is not None:
                # New work is placed by the windows too: the start afresh.
                other._initial, other._initial_known = None, False
                return other
            # The previous plan's lines and order stand; when each line is free after it
            # is timed in the new windows.
            ends, lasts = other._line_ends(start.line_of, start.order.tolist())
        else:
            a = self.arrays
            other.arrays = self._arrays_with(
                job, other, (a.cal_ptr, a.cal_open, a.cal_close), a.free_at, a.last_product
            )
            if start is not None:
                if start.ends is None:
                    start.ends = self._line_ends(start.line_of, start.order.tolist())
                ends, lasts = list(start.ends[0]), list(start.ends[1])
        other._initial, other._initial_known = None, True
        if start is not None:
            j = len(self.free)
            li = other._place_at_end(other.arrays, j, ends, lasts)
            other._initial = _Start(
                np.append(start.line_of, np.int32(li)),
                np.append(start.order, np.int32(j)),
                (ends, lasts),
                (job.due, job.id),
            )
        return other

    def _arrays_with(
        self,
        job: Job,
        other: PlanModel,
        calendars: tuple[np.ndarray, np.ndarray, np.ndarray],
        free_at: np.ndarray,
        last_product: np.ndarray,
    ) -> Arrays:
        """This model's arrays with ``job``'s row added (as ``_arrays`` builds it), for
        ``other``'s materials, calendar windows and lines' state."""
        a = self.arrays
        rates = self.rates[:, self.product_index[job.product]]
        with np.errstate(divide="ignore"):
            proc = np.where(rates > 0, job.qty / np.where(rates > 0, rates, 1.0), np.inf)
        if self.closed:
            proc[sorted(self.closed)] = np.inf
        deadline = _h(job.deadline, self.origin) if job.deadline else np.inf
        return Arrays(
            proc=np.vstack((a.proc, proc)),
            ready=np.append(a.ready, other._ready_hours([job])),
            due=np.append(a.due, _hours_from(self.origin, [job.due])),
            weight=np.append(a.weight, job.weight),
            deadline=np.append(a.deadline, deadline),
            product=np.append(a.product, np.int32(self.product_index[job.product])),
            setup=a.setup,
            cal_ptr=calendars[0],
            cal_open=calendars[1],
            cal_close=calendars[2],
            free_at=free_at,
            last_product=last_product,
            flow=np.append(a.flow_array, FLOW_TIE_BREAK * np.array([job.weight])),
        )

    def _decode_partial(self, line_of: np.ndarray, order: list[int]) -> dict[int, float]:
        """End times of the planned jobs alone (new jobs not yet placed)."""
        if not order:
            return {}
        sub = np.array(order, dtype=np.int32)
        arrays = self.arrays
        small = replace(
            arrays,
            proc=arrays.proc[sub],
            ready=arrays.ready[sub],
            due=arrays.due[sub],
            weight=arrays.weight[sub],
            deadline=arrays.deadline[sub],
            product=arrays.product[sub],
            flow=None,
        )
        result = decode(small, line_of[sub], np.arange(len(order), dtype=np.int32))
        return {j: float(result.end[k]) for k, j in enumerate(order)}

    # --- the answer ---------------------------------------------------------------------

    def schedule(self, solution: Solution | None) -> Schedule:
        """The kernel's solution (and the pinned work) as a ``Schedule`` with reasons."""
        origin = self.origin
        line_ids = [ln.id for ln in self.lines]
        # (start, line index, job id, assignment, job): sorted by the first three, as the
        # schedule lists its assignments (job ids are unique, so the rest never compares).
        rows: list[tuple[datetime, int, str, Assignment, Job]] = []
        for pl in self.pinned:
            start = origin + timedelta(hours=pl.start)
            a = Assignment(
                job=pl.job.id,
                line=line_ids[pl.line],
                start=start,
                end=origin + timedelta(hours=pl.end),
                setup_h=pl.setup_h,
            )
            rows.append((start, pl.line, a.job, a, pl.job))
        if solution is not None:
            hour = timedelta(hours=1)
            for job, li, start_h, end_h, setup_h in zip(
                self.free,
                solution.line_of.tolist(),
                solution.start.tolist(),
                solution.end.tolist(),
                solution.setup_h.tolist(),
                strict=True,
            ):
                start = origin + start_h * hour
                a = Assignment(job.id, line_ids[li], start, origin + end_h * hour, setup_h)
                rows.append((start, li, job.id, a, job))
        rows.sort(key=itemgetter(0, 1, 2))
        assignments = [row[3] for row in rows]
        placed = [(row[3], row[4], tardiness_h(row[4], row[3].end)) for row in rows]
        # As ``weighted_tardiness`` sums it, in the same order.
        total = sum(job.weight * late_h for _, job, late_h in placed)
        late, at_risk = explain(self, placed)
        return Schedule(
            assignments=tuple(assignments),
            total_weighted_tardiness_h=total,
            late_jobs=late,
            at_risk=at_risk,
            purchase_requests=self.materials.purchase_requests,
            solver=SOLVER_NAME,
            idle_lines=tuple(
                IdleLine(
                    line=self.lines[li].id,
                    reason=f"takes no job: {no_working_time_reason(cal)}",
                    cause={"kind": "no_working_time", "calendar": cal},
                )
                for li, cal in sorted(self.closed.items())
            ),
        )
