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

from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import accumulate

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
    materials = problem.materials
    if materials is None or not materials.bom:
        return MaterialPlan({}, ())
    start = problem.start
    # Supply per material as (time, cumulative qty) steps.
    arrivals: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for item in materials.items.values():
        arrivals[item.id].append((start, item.on_hand))
    for po in materials.purchase_orders:
        arrivals[po.material].append((max(po.arrives, start), po.qty))
    supply_times: dict[str, list[datetime]] = {}
    supply_cum: dict[str, list[float]] = {}
    for material, steps in arrivals.items():
        steps.sort(key=lambda s: s[0])
        supply_times[material] = [t for t, _ in steps]
        supply_cum[material] = list(accumulate(q for _, q in steps))

    def commitment(job: Job) -> tuple[int, datetime, datetime, str]:
        planned = job.planned_start if job.planned_line is not None else None
        return (0, planned, job.due, job.id) if planned else (1, job.due, job.due, job.id)

    used: dict[str, float] = defaultdict(float)
    # Running work takes its material first: it is on the line already, so it never
    # waits, but what it still needs is not free for anything else.
    for job in problem.jobs:
        if job.id in skip:
            for material, per_unit in materials.bom.get(job.product, {}).items():
                used[material] += per_unit * job.qty
    waits: dict[str, MaterialWait] = {}
    short_qty: dict[str, float] = defaultdict(float)
    short_jobs: dict[str, list[str]] = defaultdict(list)
    short_need_by: dict[str, datetime] = {}
    for job in sorted(problem.jobs, key=commitment):
        parts = materials.bom.get(job.product)
        if not parts or job.id in skip:
            continue
        for material, per_unit in parts.items():
            need = per_unit * job.qty
            used[material] += need
            times = supply_times.get(material, [])
            cum = supply_cum.get(material, [])
            k = bisect_left(cum, used[material] - SHORT_EPSILON)
            arrive = times[k] if k < len(cum) else None
            item = materials.items[material]
            buy = start + timedelta(days=item.lead_time_days)
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
            short_qty[material] += missing
            short_jobs[material].append(job.id)
            _keep_latest(waits, job.id, MaterialWait(material, buy, short=True))
            latest_start = job.due - timedelta(hours=job.qty / fastest_rate[job.product])
            need_by = max(start, latest_start)
            short_need_by[material] = min(short_need_by.get(material, need_by), need_by)
    requests = tuple(
        PurchaseRequest(
            material=material,
            qty=round(qty, 6),
            needed_by=short_need_by[material],
            arrives=start + timedelta(days=materials.items[material].lead_time_days),
            jobs=tuple(short_jobs[material]),
        )
        for material, qty in sorted(short_qty.items())
    )
    return MaterialPlan(waits, requests)


def _keep_latest(waits: dict[str, MaterialWait], job: str, wait: MaterialWait) -> None:
    if job not in waits or wait.until > waits[job].until:
        waits[job] = wait
