"""`loopline plan` against OR-Tools CP-SAT on several lines with sequence-dependent setups.

The instances are unrelated parallel lines with product changeovers and total weighted
tardiness, generated and seeded here (no public set of this shape ships with Loopline;
the generator follows Vallada & Ruiz, EJOR 211(3), 2011, for run times and setups, and
Potts & Van Wassenhove for due dates: d ~ U[P(1 - TF - RDD/2), P(1 - TF + RDD/2)] with P
the mean load of a line, setups included). Every value is a whole number of minutes, so
CP-SAT's integer model is exact. Each instance is written as a planner problem file
(docs/contract.md: ``changeovers`` per line) and solved

- by ``loopline plan --input FILE --time-limit T`` as a process, for each ``--limits`` T;
- by CP-SAT given ``--cpsat-s`` seconds (default 60) on ``--workers`` threads: optional
  intervals per eligible line, a circuit per line whose arcs carry the changeover
  (``start[k] >= end[j] + setup[j][k]`` when k follows j), weighted tardiness objective.

Both answers go through the same independent check (each job once, on a line that makes
its product, no overlap, each run as long as its changeover plus qty / rate, nothing
before the start; weighted tardiness recomputed) and the table prints both objectives and
their ratio (Loopline / CP-SAT: <= 1 is as good or better), with CP-SAT's bound.

    .venv/bin/python bench/planner_cpsat.py                 # 6 instances, 1 s and 10 s vs 60 s
    .venv/bin/python bench/planner_cpsat.py --cpsat-s 10 --instances 2
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LOOPLINE = [sys.executable, "-m", "loopline.cli"]
START = datetime(2026, 12, 1, tzinfo=UTC)
# (jobs, lines, products, TF, RDD): moderate and tight due dates at three sizes.
MIX = (
    (20, 2, 4, 0.4, 0.6),
    (20, 2, 4, 0.8, 0.4),
    (40, 3, 5, 0.4, 0.6),
    (40, 3, 5, 0.8, 0.4),
    (60, 4, 6, 0.4, 0.6),
    (60, 4, 6, 0.8, 0.4),
)
RATES = (0.8, 1.0, 1.25)  # units per hour: run times stay whole numbers of minutes
TOL_H = 1e-6


@dataclass(frozen=True)
class Instance:
    name: str
    jobs: list[dict[str, Any]]  # id, product, qty, due_h, weight
    rates: list[dict[str, float]]  # per line: product -> rate
    setup: dict[str, dict[str, float]]  # product -> product -> hours (all lines)
    line_factor: list[float]  # line l's changeovers are setup * factor

    def proc_h(self, j: int, li: int) -> float | None:
        rate = self.rates[li].get(self.jobs[j]["product"])
        return None if rate is None else self.jobs[j]["qty"] / rate

    def setup_h(self, li: int, before: str | None, after: str) -> float:
        if before is None or before == after:
            return 0.0
        return self.setup[before][after] * self.line_factor[li]


def generate(n: int, n_lines: int, n_products: int, tf: float, rdd: float, seed: int) -> Instance:
    rnd = random.Random(seed)
    products = [f"P{k}" for k in range(n_products)]
    rates = []
    for _ in range(n_lines):
        made = [p for p in products if rnd.random() > 0.25] or [rnd.choice(products)]
        rates.append({p: rnd.choice(RATES) for p in made})
    for p in products:  # every product somewhere
        if not any(p in r for r in rates):
            rates[rnd.randrange(n_lines)][p] = 1.0
    # Run times U[1, 99] units at 0.8-1.25 units/h, setups U[1, 49] h between products
    # (Vallada & Ruiz's SDST50); a line's changeovers 1x or 1.5x (whole or half hours).
    setup = {a: {b: float(rnd.randint(1, 49)) for b in products if b != a} for a in products}
    factor = [rnd.choice((1.0, 1.5)) for _ in range(n_lines)]
    jobs = []
    for j in range(n):
        product = rnd.choice(products)
        jobs.append({"id": f"J{j:03d}", "product": product, "qty": float(rnd.randint(1, 99))})
    mean_p = statistics.mean(
        statistics.mean(job["qty"] / r[job["product"]] for r in rates if job["product"] in r)
        for job in jobs
    )
    mean_s = statistics.mean(v for row in setup.values() for v in row.values())
    load = n * (mean_p + mean_s / 2) / n_lines
    for job in jobs:
        lo, hi = load * (1 - tf - rdd / 2), load * (1 - tf + rdd / 2)
        job["due_h"] = float(max(0, round(rnd.uniform(lo, hi))))
        job["weight"] = float(rnd.randint(1, 10))
    name = f"n{n}-m{n_lines}-tf{tf:g}-s{seed}"
    return Instance(name, jobs, rates, setup, factor)


def to_problem(inst: Instance) -> dict[str, Any]:
    def at(hours: float) -> str:
        return (START + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")

    lines = [{"id": f"L{li}", "rates": rates} for li, rates in enumerate(inst.rates)]
    return {
        "start": at(0),
        "lines": lines,
        "jobs": [
            {
                "id": j["id"],
                "product": j["product"],
                "qty": j["qty"],
                "due": at(j["due_h"]),
                "weight": j["weight"],
            }
            for j in inst.jobs
        ],
        "changeovers": {
            f"L{li}": {
                a: {b: h * inst.line_factor[li] for b, h in row.items()}
                for a, row in inst.setup.items()
            }
            for li in range(len(inst.rates))
        },
    }


def check(inst: Instance, placed: list[tuple[str, int, float, float]]) -> float:
    """Weighted tardiness of ``placed`` (job, line, start h, end h); raises if infeasible.

    Independent of Loopline: run time and changeovers from the instance's own data."""
    index = {j["id"]: k for k, j in enumerate(inst.jobs)}
    seen = [job for job, *_ in placed]
    if sorted(seen) != sorted(index):
        raise AssertionError("not every job exactly once")
    total = 0.0
    for li in range(len(inst.rates)):
        mine = sorted((p for p in placed if p[1] == li), key=lambda p: p[2])
        prev_end, prev_product = 0.0, None
        for job, _, start, end in mine:
            k = index[job]
            proc = inst.proc_h(k, li)
            if proc is None:
                raise AssertionError(f"{job} on line {li}, which cannot make it")
            need = inst.setup_h(li, prev_product, inst.jobs[k]["product"]) + proc
            if start < prev_end - TOL_H or start < -TOL_H:
                raise AssertionError(f"{job} overlaps on line {li}")
            if end - start < need - TOL_H:
                raise AssertionError(f"{job}: {end - start:.4f} h < changeover + run {need:.4f} h")
            total += inst.jobs[k]["weight"] * max(0.0, end - inst.jobs[k]["due_h"])
            prev_end, prev_product = end, inst.jobs[k]["product"]
    return total


def run_loopline(inst: Instance, path: Path, limit: float) -> tuple[float, float]:
    """(weighted tardiness checked, wall seconds of the process)."""
    began = time.perf_counter()
    done = subprocess.run(
        [*LOOPLINE, "plan", "--input", str(path), "--time-limit", str(limit)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=limit + 120,
    )
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"loopline plan failed: {done.stderr[-1500:]}")
    answer = json.loads(done.stdout)
    lines = {f"L{li}": li for li in range(len(inst.rates))}

    def hours(text: str) -> float:
        return (datetime.fromisoformat(text.replace("Z", "+00:00")) - START).total_seconds() / 3600

    placed = [
        (a["job"], lines[a["line"]], hours(a["start"]), hours(a["end"]))
        for a in answer["assignments"]
    ]
    return check(inst, placed), wall


def run_cpsat(inst: Instance, seconds: float, workers: int) -> tuple[float, float, str]:
    """(weighted tardiness checked, CP-SAT's lower bound, status) after ``seconds``."""
    from ortools.sat.python import cp_model

    n, n_lines = len(inst.jobs), len(inst.rates)
    m = cp_model.CpModel()

    def minutes(h: float) -> int:
        v = h * 60
        assert abs(v - round(v)) < 1e-6, "instance values must be whole minutes"
        return round(v)

    dur = {
        (j, li): minutes(p)
        for j in range(n)
        for li in range(n_lines)
        if (p := inst.proc_h(j, li)) is not None
    }
    horizon = sum(max(d for (jj, _), d in dur.items() if jj == j) for j in range(n))
    horizon += n * minutes(
        max(max(r.values()) for r in inst.setup.values()) * max(inst.line_factor)
    )
    start = [m.NewIntVar(0, horizon, f"s{j}") for j in range(n)]
    end = [m.NewIntVar(0, horizon, f"e{j}") for j in range(n)]
    on: dict[tuple[int, int], Any] = {}
    intervals: list[list[Any]] = [[] for _ in range(n_lines)]
    for (j, li), d in dur.items():
        x = on[j, li] = m.NewBoolVar(f"x{j}_{li}")
        m.Add(end[j] == start[j] + d).OnlyEnforceIf(x)
        intervals[li].append(m.NewOptionalIntervalVar(start[j], d, end[j], x, f"i{j}_{li}"))
    for li in range(n_lines):  # redundant with the circuits; helps propagation
        m.AddNoOverlap(intervals[li])
    for j in range(n):
        m.AddExactlyOne(on[j, li] for li in range(n_lines) if (j, li) in on)
    for li in range(n_lines):
        mine = [j for j in range(n) if (j, li) in on]
        arcs: list[tuple[int, int, Any]] = []
        empty = m.NewBoolVar(f"empty{li}")
        arcs.append((0, 0, empty))
        for j in mine:
            x = on[j, li]
            arcs.append((j + 1, j + 1, x.Not()))
            first = m.NewBoolVar("")
            arcs.append((0, j + 1, first))
            arcs.append((j + 1, 0, m.NewBoolVar("")))
            for k in mine:
                if k == j:
                    continue
                lit = m.NewBoolVar("")
                arcs.append((j + 1, k + 1, lit))
                gap = minutes(inst.setup_h(li, inst.jobs[j]["product"], inst.jobs[k]["product"]))
                m.Add(start[k] >= end[j] + gap).OnlyEnforceIf(lit)
        m.AddCircuit(arcs)
    tardy = []
    for j, job in enumerate(inst.jobs):
        t = m.NewIntVar(0, horizon, f"t{j}")
        m.Add(t >= end[j] - minutes(job["due_h"]))
        tardy.append(int(job["weight"]) * t)
    m.Minimize(sum(tardy))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = seconds
    solver.parameters.num_workers = workers
    status = solver.Solve(m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return math.inf, 0.0, solver.StatusName(status)
    # CP-SAT's sequence per line, timed left-justified (its solution may leave idle gaps
    # that cost nothing; re-timing can only make ends earlier).
    placed = []
    for li in range(n_lines):
        mine = sorted(
            (j for j in range(n) if (j, li) in on and solver.Value(on[j, li])),
            key=lambda j: solver.Value(start[j]),
        )
        t, prev = 0.0, None
        for j in mine:
            product = inst.jobs[j]["product"]
            proc = inst.proc_h(j, li)
            assert proc is not None
            finish = t + inst.setup_h(li, prev, product) + proc
            placed.append((inst.jobs[j]["id"], li, t, finish))
            t, prev = finish, product
    bound = solver.BestObjectiveBound() / 60
    return check(inst, placed), bound, solver.StatusName(status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=len(MIX))
    parser.add_argument("--limits", default="1,10", help="loopline plan --time-limit values")
    parser.add_argument("--cpsat-s", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2, help="CP-SAT threads")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    limits = [float(x) for x in args.limits.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="loopline-cpsat-"))
    print(
        f"loopline plan (as a process) vs OR-Tools CP-SAT {args.cpsat_s:g} s on {args.workers} "
        f"threads; weighted tardiness h, both checked independently; ratio = Loopline / CP-SAT"
    )
    head = f"{'instance':<22} {'CP-SAT':>9} {'bound':>8} {'status':>8}"
    for lim in limits:
        head += f" | {f'{lim:g} s':>9} {'ratio':>6} {'wall s':>6}"
    print(head)
    ratios: dict[float, list[float]] = {lim: [] for lim in limits}
    none = 0
    for k in range(args.instances):
        n, n_lines, n_products, tf, rdd = MIX[k % len(MIX)]
        inst = generate(n, n_lines, n_products, tf, rdd, seed=args.seed + k)
        path = workdir / f"{inst.name}.json"
        path.write_text(json.dumps(to_problem(inst)))
        ours = [run_loopline(inst, path, lim) for lim in limits]
        ref, bound, status = run_cpsat(inst, args.cpsat_s, args.workers)
        row = f"{inst.name:<22} {ref:>9.1f} {bound:>8.1f} {status:>8}"
        for lim, (wt, wall) in zip(limits, ours, strict=True):
            if math.isinf(ref):  # CP-SAT found no plan in its time
                row += f" | {wt:>9.1f} {'-':>6} {wall:>6.2f}"
                continue
            ratio = wt / ref if ref > 0 else (1.0 if wt <= 0 else math.inf)
            ratios[lim].append(ratio)
            row += f" | {wt:>9.1f} {ratio:>6.3f} {wall:>6.2f}"
        none += math.isinf(ref)
        print(row, flush=True)
    if none:
        print(f"CP-SAT found no plan within {args.cpsat_s:g} s on {none} of {args.instances}")
    for lim in limits:
        r = ratios[lim]
        if not r:
            continue
        geo = math.exp(statistics.mean(math.log(max(x, 1e-9)) for x in r))
        print(
            f"loopline plan {lim:g} s: ratio to CP-SAT {args.cpsat_s:g} s geometric mean "
            f"{geo:.3f}, max {max(r):.3f}; worse on {sum(x > 1 + 1e-9 for x in r)} of {len(r)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
