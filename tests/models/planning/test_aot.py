"""The single-line kernels built ahead of time: the same answers as numba's JIT build, and
a `loopline plan` process on one plain line that never imports numba, typer or rich."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from loopline.models.planning import aot
from loopline.models.planning import optimize as optimize_module
from loopline.models.planning.optimize import Arrays, construct, optimize

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "bench" / "data" / "orlib-wt"


@pytest.fixture(scope="module")
def built() -> object:
    path = aot.build()  # about a minute the first time, then found
    assert path is not None and path.is_file()
    module = aot.module()
    assert module is not None
    return module


def wt(index: int, n: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    numbers = np.array((DATA / f"wt{n}.txt").read_text().split(), dtype=np.float64)
    block = numbers[(index - 1) * 3 * n : index * 3 * n]
    return block[:n], block[n : 2 * n], block[2 * n :]


def single_line(p: np.ndarray, w: np.ndarray, d: np.ndarray) -> Arrays:
    n = p.size
    return Arrays(
        proc=p[:, None], ready=np.zeros(n), due=d, weight=w, deadline=np.full(n, np.inf),
        product=np.zeros(n, np.int32), setup=np.zeros((1, 1, 1)), cal_ptr=np.zeros(2),
        cal_open=np.zeros(0), cal_close=np.zeros(0), free_at=np.zeros(1),
        last_product=np.array([-1]), flow=1e-4 * w,
    )  # fmt: skip


@pytest.mark.parametrize("index", [1, 7, 19, 33])
def test_the_ahead_of_time_build_answers_as_the_jit_build(built: object, index: int) -> None:
    arrays = single_line(*wt(index))
    assert optimize_module._kernel(True) is built
    fast = optimize(arrays, time_limit=None, max_rounds=40, seed=index)
    optimize_module._jit_only.on = True
    try:
        assert optimize_module._kernel(True) is not built
        jit = optimize(arrays, time_limit=None, max_rounds=40, seed=index)
    finally:
        optimize_module._jit_only.on = False
    assert np.array_equal(fast.order, jit.order)
    assert fast.cost == jit.cost and fast.rounds == jit.rounds
    assert np.array_equal(fast.end, jit.end)


def test_several_lines_stay_on_the_jit_build(built: object) -> None:
    assert optimize_module._kernel(False) is not built


def _problem_file(tmp_path: Path, index: int) -> Path:
    p, w, d = wt(index)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    problem = {
        "start": start.isoformat(),
        "lines": [{"id": "M", "rates": {"X": 1.0}}],
        "jobs": [
            {"id": f"J{j:02d}", "product": "X", "qty": float(p[j]), "weight": float(w[j]),
             "due": (start + timedelta(hours=float(d[j]))).isoformat()}
            for j in range(p.size)
        ],
    }  # fmt: skip
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(problem))
    return path


def test_a_plan_of_one_plain_line_starts_without_numba_typer_or_rich(
    built: object, tmp_path: Path
) -> None:
    path = _problem_file(tmp_path, 5)
    args = ["plan", "--input", str(path), "--rounds", "30", "--seed", "4"]
    fast = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "loopline.cli", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=True,
    )  # fmt: skip
    imported = {line.split("|")[-1].strip() for line in fast.stderr.splitlines() if "|" in line}
    assert "numpy" in imported and "loopline.models.planning.solver" in imported
    for heavy in ("numba", "typer", "rich", "llvmlite"):
        assert heavy not in imported, heavy
    # The full command line (typer, the JIT kernel) prints the very same plan.
    full = subprocess.run(
        [sys.executable, "-c",
         "import sys; from loopline.models.planning import optimize as o; o._jit_only.on = True;"
         "from loopline.cli import app; sys.argv[0] = 'loopline'; app()", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=True,
    )  # fmt: skip
    assert json.loads(fast.stdout)["total_weighted_tardiness_h"] > 0
    assert fast.stdout == full.stdout


def _second_core_check() -> None:
    """Run in a fresh process: the search forks its helper only from a single-threaded
    process (as `loopline plan` is), and a test worker has other tests' threads."""
    helpers: list[object] = []
    real = optimize_module._Helper.start

    def spy(*args):  # type: ignore[no-untyped-def]
        helper = real(*args)
        if helper is not None and not helper.is_child:
            helpers.append(helper)
        return helper

    optimize_module._Helper.start = spy  # type: ignore[method-assign]
    p, w, d = wt(11, n=100)
    arrays = single_line(p, w, d)
    timed = optimize(arrays, time_limit=0.3, seed=1)
    assert len(helpers) == 1  # one child, searched and reaped
    try:
        os.waitpid(helpers[0].pid, os.WNOHANG)  # type: ignore[attr-defined]
    except ChildProcessError:
        pass
    else:
        raise AssertionError("the helper child was not reaped")
    assert np.array_equal(np.sort(timed.order), np.arange(100))
    assert timed.cost <= construct(arrays).cost
    optimize(arrays, time_limit=None, max_rounds=5, seed=1)
    assert len(helpers) == 1  # a fixed number of rounds stays one deterministic search
    print("second core ok")


def test_a_timed_single_line_search_also_runs_on_a_second_core() -> None:
    run = subprocess.run(
        [sys.executable, "-c",
         "from tests.models.planning.test_aot import _second_core_check; _second_core_check()"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "second core ok" in run.stdout
