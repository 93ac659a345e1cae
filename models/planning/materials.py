"""Material netting: when each job's material is there, and what must be bought.

Each product's bill of material is netted against stock on hand and open purchase orders
(each arriving at its date), job by job in the order work is committed: running and
planned work first (by planned start), then new work by due date. A job takes material
when the supply that has arrived by then covers everything allocated before it plus its
own need. What no supply covers, or only one arriving later than a purchase placed now
would (after the material's lead time), is short: the job waits for that purchase, and
the shortage becomes a purchase request stating the date it is needed by (the latest
start that still meets the first short job's due date). So a job never waits longer for
its material when it is netted earlier: what a quote promises stays true once accepted.
"""

from __future__ import annotations

import copy
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import accumulate

import numpy as np

from loopline.models.planning.problem import Job, Problem

# A little below a whole unit: float sums of fractional BOM quantities must not read as short.
SHORT_EPSILON = 1e-6


@dataclass(frozen=True)
class PurchaseRequest:
    """Material to buy: how much, by when it is needed, when it comes if ordered now."""

    material: str
    qty: float
    needed_by: datetime
    arrives: datetime
    jobs: tuple[str, ...]


@dataclass(frozen=True)
class MaterialWait:
    """A job waits for ``material`` until ``until`` (a purchase order or a new purchase)."""

    material: str
    until: datetime
    short: bool  # True: no open supply covers it, a purchase request does


@dataclass(frozen=True)
class MaterialPlan:
    """Per job, the material it waits for longest (only jobs that wait at all)."""

    waits: dict[str, MaterialWait]
    purchase_requests: tuple[PurchaseRequest, ...]

    def ready(self, job: str) -> datetime | None:
        wait = self.waits.get(job)
        return wait.until if wait else None


def net_materials(
    problem: Problem, fastest_rate: dict[str, float], skip: frozenset[str] = frozenset()
) -> MaterialPlan:
    """Net every job's material needs; jobs in ``skip`` (running work) have theirs and
    are served first."""
    return netting(problem, fastest_rate, skip).plan()


def commitment(job: Job) -> tuple[int, datetime, datetime, str]:
    """The order jobs are netted in: planned work by planned start, then new work by due
    date (ties by id)."""
    planned = job.planned_start if job.planned_line is not None else None
    return (0, planned, job.due, job.id) if planned else (1, job.due, job.due, job.id)


def netting(
    problem: Problem, fastest_rate: dict[str, float], skip: frozenset[str] = frozenset()
) -> Netting:
    """The netting of every job (``net_materials``), kept open for jobs netted after them."""
    state = Netting(problem, fastest_rate)
    materials = problem.materials
    if materials is None or not materials.bom:
        return state
    # Running work takes its material first: it is on the line already, so it never
    # waits, but what it still needs is not free for anything else.
    for job in problem.jobs:
        if job.id in skip:
            for material, per_unit in materials.bom.get(job.product, {}).items():
                state.used[material] += per_unit * job.qty
    state.take_all(sorted((job for job in problem.jobs if job.id not in skip), key=commitment))
    return state


class Netting:
    """Material netting under way: the supply of each material over time, what the jobs
    netted so far took, and who waits for what."""

    def __init__(self, problem: Problem, fastest_rate: dict[str, float]) -> None:
        self.materials = problem.materials
        self.start = start = problem.start
        self.fastest_rate = fastest_rate
        self.used: dict[str, float] = defaultdict(float)
        self.waits: dict[str, MaterialWait] = {}
        self.short_qty: dict[str, float] = defaultdict(float)
        self.short_jobs: dict[str, list[str]] = defaultdict(list)
        self.short_need_by: dict[str, datetime] = {}
        # The latest (by ``commitment``) job netted that takes any material.
        self.last: tuple[int, datetime, datetime, str] | None = None
        self._buy: dict[str, datetime] = {}
        # Supply per material as (time, cumulative qty) steps.
        self.supply_times: dict[str, list[datetime]] = {}
        self.supply_cum: dict[str, list[float]] = {}
        if self.materials is None or not self.materials.bom:
            return
        arrivals: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
        for item in self.materials.items.values():
            arrivals[item.id].append((start, item.on_hand))
        for po in self.materials.purchase_orders:
            arrivals[po.material].append((max(po.arrives, start), po.qty))
        for material, steps in arrivals.items():
            steps.sort(key=lambda s: s[0])
            self.supply_times[material] = [t for t, _ in steps]
            self.supply_cum[material] = list(accumulate(q for _, q in steps))

    def copy(self) -> Netting:
        """Another netting from this state on (supply shared: it never changes)."""
        other = copy.copy(self)
        other.used = defaultdict(float, self.used)
        other.waits = dict(self.waits)
        other.short_qty = defaultdict(float, self.short_qty)
        other.short_jobs = defaultdict(list, {m: list(js) for m, js in self.short_jobs.items()})
        other.short_need_by = dict(self.short_need_by)
        return other

    def take_all(self, jobs: list[Job]) -> None:
        """``take`` each of ``jobs`` in turn, the same to the last bit: up to the first job
        some material is short for, per material at once (what each job has taken so far
        is a running sum, float for float), then job by job."""
        materials = self.materials
        if materials is None or not materials.bom:
            return
        start = self.start
        needs: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
        with_parts: list[int] = []
        for pos, job in enumerate(jobs):
            parts = materials.bom.get(job.product)
            if not parts:
                continue
            with_parts.append(pos)
            for rank, (material, per_unit) in enumerate(parts.items()):
                needs[material].append((pos, rank, per_unit * job.qty))
        if not with_parts:
            return
        first_short = len(jobs)
        runs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        for material, rows in needs.items():
            at = np.array([r[0] for r in rows], dtype=np.int64)
            if material not in materials.items:  # named by the check; take() says so
                first_short = min(first_short, int(at[0]))
                continue
            taken = np.cumsum(np.array([self.used[material]] + [r[2] for r in rows]))[1:]
            times = self.supply_times.get(material, [])
            k: np.ndarray = np.searchsorted(
                np.array(self.supply_cum.get(material, [])), taken - SHORT_EPSILON
            )
            buy = self._buy_by(material)
            in_time = np.array([t <= buy for t in times] + [False])  # k == len: none covers
            short: np.ndarray = ~in_time[k]
            if short.any():
                first_short = min(first_short, int(at[np.argmax(short)]))
            runs[material] = (at, k, taken, np.array([r[1] for r in rows], dtype=np.int64))
        arrivals: list[tuple[int, int, str, datetime]] = []  # (job, part, material, until)
        for material, (at, k, taken, ranks) in runs.items():
            before = at < first_short
            if not before.any():
                continue
            self.used[material] = float(taken[np.flatnonzero(before)[-1]])
            times = self.supply_times.get(material, [])
            for q in np.flatnonzero(before):
                arrive = times[int(k[q])]
                if arrive > start:
                    arrivals.append((int(at[q]), int(ranks[q]), material, arrive))
        for pos_q, _, material, arrive in sorted(arrivals):
            _keep_latest(self.waits, jobs[pos_q].id, MaterialWait(material, arrive, short=False))
        netted = bisect_left(with_parts, first_short)  # jobs with parts before the short one
        if netted:
            key = commitment(jobs[with_parts[netted - 1]])
            if self.last is None or key > self.last:
                self.last = key
        for job in jobs[first_short:]:
            self.take(job)

    def take(self, job: Job) -> None:
        """Net ``job``'s material after everything netted so far."""
        materials = self.materials
        parts = materials.bom.get(job.product) if materials is not None else None
        if not parts:
            return
        assert materials is not None
        key = commitment(job)
        if self.last is None or key > self.last:
            self.last = key
        start, used, waits = self.start, self.used, self.waits
        for material, per_unit in parts.items():
            need = per_unit * job.qty
            used[material] += need
            times = self.supply_times.get(material, [])
            cum = self.supply_cum.get(material, [])
            k = bisect_left(cum, used[material] - SHORT_EPSILON)
            arrive = times[k] if k < len(cum) else None
            buy = self._buy_by(material)
            if arrive is not None and arrive <= buy:
                if arrive > start:
                    _keep_latest(waits, job.id, MaterialWait(material, arrive, short=False))
                continue
            # Short: what has not arrived by the time a purchase placed now would (no open
            # supply covers it, or only one arriving later than that) is bought now, and
            # leaves the open supply to the jobs after this one.
            by_then = bisect_right(times, buy)
            missing = min(need, used[material] - (cum[by_then - 1] if by_then else 0.0))
            used[material] -= missing
            self.short_qty[material] += missing
            self.short_jobs[material].append(job.id)
            _keep_latest(waits, job.id, MaterialWait(material, buy, short=True))
            latest_start = job.due - timedelta(hours=job.qty / self.fastest_rate[job.product])
            need_by = max(start, latest_start)
            self.short_need_by[material] = min(self.short_need_by.get(material, need_by), need_by)

    def _buy_by(self, material: str) -> datetime:
        """When a purchase of ``material`` placed now arrives (kept per material)."""
        buy = self._buy.get(material)
        if buy is None:
            assert self.materials is not None
            days = self.materials.items[material].lead_time_days
            buy = self._buy[material] = self.start + timedelta(days=days)
        return buy

    def plan(self) -> MaterialPlan:
        """Who waits for what, and what must be bought, as netted so far."""
        materials = self.materials
        if materials is None or not materials.bom:
            return MaterialPlan({}, ())
        requests = tuple(
            PurchaseRequest(
                material=material,
                qty=round(qty, 6),
                needed_by=self.short_need_by[material],
                arrives=self.start + timedelta(days=materials.items[material].lead_time_days),
                jobs=tuple(self.short_jobs[material]),
            )
            for material, qty in sorted(self.short_qty.items())
        )
        return MaterialPlan(dict(self.waits), requests)


def _keep_latest(waits: dict[str, MaterialWait], job: str, wait: MaterialWait) -> None:
    if job not in waits or wait.until > waits[job].until:
        waits[job] = wait
