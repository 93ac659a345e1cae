"""Promise quotes: when could a new order be done, and what would it cost others.

Two answers for one request:
- ``earliest``: the order added to the current plan without moving any committed work:
  into an idle gap where it fits without making anyone end later, or else to the end of
  the line where it finishes first (its material is netted after everything already
  planned, so no one else's material moves either);
- ``prioritized``: the order placed first on a line, right after running and frozen
  work, on the line where it finishes first (ties: the fewest hours of others' slip);
  ``slips`` lists every job that would then end later, and by how much.

The current plan is read from the jobs' ``planned_line``/``planned_start``; a problem
without any plan is solved first. Accepting the ``earliest`` answer (the job added with
that placement and a deadline at its end) is kept by every later replan, because the
planner never lets a met deadline slip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from loopline.models.planning.optimize import Solution, decode, decode_line
from loopline.models.planning.problem import Issue, Job, Problem, ProblemError
from loopline.models.planning.schedule import Schedule
from loopline.models.planning.solver import PlanModel, solve

QUOTE_JOB = "__quote__"
# Jobs that end later by less than this are not reported as slipping (hours).
SLIP_EPSILON_H = 1e-6
# Idle gaps tried for the earliest placement, soonest first (each costs one decode).
GAP_TRIES = 8


@dataclass(frozen=True)
class QuoteRequest:
    """The order asked about: product, quantity, wanted-by time, weight and priority."""

    product: str
    qty: float
    due: datetime
    weight: float = 1.0
    priority: str = "normal"


@dataclass(frozen=True)
class Slip:
    """A job that would end later, from when to when."""

    job: str
    old_end: datetime
    new_end: datetime
    slip_h: float


@dataclass(frozen=True)
class Placement:
    """Where and when the quoted order would run."""

    line: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Quote:
    """The earliest placement that moves nobody, and the prioritized one with its slips."""

    earliest: Placement
    prioritized: Placement
    slips: tuple[Slip, ...]


def with_plan(problem: Problem, schedule: Schedule) -> Problem:
    """The problem with every job's ``planned_line``/``planned_start`` from ``schedule``."""
    placed = {a.job: a for a in schedule.assignments}
    jobs = tuple(
        replace(job, planned_line=placed[job.id].line, planned_start=placed[job.id].start)
        if job.id in placed and job.pinned_line is None
        else job
        for job in problem.jobs
    )
    return replace(problem, jobs=jobs)


def quote(problem: Problem, request: QuoteRequest, *, time_limit: float = 0.05) -> Quote:
    """Quote ``request`` against the plan in ``problem`` (solved first if it has none)."""
    if not any(p in ln.rates for ln in problem.lines for p in (request.product,)):
        raise ProblemError([Issue("sku", f"no line can make product {request.product!r}")])
    if not (math.isfinite(request.qty) and request.qty > 0):
        raise ProblemError([Issue("qty", "must be > 0")])
    if problem.jobs and not any(j.planned_line or j.pinned_line for j in problem.jobs):
        problem = with_plan(problem, solve(problem, time_limit=time_limit))
    job = Job(
        id=QUOTE_JOB,
        product=request.product,
        qty=request.qty,
        due=max(request.due, problem.start),
        weight=request.weight,
        priority=request.priority,
    )
    model = _base_model(problem).with_job(job) or PlanModel(
        replace(problem, jobs=(*problem.jobs, job))
    )
    me = next(j for j, free in enumerate(model.free) if free.id == QUOTE_JOB)
    start = model.initial()
    if start is None:  # the quoted job is the only one to plan
        line_of = np.zeros(len(model.free), dtype=np.int32)
        line_of[me] = int(np.argmin(model.arrays.proc[me]))
        start = (line_of, np.arange(len(model.free), dtype=np.int32))
    base_line_of, base_order = start
    base = decode(model.arrays, base_line_of, base_order)
    line, begin, end = _earliest_gap(model, base, me)
    earliest = _placement(model, line, begin, end)

    others = base_order[base_order != me]
    best: tuple[float, float, int, tuple[np.ndarray, np.ndarray]] | None = None
    for li in np.flatnonzero(np.isfinite(model.arrays.proc[me])):
        line_of = base_line_of.copy()
        line_of[me] = li
        order = np.concatenate(([me], others)).astype(np.int32)
        trial = _retimed(model, base, line_of, order, {int(li), int(base_line_of[me])})
        shifted = trial[1] - base.end
        shifted[me] = 0.0
        slip_total = float(np.sum(np.maximum(shifted, 0.0)))
        key = (float(trial[1][me]), slip_total, int(li), trial)
        if best is None or key[:3] < best[:3]:
            best = key
    assert best is not None
    trial_start, trial_end = best[3]
    slips = []
    for j in np.flatnonzero(trial_end - base.end > SLIP_EPSILON_H):
        if j == me:
            continue
        slips.append(
            Slip(
                job=model.free[j].id,
                old_end=model.origin + timedelta(hours=float(base.end[j])),
                new_end=model.origin + timedelta(hours=float(trial_end[j])),
                slip_h=float(trial_end[j] - base.end[j]),
            )
        )
    slips.sort(key=lambda s: (-s.slip_h, s.job))
    prioritized = _placement(model, best[2], trial_start[me], trial_end[me])
    if prioritized.end > earliest.end:  # going first never helps more than the free slot
        prioritized, slips = earliest, []
    return Quote(earliest=earliest, prioritized=prioritized, slips=tuple(slips))


def _base_model(problem: Problem) -> PlanModel:
    """The model of the plan quoted against, kept for the next quote on the same problem
    (a caller reusing its problem, as the API does between replans, quotes in a fraction
    of the time: each quote adds its order to this model)."""
    last = _LAST_BASE
    if last and last[0] is problem:
        model: PlanModel = last[1]
        return model
    model = PlanModel(problem)
    _LAST_BASE[:] = [problem, model]
    return model


# The last problem quoted against and its model (the problem held so its identity stays).
_LAST_BASE: list[Any] = []


def _earliest_gap(model: PlanModel, base: Solution, me: int) -> tuple[int, float, float]:
    """(line, start, end) of the quoted job placed without making anyone end later: at
    the end of a line (``base`` has it at the end of the line where it ends first), or in
    an idle gap of a line (waiting for a release, for material, for a line to come back)
    where it fits, if its material is in stock for everyone. Gaps are tried soonest first,
    at most ``GAP_TRIES`` of them.
    """
    a = model.arrays
    best = (int(base.line_of[me]), float(base.start[me]), float(base.end[me]))
    if QUOTE_JOB in model.materials.waits:
        # Its material comes only after everyone planned has theirs; run earlier, it would
        # be netted earlier too and take material promised to someone else.
        return best
    others = base.order[base.order != me]
    candidates: list[tuple[float, int, int]] = []  # (earliest possible end, line, before)
    for li in np.flatnonzero(np.isfinite(a.proc[me])):
        seq = others[base.line_of[others] == li]
        prev_end = float(a.free_at[li])
        for j in seq:
            begin = max(prev_end, float(a.ready[me]))
            if float(base.start[j]) - begin >= a.proc[me, li] and begin + a.proc[me, li] < best[2]:
                candidates.append((begin + float(a.proc[me, li]), int(li), int(j)))
            prev_end = float(base.end[j])
    for _, gap_line, before in sorted(candidates)[:GAP_TRIES]:
        at = int(np.flatnonzero(others == before)[0])
        order = np.concatenate((others[:at], [me], others[at:])).astype(np.int32)
        line_of = base.line_of.copy()
        line_of[me] = gap_line
        start, end = _retimed(model, base, line_of, order, {gap_line, int(base.line_of[me])})
        later = end - base.end > SLIP_EPSILON_H
        later[me] = False
        if not later.any() and end[me] < best[2]:
            best = (gap_line, float(start[me]), float(end[me]))
    return best


def _retimed(
    model: PlanModel, base: Solution, line_of: np.ndarray, order: np.ndarray, lines: set[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of every job in the solution ``line_of``/``order``, which differs from
    ``base`` on ``lines`` only: those lines timed afresh one by one (as ``decode`` times
    each line, on its own), every other job as in ``base``."""
    start, end = base.start.copy(), base.end.copy()
    for li in sorted(lines):
        seq = order[line_of[order] == li]
        if len(seq):
            start[seq], end[seq] = decode_line(model.arrays, li, seq)
    return start, end


def _placement(model: PlanModel, line: int, start: float, end: float) -> Placement:
    return Placement(
        line=model.lines[line].id,
        start=model.origin + timedelta(hours=float(start)),
        end=model.origin + timedelta(hours=float(end)),
    )
