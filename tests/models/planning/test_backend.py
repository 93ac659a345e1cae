"""The planner's kernel builds: the plain-Python twin answers as the compiled kernel does,
and a background compile switches the optimiser over once it is loaded."""

from __future__ import annotations

import numpy as np
import pytest

from loopline.models.planning import backend, kernel
from loopline.models.planning.optimize import optimize
from tests.models.planning.test_kernel import random_instance


@pytest.fixture
def restore_backend():
    yield
    backend.load_compiled()


def test_python_kernel_is_plain_python_and_gives_the_compiled_answer() -> None:
    py = backend.python_kernel()
    assert not hasattr(py.ls_rounds, "py_func")  # not a numba dispatcher
    assert hasattr(kernel.ls_rounds, "py_func")
    arrays = random_instance(30, 3, seed=5, deadlines=True)
    answers = {}
    for name, module in (("compiled", kernel), ("python", py)):
        backend._local.module = module
        try:
            answers[name] = optimize(arrays, time_limit=None, max_rounds=60, seed=2)
        finally:
            backend._local.module = None
    a, b = answers["compiled"], answers["python"]
    assert a.cost == pytest.approx(b.cost, abs=1e-9)
    assert np.array_equal(a.line_of, b.line_of) and np.array_equal(a.order, b.order)
    assert np.allclose(a.end, b.end)


def test_background_compile_plans_in_python_until_the_compiled_kernel_is_loaded(
    restore_backend,
) -> None:
    seconds: list[float] = []
    job = backend.compile_in_background(on_ready=seconds.append)
    try:
        # Until the child has built the cache and this process loaded it: plain Python.
        assert backend.active() is backend.python_kernel() or job.done.is_set()
        arrays = random_instance(12, 2, seed=1)
        assert optimize(arrays, time_limit=0.05).cost >= 0.0
        assert job.done.wait(240), "the background compile did not finish"
    finally:
        job.stop()
    assert job.error is None
    assert backend.compiled_ready() and backend.active() is kernel
    assert len(seconds) == 1


def test_stopping_a_background_compile_ends_its_child(restore_backend) -> None:
    job = backend.compile_in_background()
    job.stop()
    assert job.done.wait(30) or not job._thread.is_alive()
    proc = job._proc
    assert proc is None or proc.poll() is not None
