"""Quality of the planner's optimiser on the OR-Library weighted tardiness sets.

Each instance (one machine, n jobs with processing time, weight and due date; Beasley's
OR-Library, Crauwels, Potts & Van Wassenhove) maps to one line at rate 1, ready 0, no
calendar and no changeovers. Per instance we run ``construct`` (the ATC/list start),
``optimize`` with the time limit, and, in the same run, OR-Tools CP-SAT at the same limit
(interval variables + no_overlap, integer tardiness, minimise sum w*T, ``--workers``
search workers). Gaps are to the optimum / best known value, which the solvers never see.
JIT compile time is measured once, up front, and excluded.

Run: ``.venv/bin/python bench/planner.py --set wt40 [--instances 125] [--time-limit 1.0]
[--no-cpsat] [--data bench/data/orlib-wt]`` (the data is vendored there, with its licence
and source).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loopline.models.planning.optimize import Arrays, construct, optimize, warm_up  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "bench" / "data" / "orlib-wt"
SETS = {"wt40": (40, "wtopt40.txt"), "wt50": (50, "wtopt50.txt"), "wt100": (100, "wtbest100b.txt")}
N_INSTANCES = 125


@dataclass(frozen=True)
class Instance:
    """One single-machine weighted tardiness instance and its best known value."""

    index: int
    p: np.ndarray
    w: np.ndarray
    d: np.ndarray
    best: float


@dataclass(frozen=True)
class Result:
    """Costs and times of one instance."""

    index: int
    best: float
    atc: float
    ours: float
    ours_s: float
    rounds: int
    cpsat: float | None
    cpsat_s: float | None


def load_set(data: Path, name: str) -> list[Instance]:
    """All instances of a set (n processing times, n weights, n due dates, in turn)."""
    n, best_file = SETS[name]
    numbers = np.array((data / f"{name}.txt").read_text().split(), dtype=np.int64)
    bests = [float(v) for v in (data / best_file).read_text().split()]
    if numbers.size != N_INSTANCES * 3 * n or len(bests) != N_INSTANCES:
        raise ValueError(f"{name}: unexpected file sizes")
    out = []
    for i in range(N_INSTANCES):
        block = numbers[i * 3 * n : (i + 1) * 3 * n].astype(np.float64)
        out.append(Instance(i + 1, block[:n], block[n : 2 * n], block[2 * n :], bests[i]))
    return out


def to_arrays(inst: Instance) -> Arrays:
    """The instance as a one-line planning problem."""
    n = inst.p.size
    return Arrays(
        proc=inst.p.reshape(n, 1),
        ready=np.zeros(n),
        due=inst.d,
        weight=inst.w,
        deadline=np.full(n, np.inf),
        product=np.zeros(n, np.int32),
        setup=np.zeros((1, 1, 1)),
        cal_ptr=np.zeros(2, np.int64),
        cal_open=np.zeros(0),
        cal_close=np.zeros(0),
        free_at=np.zeros(1),
        last_product=np.array([-1], np.int32),
    )


def solve_cpsat(inst: Instance, time_limit: float, workers: int) -> tuple[float, float]:
    """CP-SAT on the same instance: (best objective found, seconds)."""
    from ortools.sat.python import cp_model

    p = inst.p.astype(int).tolist()
    w = inst.w.astype(int).tolist()
    d = inst.d.astype(int).tolist()
    horizon = sum(p)
    model = cp_model.CpModel()
    intervals, tardy = [], []
    for j in range(len(p)):
        s = model.new_int_var(0, horizon - p[j], f"s{j}")
        e = model.new_int_var(p[j], horizon, f"e{j}")
        intervals.append(model.new_interval_var(s, p[j], e, f"i{j}"))
        t = model.new_int_var(0, max(0, horizon - d[j]), f"t{j}")
        model.add(t >= e - d[j])
        tardy.append(t)
    model.add_no_overlap(intervals)
    model.minimize(sum(wj * tj for wj, tj in zip(w, tardy, strict=True)))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = workers
    t0 = time.perf_counter()
    status = solver.solve(model)
    took = time.perf_counter() - t0
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return float("inf"), took
    return float(solver.objective_value), took


def run_instance(inst: Instance, time_limit: float, cpsat_workers: int | None) -> Result:
    """Construct, optimise and (optionally) CP-SAT one instance."""
    arrays = to_arrays(inst)
    atc = construct(arrays).cost
    t0 = time.perf_counter()
    sol = optimize(arrays, time_limit=time_limit, seed=inst.index)
    took = time.perf_counter() - t0
    cp, cp_s = (None, None)
    if cpsat_workers is not None:
        cp, cp_s = solve_cpsat(inst, time_limit, cpsat_workers)
    return Result(inst.index, inst.best, atc, sol.cost, took, sol.rounds, cp, cp_s)


def gap(value: float, best: float) -> float | None:
    """Relative gap in percent; None when the best is 0 and we are not (reported apart)."""
    if best == 0:
        return 0.0 if value == 0 else None
    return 100.0 * (value - best) / best


def fmt_gap(value: float | None) -> str:
    return "   (>0)" if value is None else f"{value:7.2f}"


def summarize(name: str, results: list[Result], with_cpsat: bool) -> str:
    """One summary line for a set."""

    def stats(values: list[float]) -> tuple[float, float, int, int]:
        gaps = [gap(v, r.best) for v, r in zip(values, results, strict=True)]
        known = [g for g in gaps if g is not None]
        zero_missed = sum(g is None for g in gaps)
        hits = sum(v <= r.best for v, r in zip(values, results, strict=True))
        return statistics.fmean(known), max(known), zero_missed, hits

    atc_mean, _, _, _ = stats([r.atc for r in results])
    mean, worst, missed, hits = stats([r.ours for r in results])
    times = [r.ours_s for r in results]
    text = (
        f"SUMMARY {name}: n_inst={len(results)} ATC gap {atc_mean:.2f}% | ours mean gap "
        f"{mean:.3f}% max {worst:.2f}% at-best {hits}/{len(results)} best0-missed {missed} | "
        f"time mean {statistics.fmean(times):.3f}s max {max(times):.3f}s"
    )
    if with_cpsat:
        cp_vals = [r.cpsat if r.cpsat is not None else float("inf") for r in results]
        cp_mean, cp_worst, cp_missed, cp_hits = stats(cp_vals)
        cp_times = [r.cpsat_s or 0.0 for r in results]
        text += (
            f" | CP-SAT mean gap {cp_mean:.2f}% max {cp_worst:.2f}% at-best {cp_hits}/"
            f"{len(results)} best0-missed {cp_missed} time mean {statistics.fmean(cp_times):.3f}s"
        )
    return text


def run_set(
    data: Path, name: str, n_instances: int, time_limit: float, cpsat_workers: int | None
) -> list[Result]:
    """Run and print one set."""
    instances = load_set(data, name)[:n_instances]
    print(f"\n== {name}: {len(instances)} instances, time limit {time_limit}s per instance")
    header = (
        f"{'inst':>4} {'best':>9} {'ATC %':>7} {'ours':>9} {'ours %':>7} {'s':>6} {'rounds':>7}"
    )
    if cpsat_workers is not None:
        header += f" {'CP-SAT':>9} {'CP %':>7} {'s':>6}"
    print(header)
    results = []
    for inst in instances:
        r = run_instance(inst, time_limit, cpsat_workers)
        results.append(r)
        row = (
            f"{r.index:>4} {r.best:>9.0f} {fmt_gap(gap(r.atc, r.best))} {r.ours:>9.0f} "
            f"{fmt_gap(gap(r.ours, r.best))} {r.ours_s:>6.3f} {r.rounds:>7}"
        )
        if r.cpsat is not None:
            row += f" {r.cpsat:>9.0f} {fmt_gap(gap(r.cpsat, r.best))} {r.cpsat_s:>6.2f}"
        print(row, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=[*SETS, "all"], default="wt40")
    parser.add_argument("--instances", type=int, default=N_INSTANCES, help="first N instances")
    parser.add_argument(
        "--time-limit", type=float, default=0.95, help="seconds per instance (target: <= 1)"
    )
    parser.add_argument("--no-cpsat", action="store_true", help="skip the OR-Tools comparison")
    parser.add_argument("--workers", type=int, default=1, help="CP-SAT search workers")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()

    t0 = time.perf_counter()
    warm_up()
    print(f"JIT compile/load (warm_up, excluded): {time.perf_counter() - t0:.2f}s")
    workers = None if args.no_cpsat else args.workers
    if workers is not None:
        print(f"CP-SAT: {workers} worker(s), same time limit")
    names = list(SETS) if args.set == "all" else [args.set]
    summaries = []
    for name in names:
        results = run_set(args.data, name, args.instances, args.time_limit, workers)
        summaries.append(summarize(name, results, workers is not None))
        print(summaries[-1])
    print()
    for line in summaries:
        print(line)


if __name__ == "__main__":
    main()
