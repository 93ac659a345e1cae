"""Quality of `loopline plan` on public single-machine weighted tardiness sets, through the CLI.

Every instance is written as a planner problem file (docs/contract.md: one line ``M`` at
rate 1 unit/h for product ``X``, a job of ``qty = p`` units due ``d`` hours after
``start`` with weight ``w``) and solved by running ``loopline plan`` as a process, the same
public entry point a user calls; the process start counts against the time limit. The
answer is checked independently (each job once, on the line, run time = qty / rate, no
overlap, nothing before the start; tardiness recomputed from the due dates) and its gap to
the optimum / best known value, which the planner never sees, is printed.

Sets: OR-Library wt40, wt50 (optima) and wt100 (best known), vendored in
bench/data/orlib-wt; wt1000: 1,000-job instances from the same generator (Potts & Van
Wassenhove: p ~ U[1, 100], w ~ U[1, 10], d ~ U[P(1 - TF - RDD/2), P(1 - TF + RDD/2)]),
seeded, with no published optimum: the reference is the best of a long run
(``--reference-s``) of the same command with another seed, which the table says.

``--time-limit T`` is wall seconds per instance *including the process start*: the
command gets ``--time-limit T - overhead`` where the overhead is the wall time of
``loopline plan`` on the set's first file with every due date moved to the end (start,
load, parse, construct, print, no search), measured in the same run (the table's "start s").
``--table 0.1,0.3,1,3,10`` prints the mean and max gap against the limit.

Run: ``python bench/planner.py --set wt40 [--instances 125] [--time-limit 1.0]
[--table 0.1,0.3,1,3,10 --table-instances 20]``; ``--set all`` runs wt40, wt50, wt100.
Python's bytecode cache is used if the environment allows it (an installed package has
its .pyc files); with PYTHONDONTWRITEBYTECODE and no .pyc every start recompiles numba's
sources (about +0.5 s), so ``--pycache DIR`` points PYTHONPYCACHEPREFIX at DIR instead.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "bench" / "data" / "orlib-wt"
SETS = {"wt40": (40, "wtopt40.txt"), "wt50": (50, "wtopt50.txt"), "wt100": (100, "wtbest100b.txt")}
N_INSTANCES = 125
START = datetime(2026, 12, 1, tzinfo=UTC)
LOOPLINE = [sys.executable, "-m", "loopline.cli"]
# wt1000: (TF, RDD) pairs; instances cycle through them. Loose due dates (TF 0.2) leave
# optima near 0, where a percentage says little.
WT1000_MIX = ((0.6, 0.2), (0.6, 0.6), (0.8, 0.2), (0.8, 0.6), (1.0, 0.2), (1.0, 0.6))
MIN_SEARCH_S = 0.01
# The command line as it started before (typer, rich, numba's JIT kernel): the baseline.
OLD_START = [
    sys.executable, "-c",
    "import sys; from loopline.models.planning import optimize as o; o._jit_only.on = True; "
    "from loopline.cli import app; sys.argv[0] = 'loopline'; app()",
]  # fmt: skip


@dataclass(frozen=True)
class Instance:
    """One single-machine weighted tardiness instance and its reference value."""

    name: str
    index: int
    p: np.ndarray
    w: np.ndarray
    d: np.ndarray
    best: float


@dataclass(frozen=True)
class Run:
    """One ``loopline plan`` process: its checked tardiness and wall seconds."""

    cost: float
    wall_s: float
    cpu_s: float  # user + system CPU of the process: what a busy machine does not inflate


def load_set(data: Path, name: str) -> list[Instance]:
    """All instances of an OR-Library set (n processing times, n weights, n due dates)."""
    n, best_file = SETS[name]
    numbers = np.array((data / f"{name}.txt").read_text().split(), dtype=np.int64)
    bests = [float(v) for v in (data / best_file).read_text().split()]
    if numbers.size != N_INSTANCES * 3 * n or len(bests) != N_INSTANCES:
        raise ValueError(f"{name}: unexpected file sizes")
    out = []
    for i in range(N_INSTANCES):
        block = numbers[i * 3 * n : (i + 1) * 3 * n].astype(np.float64)
        out.append(Instance(name, i + 1, block[:n], block[n : 2 * n], block[2 * n :], bests[i]))
    return out


def generate(n: int, tf: float, rdd: float, seed: int) -> tuple[np.ndarray, ...]:
    """An instance of the OR-Library generator (integer p, w, d)."""
    rng = np.random.default_rng(seed)
    p = rng.integers(1, 101, n).astype(np.float64)
    w = rng.integers(1, 11, n).astype(np.float64)
    total = p.sum()
    lo, hi = max(0.0, total * (1 - tf - rdd / 2)), total * (1 - tf + rdd / 2)
    d = np.floor(rng.uniform(lo, hi + 1, n))
    return p, w, d


def to_problem(inst: Instance) -> dict[str, Any]:
    """The instance as a planner problem file (docs/contract.md)."""

    def at(hours: float) -> str:
        return (START + timedelta(hours=float(hours))).strftime("%Y-%m-%dT%H:%M:%SZ")

    return {
        "start": at(0),
        "lines": [{"id": "M", "rates": {"X": 1.0}}],
        "jobs": [
            {"id": f"J{j:04d}", "product": "X", "qty": float(inst.p[j]), "due": at(inst.d[j]),
             "weight": float(inst.w[j])}
            for j in range(inst.p.size)
        ],
    }  # fmt: skip


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def check(problem: dict[str, Any], answer: dict[str, Any]) -> float:
    """Weighted tardiness of a checked answer; raises ValueError naming what is wrong."""
    start = _moment(problem["start"])
    rates = {ln["id"]: ln["rates"] for ln in problem["lines"]}
    jobs = {j["id"]: j for j in problem["jobs"]}
    seen: set[str] = set()
    by_line: dict[str, list[tuple[float, float, str]]] = {}
    total = 0.0
    for a in answer["assignments"]:
        job = jobs.get(a["job"])
        if job is None or a["job"] in seen:
            raise ValueError(f"job {a['job']}: unknown or assigned twice")
        seen.add(a["job"])
        rate = rates.get(a["line"], {}).get(job["product"])
        if not rate:
            raise ValueError(f"job {a['job']}: line {a['line']} cannot make {job['product']}")
        s = (_moment(a["start"]) - start).total_seconds() / 3600
        e = (_moment(a["end"]) - start).total_seconds() / 3600
        if s < -1e-6 or abs((e - s) - job["qty"] / rate) > 1e-5:
            raise ValueError(
                f"job {a['job']}: runs {e - s} h from {s} h, needs {job['qty'] / rate}"
            )
        by_line.setdefault(a["line"], []).append((s, e, a["job"]))
        due = (_moment(job["due"]) - start).total_seconds() / 3600
        total += job.get("weight", 1.0) * max(0.0, e - due)
    if seen != set(jobs):
        raise ValueError(f"jobs not assigned: {sorted(set(jobs) - seen)[:5]}")
    for line, runs in by_line.items():
        runs.sort()
        for (_, e1, j1), (s2, _, j2) in zip(runs, runs[1:], strict=False):
            if s2 < e1 - 1e-6:
                raise ValueError(f"line {line}: {j1} and {j2} overlap")
    reported = answer["total_weighted_tardiness_h"]
    if abs(reported - total) > 1e-6 * max(1.0, total):
        raise ValueError(f"reported tardiness {reported}, recomputed {total}")
    return total


def plan(
    path: Path,
    problem: dict[str, Any],
    args: list[str],
    env: dict[str, str],
    command: list[str] = LOOPLINE,
) -> Run:
    """Run ``loopline plan`` on a file; the checked cost and the process's wall time."""
    t0 = time.perf_counter()
    cpu0 = _children_cpu()
    done = subprocess.run(
        [*command, "plan", "--input", str(path), *args],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    if done.returncode != 0:
        raise RuntimeError(f"loopline plan {path.name} failed:\n{done.stderr[-2000:]}")
    return Run(check(problem, json.loads(done.stdout)), wall, cpu)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def gap(value: float, best: float) -> float:
    """Relative gap in percent (0 when both are 0; a miss of a 0 best counts as 100 %)."""
    if best <= 0:
        return 0.0 if value <= 1e-9 else 100.0
    return 100.0 * (value - best) / best


class Bench:
    """Problem files in a temporary folder and the overhead of a process on each."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.dir = Path(tempfile.mkdtemp(prefix="loopline-bench-"))
        self.files: dict[tuple[str, int], tuple[Path, dict[str, Any]]] = {}
        self.overhead: dict[str, float] = {}
        self.overhead_cpu: dict[str, float] = {}

    def file(self, inst: Instance) -> tuple[Path, dict[str, Any]]:
        key = (inst.name, inst.index)
        if key not in self.files:
            problem = to_problem(inst)
            path = self.dir / f"{inst.name}-{inst.index}.json"
            path.write_text(json.dumps(problem))
            self.files[key] = (path, problem)
        return self.files[key]

    def overhead_s(self, inst: Instance) -> float:
        """Wall time of the process with no search on the set's first instance asked for
        (instances of a set have one size), the lower of two runs."""
        if inst.name not in self.overhead:
            # Same jobs, all due at the end: nothing is late, so no search runs (``--rounds
            # 0`` still descends once, seconds at 1,000 jobs), the rest is the same work.
            idle = Instance(
                f"{inst.name}-idle", inst.index, inst.p, inst.w, np.full_like(inst.d, inst.p.sum()),
                0.0,
            )  # fmt: skip
            path, problem = self.file(idle)
            runs = [plan(path, problem, ["--rounds", "0"], self.env) for _ in range(2)]
            self.overhead[inst.name] = min(r.wall_s for r in runs)
            self.overhead_cpu[inst.name] = min(r.cpu_s for r in runs)
            # Baseline, same run: the start before the quick start and the ahead-of-time
            # kernels (the full command line, numba's JIT kernel loaded from its cache).
            old = [plan(path, problem, ["--rounds", "0"], self.env, OLD_START) for _ in range(2)]
            wall, cpu = min(r.wall_s for r in old), min(r.cpu_s for r in old)
            print(
                f"  {inst.name} start (no search): {self.overhead[inst.name]:.3f} s wall, "
                f"{self.overhead_cpu[inst.name]:.3f} s CPU; before (full CLI + JIT kernel) "
                f"{wall:.3f} s wall, {cpu:.3f} s CPU: x{cpu / self.overhead_cpu[inst.name]:.2f} CPU"
            )
        return self.overhead[inst.name]

    def run(self, inst: Instance, wall_limit: float, seed: int) -> Run:
        """One process within ``wall_limit`` seconds, process start included."""
        path, problem = self.file(inst)
        search = max(MIN_SEARCH_S, wall_limit - self.overhead_s(inst))
        return plan(path, problem, ["--time-limit", f"{search:.3f}", "--seed", str(seed)], self.env)


def wt1000(n_instances: int, bench: Bench, reference_s: float) -> list[Instance]:
    """Generated 1,000-job instances; reference: the best of a long run and the start."""
    out = []
    for i in range(n_instances):
        tf, rdd = WT1000_MIX[i % len(WT1000_MIX)]
        p, w, d = generate(1000, tf, rdd, seed=1000 + i)
        inst = Instance("wt1000", i + 1, p, w, d, float("inf"))
        ref = bench.run(inst, reference_s, seed=10_000 + i).cost
        print(f"  wt1000 #{i + 1} TF {tf} RDD {rdd}: reference ({reference_s:.0f} s run) {ref:.0f}")
        out.append(Instance("wt1000", i + 1, p, w, d, ref))
    return out


def run_set(
    bench: Bench, instances: list[Instance], wall_limit: float
) -> list[tuple[float, float]]:
    """Run and print one set at one limit; (gap %, wall s) per instance."""
    name = instances[0].name
    print(
        f"\n== {name}: {len(instances)} instances, {wall_limit} s per instance incl. process start"
    )
    print(
        f"{'inst':>4} {'best':>10} {'ours':>10} {'gap %':>7} {'wall s':>7} {'start s':>7} "
        f"{'start cpu s':>11}"
    )
    rows = []
    for inst in instances:
        r = bench.run(inst, wall_limit, seed=inst.index)
        g = gap(r.cost, inst.best)
        rows.append((g, r.wall_s))
        print(
            f"{inst.index:>4} {inst.best:>10.0f} {r.cost:>10.0f} {g:>7.3f} {r.wall_s:>7.3f} "
            f"{bench.overhead_s(inst):>7.3f} {bench.overhead_cpu[inst.name]:>11.3f}",
            flush=True,
        )
    return rows


def summary(name: str, limit: float, rows: list[tuple[float, float]]) -> str:
    gaps, walls = [g for g, _ in rows], [w for _, w in rows]
    at_best = sum(g <= 1e-9 for g in gaps)
    return (
        f"SUMMARY {name} @ {limit} s: n={len(rows)} mean gap {statistics.fmean(gaps):.3f}% "
        f"max {max(gaps):.2f}% at-best {at_best}/{len(rows)} | wall incl. start mean "
        f"{statistics.fmean(walls):.3f}s max {max(walls):.3f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=[*SETS, "wt1000", "all"], default="wt40")
    parser.add_argument("--instances", type=int, default=N_INSTANCES, help="first N instances")
    parser.add_argument(
        "--time-limit", type=float, default=1.0, help="wall s per instance incl. process start"
    )
    parser.add_argument("--table", default="", help="limits for a quality/time table: 0.1,0.3,1")
    parser.add_argument("--table-instances", type=int, default=20)
    parser.add_argument("--reference-s", type=float, default=60.0, help="wt1000 reference run")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--pycache", type=Path, help="PYTHONPYCACHEPREFIX for the processes")
    parser.add_argument("--no-cpsat", action="store_true", help="(kept for old scripts)")
    args = parser.parse_args()

    env = dict(os.environ)
    if args.pycache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(args.pycache)
    bench = Bench(env)
    # The first process may compile the kernel (about a minute): not part of any limit.
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c",
         "from loopline.models.planning.optimize import warm_up; warm_up(ahead_of_time=True)"],
        env=env, check=True,
    )  # fmt: skip
    print(f"kernel compile/load once (excluded): {time.perf_counter() - t0:.2f} s")
    names = list(SETS) if args.set == "all" else [args.set]
    summaries = []
    for name in names:
        if name == "wt1000":
            instances = wt1000(min(args.instances, 30), bench, args.reference_s)
        else:
            instances = load_set(args.data, name)[: args.instances]
        rows = run_set(bench, instances, args.time_limit)
        summaries.append(summary(name, args.time_limit, rows))
        print(summaries[-1])
        if args.table:
            limits = [float(x) for x in args.table.split(",")]
            table = instances[: args.table_instances]
            lines = [f"\nquality vs wall limit ({name}, first {len(table)} instances):"]
            lines.append(f"{'limit s':>8} {'mean gap %':>11} {'max gap %':>10} {'wall max s':>11}")
            for limit in limits:
                runs = [(i, bench.run(i, limit, i.index)) for i in table]
                g = [gap(r.cost, i.best) for i, r in runs]
                wall = max(r.wall_s for _, r in runs)
                lines.append(
                    f"{limit:>8} {statistics.fmean(g):>11.3f} {max(g):>10.2f} {wall:>11.3f}"
                )
                print(lines[-1], flush=True)
            print("\n".join(lines))
            summaries += lines
    print()
    for line in summaries:
        print(line)


if __name__ == "__main__":
    main()
