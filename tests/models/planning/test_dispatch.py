"""Planner v0, the ATC dispatcher kept as a baseline: invariants, OR-Library, scale."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopline.models.planning import Job, Line, Problem
from loopline.models.planning.dispatch import ATC_K, dispatch_atc, solve
from tests.models.planning.invariants import assert_valid

SCENARIOS = Path(__file__).parent / "scenarios"
# The OR-Library reference set, vendored for the benches (bench/data/orlib-wt).
DATA = Path(__file__).resolve().parents[3] / "bench" / "data" / "orlib-wt"
START = datetime(2026, 12, 1, tzinfo=UTC)


# --- invariants on random factories ------------------------------------------------------

PRODUCTS = ("A", "B", "C", "D")


@st.composite
def problems(draw: st.DrawFn) -> Problem:
    """A small random factory: a few lines with product-specific rates, and jobs for them."""
    n_lines = draw(st.integers(1, 4))
    lines = []
    for i in range(n_lines):
        made = draw(st.lists(st.sampled_from(PRODUCTS), min_size=1, max_size=3, unique=True))
        rates = {
            p: draw(st.sampled_from([10.0, 25.0, 50.0, 60.0, 100.0]) | st.floats(0.5, 300))
            for p in made
        }
        lines.append(Line(id=f"L{i}", rates=rates))
    makeable = sorted({p for ln in lines for p in ln.rates})
    hours = st.floats(-6, 48, allow_nan=False).map(lambda h: START + timedelta(hours=h))
    jobs = []
    for i in range(draw(st.integers(0, 25))):
        product = draw(st.sampled_from(makeable))
        pinned_line = None
        if draw(st.integers(0, 5)) == 0:
            pinned_line = draw(st.sampled_from([ln.id for ln in lines if product in ln.rates]))
        jobs.append(
            Job(
                id=f"J{i:02d}",
                product=product,
                qty=draw(st.floats(0.5, 500) | st.sampled_from([60.0, 120.0])),
                due=START + timedelta(hours=draw(st.floats(0, 48))),
                weight=draw(st.sampled_from([0.0, 1.0, 3.0, 10.0]) | st.floats(0, 10)),
                release=draw(st.none() | hours),
                pinned_line=pinned_line,
                pinned_start=draw(st.none() | hours) if pinned_line else None,
            )
        )
    order = draw(st.permutations(jobs))
    return Problem(start=START, lines=tuple(lines), jobs=tuple(order))


@settings(max_examples=300, deadline=None)
@given(problems())
def test_every_schedule_is_valid(problem: Problem) -> None:
    schedule = solve(problem)
    assert_valid(problem, schedule)


@settings(max_examples=100, deadline=None)
@given(problems(), st.sampled_from([0.5, 1.0, ATC_K, 4.0]))
def test_every_single_atc_pass_is_valid_and_solve_is_no_worse(problem: Problem, k: float) -> None:
    one_pass = dispatch_atc(problem, k=k)
    assert_valid(problem, one_pass)
    default = dispatch_atc(problem, k=ATC_K)
    assert solve(problem).total_weighted_tardiness_h <= default.total_weighted_tardiness_h + 1e-9


@settings(max_examples=100, deadline=None)
@given(problems())
def test_deterministic_whatever_the_job_order(problem: Problem) -> None:
    # Ties are broken by job id, so the input order of jobs must not matter.
    first = solve(problem)
    assert solve(problem) == first
    assert solve(replace(problem, jobs=problem.jobs[::-1])) == first


def test_an_idle_line_waits_for_the_next_release() -> None:
    problem = Problem(
        start=START,
        lines=(Line("L1", {"P": 10.0}),),
        jobs=(
            Job(
                "late", "P", 10, due=START + timedelta(hours=9), release=START + timedelta(hours=5)
            ),
        ),
    )
    (only,) = solve(problem).assignments
    assert (only.start, only.end) == (START + timedelta(hours=5), START + timedelta(hours=6))


def test_pinned_work_runs_back_to_back_in_pinned_order() -> None:
    line = Line("L1", {"P": 10.0})
    problem = Problem(
        start=START,
        lines=(line, Line("L2", {"P": 1000.0})),
        jobs=(
            Job("b", "P", 10, due=START, pinned_line="L1", pinned_start=START),
            Job("a", "P", 10, due=START, pinned_line="L1", pinned_start=START + timedelta(hours=2)),
        ),
    )
    schedule = solve(problem)
    assert [(a.job, a.line, a.start) for a in schedule.assignments] == [
        ("b", "L1", START),
        ("a", "L1", START + timedelta(hours=2)),
    ]


# --- OR-Library single-machine weighted tardiness (Beasley; Crauwels, Potts & Van Wassenhove)


def _wt40(first: int | None = 10) -> tuple[list[int], list[int]]:
    """The wt40 numbers and the optima of the first ``first`` instances (None: all 125)."""
    numbers = [int(x) for x in (DATA / "wt40.txt").read_text().split()]
    optima = [int(x) for x in (DATA / "wtopt40.txt").read_text().split()]
    return numbers, optima[:first]


def _wt_problem(numbers: list[int], index: int, n: int = 40) -> Problem:
    """Instance ``index`` as one line of rate 1: qty = p, weight = w, due = start + d hours."""
    chunk = numbers[index * 3 * n : (index + 1) * 3 * n]
    p, w, d = chunk[:n], chunk[n : 2 * n], chunk[2 * n :]
    return Problem(
        start=START,
        lines=(Line("M", {"X": 1.0}),),
        jobs=tuple(
            Job(f"J{j:02d}", "X", float(p[j]), START + timedelta(hours=d[j]), float(w[j]))
            for j in range(n)
        ),
    )


def test_orlib_wt40_first_instance_within_20_percent() -> None:
    numbers, optima = _wt40()
    problem = _wt_problem(numbers, 0)
    schedule = solve(problem)
    assert_valid(problem, schedule)
    assert optima[0] == 913
    # Best of the k values solve tries reaches 913, the optimum; ATC with k = 2 alone
    # gives 1154 (+26%), which is why solve tries more than one k.
    assert schedule.total_weighted_tardiness_h <= 1.2 * optima[0]
    assert dispatch_atc(problem, k=ATC_K).total_weighted_tardiness_h == pytest.approx(1154)


def test_orlib_wt40_first_ten_never_beat_the_optimum() -> None:
    numbers, optima = _wt40()
    for index, best in enumerate(optima):
        found = solve(_wt_problem(numbers, index)).total_weighted_tardiness_h
        assert best - 1e-6 <= found <= 1.5 * best + 1


def test_orlib_wt40_mean_gap() -> None:
    numbers, optima = _wt40(None)
    gaps = []
    for index, best in enumerate(optima):
        problem = _wt_problem(numbers, index)
        found = solve(problem).total_weighted_tardiness_h
        assert found >= best - 1e-6  # nothing beats a proven optimum
        if best:
            gaps.append((found - best) / best)
    # Measured: 4.4% mean over the 124 instances with a non-zero optimum.
    assert sum(gaps) / len(gaps) < 0.06


# --- speed -------------------------------------------------------------------------------


def _big(n_jobs: int, n_lines: int, n_products: int, share: float, seed: int = 7) -> Problem:
    """A random factory where each line makes about ``share`` of the products."""
    rnd = random.Random(seed)
    products = [f"P{i}" for i in range(n_products)]
    lines = []
    for i in range(n_lines):
        rates = {p: rnd.uniform(20, 120) for p in products if rnd.random() < share}
        lines.append(Line(f"L{i:02d}", rates or {rnd.choice(products): 50.0}))
    makeable = sorted({p for ln in lines for p in ln.rates})
    horizon_h = n_jobs * 300 / (n_lines * 60)
    jobs = tuple(
        Job(
            id=f"J{j:05d}",
            product=rnd.choice(makeable),
            qty=float(rnd.randint(50, 600)),
            due=START + timedelta(hours=rnd.uniform(1, horizon_h * 1.2)),
            weight=float(rnd.choice([1, 1, 1, 3, 10])),
            release=START + timedelta(hours=rnd.uniform(0, horizon_h / 2))
            if rnd.random() < 0.3
            else None,
        )
        for j in range(n_jobs)
    )
    return Problem(start=START, lines=tuple(lines), jobs=jobs)


@pytest.mark.parametrize("share", [0.3, 1.0])
def test_ten_thousand_jobs_on_fifty_lines_is_valid(share: float) -> None:
    # Speed is the planner bench's business (bench/), never a timed unit test; measured
    # on the dev box: about 0.4 s (share 0.3) and 0.7 s (every line makes everything).
    problem = _big(10_000, 50, 20, share)
    assert_valid(problem, solve(problem))
