"""The optimiser's kernel: exact timing, feasibility invariants, deadlines, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loopline.models.planning import kernel
from loopline.models.planning.optimize import Arrays, Solution, construct, decode, optimize

DATA = Path(__file__).resolve().parents[3] / "bench" / "data" / "orlib-wt"
WT_N = 40


def hand_example() -> Arrays:
    """Two lines, two products; line 0 works [0,4), [6,10), [12,20), line 1 always."""
    inf = np.inf
    setup = np.zeros((2, 2, 2))
    setup[0, 0, 1], setup[0, 1, 0] = 1.0, 0.5
    setup[1, 0, 1], setup[1, 1, 0] = 2.0, 0.25
    return Arrays(
        proc=np.array([[2.0, inf], [5.0, 1.0], [1.5, 2.0], [inf, 1.0]]),
        ready=np.array([0.0, 3.0, 0.0, 6.0]),
        due=np.array([3.0, 12.0, 5.0, 8.0]),
        weight=np.array([1.0, 2.0, 3.0, 4.0]),
        deadline=np.full(4, np.inf),
        product=np.array([1, 1, 0, 1]),
        setup=setup,
        cal_ptr=np.array([0, 3, 3]),
        cal_open=np.array([0.0, 6.0, 12.0]),
        cal_close=np.array([4.0, 10.0, 20.0]),
        free_at=np.array([1.0, 2.0]),
        last_product=np.array([0, -1]),
    )


def random_instance(n: int, n_lines: int, seed: int, deadlines: bool = False) -> Arrays:
    """Parallel lines with eligibility, changeovers, releases and two-shift calendars."""
    rng = np.random.default_rng(seed)
    n_products = 4
    product = rng.integers(0, n_products, n)
    proc = rng.uniform(0.5, 3.0, (n, n_lines))
    proc[rng.random((n, n_lines)) < 0.4] = np.inf
    proc[np.arange(n), rng.integers(0, n_lines, n)] = rng.uniform(0.5, 3.0, n)
    setup = rng.uniform(0.2, 1.0, (n_lines, n_products, n_products))
    for ln in range(n_lines):
        np.fill_diagonal(setup[ln], 0.0)
    days = 60
    opens = np.array([[d * 24 + 6.0, d * 24 + 14.0] for d in range(days)]).ravel()
    closes = np.array([[d * 24 + 13.5, d * 24 + 22.0] for d in range(days)]).ravel()
    cal_ptr = np.array([0] + [len(opens) * (ln + 1) for ln in range(n_lines - 1)] * 1)
    cal_ptr = np.append(cal_ptr, cal_ptr[-1])  # the last line works all the time
    load = float(np.nanmean(np.where(np.isfinite(proc), proc, np.nan))) * n / n_lines
    due = rng.uniform(0.0, 1.2 * load, n) + 6.0
    return Arrays(
        proc=proc,
        ready=np.where(rng.random(n) < 0.3, rng.uniform(0, load / 2, n), 0.0),
        due=due,
        weight=rng.integers(1, 10, n).astype(float),
        deadline=np.where(rng.random(n) < 0.3, due + 10.0, np.inf)
        if deadlines
        else np.full(n, np.inf),
        product=product,
        setup=setup,
        cal_ptr=cal_ptr,
        cal_open=np.tile(opens, n_lines - 1),
        cal_close=np.tile(closes, n_lines - 1),
        free_at=rng.uniform(0.0, 3.0, n_lines),
        last_product=rng.integers(-1, n_products, n_lines),
    )


def wt40(index: int) -> tuple[Arrays, float]:
    """Vendored OR-Library wt40 instance ``index`` (0-based) and its optimum."""
    numbers = np.array((DATA / "wt40.txt").read_text().split(), dtype=float)
    optima = [float(v) for v in (DATA / "wtopt40.txt").read_text().split()]
    block = numbers[index * 3 * WT_N : (index + 1) * 3 * WT_N]
    p, w, d = block[:WT_N], block[WT_N : 2 * WT_N], block[2 * WT_N :]
    arrays = Arrays(
        proc=p.reshape(-1, 1),
        ready=np.zeros(WT_N),
        due=d,
        weight=w,
        deadline=np.full(WT_N, np.inf),
        product=np.zeros(WT_N, np.int32),
        setup=np.zeros((1, 1, 1)),
        cal_ptr=np.zeros(2, np.int64),
        cal_open=np.zeros(0),
        cal_close=np.zeros(0),
        free_at=np.zeros(1),
        last_product=np.array([-1]),
    )
    return arrays, optima[index]


def assert_feasible(arrays: Arrays, sol: Solution) -> None:
    """Every job once, on an eligible line, no overlap, honest times and cost."""
    n = arrays.n_jobs
    assert sorted(sol.order.tolist()) == list(range(n))
    assert np.all(np.isfinite(arrays.proc[np.arange(n), sol.line_of]))
    again = decode(arrays, sol.line_of, sol.order)
    np.testing.assert_array_equal(again.start, sol.start)
    np.testing.assert_array_equal(again.end, sol.end)
    assert np.all(sol.start >= arrays.ready)
    for ln in range(arrays.n_lines):
        seq = [j for j in sol.order if sol.line_of[j] == ln]
        prev = arrays.free_at[ln]
        for j in seq:
            assert sol.start[j] >= prev
            work = sol.end[j] - sol.start[j]
            assert work >= arrays.proc[j, ln] + sol.setup_h[j] - 1e-9
            prev = sol.end[j]
    recomputed = float(np.sum(arrays.weight * np.maximum(sol.end - arrays.due, 0.0)))
    assert sol.cost == pytest.approx(recomputed, rel=1e-9, abs=1e-9)


def test_decode_matches_hand_computed_timing() -> None:
    arrays = hand_example()
    sol = decode(arrays, np.array([0, 0, 1, 1]), np.array([2, 0, 3, 1]))
    # Line 0 (free at 1 with product 0 set up): job 0 needs changeover 1 + run 2 = 3 h in
    # [0,4) -> 1..4; job 1 released at 3, line idle until the window at 6, 5 h of work:
    # 6..10 then pauses over [10,12) and ends at 13.
    # Line 1 (free at 2, nothing set up): job 2 runs 2..4 without changeover; job 3 is
    # released at 6, changeover 0 -> 1 of 2 h plus 1 h run: 6..9.
    np.testing.assert_allclose(sol.start, [1.0, 6.0, 2.0, 6.0])
    np.testing.assert_allclose(sol.end, [4.0, 13.0, 4.0, 9.0])
    np.testing.assert_allclose(sol.setup_h, [1.0, 0.0, 0.0, 2.0])
    assert sol.cost == pytest.approx(1 * 1 + 2 * 1 + 0 + 4 * 1)


def test_block_pauses_over_non_working_window() -> None:
    cal_ptr, opens, closes = np.array([0, 2]), np.array([8.0, 20.0]), np.array([16.0, 30.0])
    # Starts at the next opening, runs 8..16, pauses, resumes at 20 for the last 2 h.
    assert kernel.block_times(0, 3.0, 10.0, cal_ptr, opens, closes) == (8.0, 22.0)
    # After the last window the line works all the time.
    assert kernel.block_times(0, 25.0, 10.0, cal_ptr, opens, closes) == (25.0, 35.0)
    assert kernel.block_times(0, 40.0, 1.0, cal_ptr, opens, closes) == (40.0, 41.0)


def test_decode_refuses_an_ineligible_line() -> None:
    with pytest.raises(ValueError, match="cannot make"):
        decode(hand_example(), np.array([1, 0, 1, 1]), np.array([0, 1, 2, 3]))


def test_arrays_refuse_bad_shapes() -> None:
    arrays = hand_example()
    with pytest.raises(ValueError, match="due"):
        Arrays(**{**arrays.__dict__, "due": np.zeros(3)})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_construct_and_optimize_are_feasible(seed: int) -> None:
    arrays = random_instance(60, 3, seed)
    built = construct(arrays)
    assert_feasible(arrays, built)
    sol = optimize(arrays, time_limit=None, max_rounds=3000, seed=seed)
    assert_feasible(arrays, sol)
    assert sol.cost <= built.cost


@pytest.mark.parametrize("index", [0, 1, 2, 5, 8])
def test_optimize_reaches_known_optimum_on_wt40(index: int) -> None:
    arrays, optimum = wt40(index)
    sol = optimize(arrays, time_limit=None, max_rounds=400, seed=0)
    assert sol.cost == optimum
    assert_feasible(arrays, sol)


def test_same_seed_and_rounds_give_the_same_answer() -> None:
    arrays = random_instance(80, 3, 7, deadlines=True)
    first = optimize(arrays, time_limit=None, max_rounds=2000, seed=5)
    second = optimize(arrays, time_limit=None, max_rounds=2000, seed=5)
    np.testing.assert_array_equal(first.order, second.order)
    np.testing.assert_array_equal(first.line_of, second.line_of)
    assert first.cost == second.cost and first.rounds == second.rounds == 2000
    wt, _ = wt40(3)
    a, b = (optimize(wt, time_limit=None, max_rounds=50, seed=1) for _ in range(2))
    np.testing.assert_array_equal(a.order, b.order)


def test_never_worse_than_initial() -> None:
    arrays = random_instance(60, 3, 11, deadlines=True)
    rng = np.random.default_rng(0)
    eligible = np.isfinite(arrays.proc)
    line_of = np.array([rng.choice(np.flatnonzero(row)) for row in eligible])
    order = rng.permutation(arrays.n_jobs)
    poor = decode(arrays, line_of, order)
    sol = optimize(arrays, time_limit=None, max_rounds=500, initial=(line_of, order))
    assert sol.cost <= poor.cost
    assert_feasible(arrays, sol)
    good = optimize(arrays, time_limit=None, max_rounds=3000)
    again = optimize(arrays, time_limit=None, max_rounds=50, initial=(good.line_of, good.order))
    assert again.cost <= good.cost


def one_line(deadline_a: float) -> Arrays:
    """Job 0 is long, light and due late but promised by ``deadline_a``; 1 and 2 are urgent."""
    return Arrays(
        proc=np.array([[5.0], [1.0], [1.0]]),
        ready=np.zeros(3),
        due=np.array([100.0, 1.0, 1.0]),
        weight=np.array([1.0, 10.0, 10.0]),
        deadline=np.array([deadline_a, np.inf, np.inf]),
        product=np.zeros(3, np.int32),
        setup=np.zeros((1, 1, 1)),
        cal_ptr=np.zeros(2, np.int64),
        cal_open=np.zeros(0),
        cal_close=np.zeros(0),
        free_at=np.zeros(1),
        last_product=np.array([-1]),
    )


def test_a_deadline_met_initially_stays_met() -> None:
    arrays = one_line(5.0)
    initial = (np.zeros(3, np.int32), np.array([0, 1, 2]))
    assert decode(arrays, *initial).end[0] == 5.0
    # Moving job 0 last would cut the cost from 110 to 10, but would break its promise.
    sol = optimize(arrays, time_limit=None, max_rounds=500, initial=initial)
    assert sol.end[0] <= 5.0 and sol.cost == 110.0
    # Without an initial plan the constructed start keeps the promise too.
    sol = optimize(arrays, time_limit=None, max_rounds=500)
    assert sol.end[0] <= 5.0


def test_a_deadline_missed_initially_binds_nothing() -> None:
    arrays = one_line(5.0)
    initial = (np.zeros(3, np.int32), np.array([1, 0, 2]))  # job 0 ends at 6 > 5
    sol = optimize(arrays, time_limit=None, max_rounds=500, initial=initial)
    assert sol.cost == 10.0


def test_deadlines_hold_on_parallel_lines() -> None:
    arrays = random_instance(80, 3, 13, deadlines=True)
    ref = construct(arrays)
    met = ref.end <= arrays.deadline
    sol = optimize(arrays, time_limit=None, max_rounds=3000, initial=(ref.line_of, ref.order))
    assert np.all(sol.end[met] <= arrays.deadline[met])
    assert_feasible(arrays, sol)
