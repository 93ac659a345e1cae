"""The planner's optimiser: time a solution, build a good one fast, then improve it.

The problem arrives as plain numpy arrays (``Arrays``): jobs on parallel lines with
eligibility (``proc`` = inf where a line cannot make a job), release times, due dates,
weights, hard deadlines, sequence-dependent changeovers, working calendars and the time
and product each line becomes free with. The objective is total weighted tardiness. The
numerical work happens in ``models.planning.kernel`` (numba; ``backend.active()`` picks the
compiled build or, while that is not ready, its plain-Python twin); this module validates,
chooses the search and keeps the wall-clock budget, since compiled code cannot read the
clock: the search runs in short chunks of rounds and the time is checked in between.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from loopline.models.planning import aot

# A deadline counts as met when missed by less than this (hours; about 4 ms).
DEADLINE_TOLERANCE_H = 1e-6
# ATC look-ahead values tried by ``construct`` (slack in units of k mean run times).
ATC_K = (0.5, 1.0, 2.0, 4.0, 8.0)
# Above this many jobs the ATC dispatch looks at this many candidates per list per decision
# (earliest due dates, best weight/time ratios, same product as set up) instead of every
# waiting job, and tries only the larger look-aheads (about 0.1 s each at 10,000 jobs).
ATC_EXACT_UP_TO = 400
ATC_POOL = 32
ATC_K_LARGE = (2.0, 4.0)
# From this many jobs the construction rules run on two threads (both cores): below it a
# rule takes well under a millisecond and the hand-over costs more than it saves.
PARALLEL_FROM = 1000
# Target wall time of one kernel chunk between clock checks, seconds: a 0.1 s limit is then
# overrun by a few percent at most.
CHUNK_S = 0.004
# Iterated dynasearch: segment window (whole sequence up to this many jobs), kick of up to
# this many random swaps within this many positions, back to the best after this many
# rounds without a new best. A bigger kick escapes the deep local optima of tight due
# dates: on OR-Library wt100 (first 40, CPU-time budget, same seeds) kicks of up to 4 swaps
# within 8 positions ended 0.385 % (0.1 s) and 0.158 % (0.3 s) off the best known, up to 8
# swaps within 50 positions 0.011 % and 0.003 %; on wt40 at 0.02 s 121/125 optimal before,
# 124/125 after.
WT_WINDOW = 200
WT_KICK_SWAPS = 8
WT_KICK_REACH = 50
WT_BACK_TO_BEST = 40
# Swaps cost O(distance) each, insertions O(1), so swaps may reach less far than insertions.
# Measured on generated 1,000-job instances at 10 s: a swap reach of 60 or 20 descends
# faster but ends up to 3.6 % worse than the full window (long swaps pay), so it stays full.
WT_SWAP_WINDOW = WT_WINDOW
# The single-line search with a time limit runs a second copy in a forked process (other
# seed) from this many jobs; the parent waits at most this long past its own end for it.
MIN_FORK_JOBS = 20
FORK_GRACE_S = 0.05
# General search: positions tried around a job in its line, around its start time on
# another line (insertions), and jobs swapped there; kick moves per job count; local
# optima without a new best before going back to the best.
LS_INTRA = 8
LS_CROSS = 4
LS_CROSS_SWAP = 3
LS_KICK_PER_JOB = 0.02
LS_BACK_TO_BEST = 3
# A plan of up to this many jobs whose limit ran out before the search started still gets
# this many sweeps of visits, or up to 50 (at most LS_DESCEND_VISITS visits: some 10-50 ms).
LS_DESCEND_UP_TO = 200
LS_DESCEND_SWEEPS = 3
LS_DESCEND_VISITS = 2000


_jit_only = threading.local()


def _jit() -> ModuleType:
    """The numba kernel (``backend.active()``); imported on first need, as numba is."""
    from loopline.models.planning import backend

    return backend.active()


def _kernel(single_line: bool) -> ModuleType:
    """Which kernel module a call runs: the ahead-of-time build for the plain single-line
    case when it is built (a process then never imports numba), else ``_jit()``. A module
    forced for this thread (``backend``'s tests, the warm-up) wins."""
    if single_line and not getattr(_jit_only, "on", False):
        backend = sys.modules.get("loopline.models.planning.backend")
        forced = backend is not None and getattr(backend._local, "module", None) is not None
        fast = None if forced else aot.module()
        if fast is not None:
            return fast
    return _jit()


@dataclass(frozen=True)
class Arrays:
    """One planning problem as numpy arrays (n jobs, L lines, P products, K windows).

    proc[n, L] run hours (inf: line cannot make the job); ready, due, weight, deadline [n]
    (deadline inf: none); product[n] int32; setup[L, P, P] changeover hours; calendars as
    cal_ptr[L + 1] into cal_open/cal_close[K] (sorted disjoint windows per line, none: always
    working); free_at[L] and last_product[L] (-1: none) describe each line's state.
    flow[n] (default 0) adds ``flow[j] * end[j]`` to the cost: a small tie-breaker that
    prefers earlier finishes (and so fewer changeovers) among plans equally late.
    """

    proc: np.ndarray
    ready: np.ndarray
    due: np.ndarray
    weight: np.ndarray
    deadline: np.ndarray
    product: np.ndarray
    setup: np.ndarray
    cal_ptr: np.ndarray
    cal_open: np.ndarray
    cal_close: np.ndarray
    free_at: np.ndarray
    last_product: np.ndarray
    flow: np.ndarray | None = None

    def __post_init__(self) -> None:
        def put(name: str, dtype: type, ndim: int) -> np.ndarray:
            value: np.ndarray = np.ascontiguousarray(getattr(self, name), dtype=dtype)
            if value.ndim != ndim:
                raise ValueError(f"{name}: expected {ndim} dimensions, got {value.ndim}")
            object.__setattr__(self, name, value)
            return value

        proc = put("proc", np.float64, 2)
        n, n_lines = proc.shape
        if self.flow is None:
            object.__setattr__(self, "flow", np.zeros(n))
        for name in ("ready", "due", "weight", "deadline", "flow"):
            if put(name, np.float64, 1).shape != (n,):
                raise ValueError(f"{name}: expected shape ({n},)")
        product = put("product", np.int32, 1)
        setup = put("setup", np.float64, 3)
        cal_ptr = put("cal_ptr", np.int64, 1)
        cal_open = put("cal_open", np.float64, 1)
        cal_close = put("cal_close", np.float64, 1)
        free_at = put("free_at", np.float64, 1)
        last_product = put("last_product", np.int32, 1)
        if product.shape != (n,):
            raise ValueError(f"product: expected shape ({n},)")
        n_products = setup.shape[1]
        if setup.shape != (n_lines, n_products, n_products):
            raise ValueError(f"setup: expected shape ({n_lines}, P, P)")
        if n and (product.min() < 0 or product.max() >= n_products):
            raise ValueError("product: index outside setup")
        if free_at.shape != (n_lines,) or last_product.shape != (n_lines,):
            raise ValueError(f"free_at, last_product: expected shape ({n_lines},)")
        if last_product.size and (last_product.min() < -1 or last_product.max() >= n_products):
            raise ValueError("last_product: index outside setup")
        if cal_ptr.shape != (n_lines + 1,) or cal_ptr[0] != 0 or np.any(np.diff(cal_ptr) < 0):
            raise ValueError("cal_ptr: expected L + 1 non-decreasing offsets from 0")
        if cal_open.shape != cal_close.shape or cal_open.shape[0] != cal_ptr[-1]:
            raise ValueError("cal_open, cal_close: expected cal_ptr[-1] windows")
        if np.any(cal_close <= cal_open):
            raise ValueError("cal_open, cal_close: empty window")
        for ln in range(n_lines):
            a, b = cal_ptr[ln], cal_ptr[ln + 1]
            if b - a > 1 and np.any(cal_open[a + 1 : b] < cal_close[a : b - 1]):
                raise ValueError(f"calendar of line {ln}: windows not sorted and disjoint")
        if np.any(np.isnan(proc)) or np.any(proc < 0):
            raise ValueError("proc: expected non-negative hours or inf")
        if n and not np.all(np.isfinite(proc).any(axis=1)):
            raise ValueError("proc: a job no line can make")
        if np.any(self.weight < 0):
            raise ValueError("weight: expected >= 0")
        if np.any(self.flow_array < 0):
            raise ValueError("flow: expected >= 0")

    @property
    def flow_array(self) -> np.ndarray:
        """``flow``, never None after construction."""
        assert self.flow is not None
        return self.flow

    @property
    def n_jobs(self) -> int:
        """Number of jobs."""
        return int(self.proc.shape[0])

    @property
    def n_lines(self) -> int:
        """Number of lines."""
        return int(self.proc.shape[1])


@dataclass(frozen=True)
class Solution:
    """Each job's line, the global order (per-line sequences in it), times and the cost."""

    line_of: np.ndarray
    order: np.ndarray
    start: np.ndarray
    end: np.ndarray
    setup_h: np.ndarray
    cost: float
    rounds: int


def _eligibility(arrays: Arrays) -> tuple[np.ndarray, np.ndarray]:
    """CSR list of each job's eligible lines (ptr[n + 1], line)."""
    ok = np.isfinite(arrays.proc)
    ptr = np.zeros(arrays.n_jobs + 1, np.int64)
    np.cumsum(ok.sum(axis=1), out=ptr[1:])
    return ptr, np.nonzero(ok)[1].astype(np.int32)


def decode(
    arrays: Arrays,
    line_of: np.ndarray,
    order: np.ndarray,
    rounds: int = 0,
    *,
    kernel: ModuleType | None = None,
) -> Solution:
    """Time a solution (each job's line, and a permutation giving each line's sequence);
    ``kernel``: the module to run (default ``_jit()``)."""
    n = arrays.n_jobs
    line_of = np.ascontiguousarray(line_of, dtype=np.int32)
    order = np.ascontiguousarray(order, dtype=np.int32)
    if line_of.shape != (n,) or order.shape != (n,):
        raise ValueError(f"line_of, order: expected shape ({n},)")
    if n and not np.array_equal(np.sort(order), np.arange(n)):
        raise ValueError("order: not a permutation of the jobs")
    if n and (line_of.min() < 0 or line_of.max() >= arrays.n_lines):
        raise ValueError("line_of: unknown line")
    if n and not np.all(np.isfinite(arrays.proc[np.arange(n), line_of])):
        raise ValueError("line_of: a job on a line that cannot make it")
    a = arrays
    k = _jit() if kernel is None else kernel
    start, end, setup_h = k.decode_kernel(
        a.proc, a.ready, a.product, a.setup, a.cal_ptr, a.cal_open, a.cal_close,
        a.free_at, a.last_product, line_of, order,
    )  # fmt: skip
    cost = float(k.tardy_cost(end, a.due, a.weight)) + float(a.flow_array @ end)
    return Solution(line_of, order, start, end, setup_h, cost, rounds)


def decode_line(arrays: Arrays, line: int, seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of the jobs ``seq`` run in that order on ``line`` alone, as ``decode``
    times them there (a line's times depend on its own sequence only); the jobs must be
    ones the line can make."""
    a = arrays
    seq = np.ascontiguousarray(seq, dtype=np.int32)
    if not np.all(np.isfinite(a.proc[seq, line])):
        raise ValueError("seq: a job the line cannot make")
    lo, hi = int(a.cal_ptr[line]), int(a.cal_ptr[line + 1])
    start, end, _ = _jit().decode_kernel(
        a.proc[seq, line : line + 1], a.ready[seq], a.product[seq], a.setup[line : line + 1],
        np.array([0, hi - lo], dtype=np.int64), a.cal_open[lo:hi], a.cal_close[lo:hi],
        a.free_at[line : line + 1], a.last_product[line : line + 1],
        np.zeros(len(seq), np.int32), np.arange(len(seq), dtype=np.int32),
    )  # fmt: skip
    return start, end


def _tardiness(arrays: Arrays, sol: Solution, kernel: ModuleType) -> float:
    """Total weighted tardiness of a solution (its cost without the flow tie-breaker)."""
    return float(kernel.tardy_cost(sol.end, arrays.due, arrays.weight))


def _worse(
    arrays: Arrays, sol: Solution, than: Solution, lexicographic: bool, kernel: ModuleType
) -> bool:
    """Whether ``sol`` costs more than ``than``; ``lexicographic``: tardiness first (equal
    within float noise), then the whole cost, as the single-line search ranks them."""
    if not lexicographic:
        return sol.cost > than.cost
    mine, theirs = _tardiness(arrays, sol, kernel), _tardiness(arrays, than, kernel)
    noise = 1e-9 * max(1.0, theirs)
    if mine > theirs + noise:
        return True
    return mine >= theirs - noise and sol.cost > than.cost


def _misses(arrays: Arrays, sol: Solution, deadline: np.ndarray) -> int:
    return int(np.count_nonzero(sol.end > deadline))


def construct(arrays: Arrays, *, kernel: ModuleType | None = None) -> Solution:
    """Best of several list-scheduling and ATC-dispatch rules (fewest missed deadlines first)."""
    a = arrays
    kern = _jit() if kernel is None else kernel
    n = a.n_jobs
    if n == 0:
        empty = np.zeros(0, np.int32)
        return Solution(empty, empty, np.zeros(0), np.zeros(0), np.zeros(0), 0.0, 0)
    el_ptr, el_line = _eligibility(a)
    pmin = np.where(np.isfinite(a.proc), a.proc, np.inf).min(axis=1)
    pbar = float(pmin.mean()) or 1.0
    tight_due = np.minimum(a.due, a.deadline)
    ratio = a.weight / np.maximum(pmin, 1e-9)
    by_due = np.argsort(a.due, kind="stable").astype(np.int32)
    by_ratio = np.argsort(-ratio, kind="stable").astype(np.int32)
    orders = [np.argsort(key, kind="stable") for key in (a.due, tight_due, a.due - pmin, -ratio)]
    if np.any(np.isfinite(a.deadline)):  # promised jobs first, by deadline, then by due date
        orders.append(np.lexsort((a.due, a.deadline)))
    # What every rule needs to time a job on a line: products, changeovers, calendars,
    # each line's state, eligibility.
    lines = (
        a.product, a.setup, a.cal_ptr, a.cal_open, a.cal_close, a.free_at, a.last_product,
        el_ptr, el_line,
    )  # fmt: skip
    pool, ks = (n, ATC_K) if n <= ATC_EXACT_UP_TO else (ATC_POOL, ATC_K_LARGE)
    dues = [(k, a.due) for k in ks]
    if np.any(np.isfinite(a.deadline)):
        dues.append((2.0, tight_due))

    def list_rule(prio: np.ndarray) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
        return lambda: kern.construct_list(prio, a.proc, a.ready, *lines)

    def atc_rule(k: float, duekey: np.ndarray) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
        return lambda: kern.construct_atc(
            k, pbar, pool, duekey, by_due, by_ratio, a.proc, a.ready, a.weight, *lines
        )

    rules = [list_rule(prio) for prio in orders] + [atc_rule(k, d) for k, d in dues]
    # Only numba's build releases the GIL (the ahead-of-time module and the interpreted
    # fallback do not), and numba's build means backend is imported.
    backend = sys.modules.get("loopline.models.planning.backend")
    if n >= PARALLEL_FROM and backend is not None and kern is backend.compiled:
        # The compiled rules release the GIL: two threads use both cores. The ATC rules
        # (the slow ones at 10,000 jobs) go first so the two threads finish together.
        candidates = list(_threads().map(lambda rule: rule(), rules[::-1]))[::-1]
    else:
        candidates = [rule() for rule in rules]
    best: Solution | None = None
    best_key: tuple[int, float] = (0, 0.0)
    for line_of, order in candidates:
        sol = decode(a, line_of, order, kernel=kern)
        key = (_misses(a, sol, a.deadline), sol.cost)
        if best is None or key < best_key:
            best, best_key = sol, key
    assert best is not None
    return best


def _threads() -> ThreadPoolExecutor:
    """Two threads for the construction rules, made once per process."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(2, thread_name_prefix="planner")
    return _POOL


_POOL: ThreadPoolExecutor | None = None


def _seed_state(seed: int) -> np.ndarray:
    """A non-zero xorshift state from the seed (splitmix64 finaliser)."""
    z = (seed + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z ^= z >> 31
    return np.array([z or 1], dtype=np.uint64)


def _run_chunks(
    step: Callable[[int], int],
    cost: Callable[[], float],
    started: float,
    time_limit: float | None,
    max_rounds: int | None,
) -> int:
    """Run ``step(rounds)`` in chunks until the time or round budget is spent or cost is 0."""
    done = 0
    chunk = 1
    while cost() > 0.0:
        if max_rounds is not None:
            chunk = min(chunk, max_rounds - done)
            if chunk <= 0:
                break
        if time_limit is not None:
            left = time_limit - (time.perf_counter() - started)
            if left <= 0.0:
                break
        t = time.perf_counter()
        ran = step(chunk)
        done += ran
        if ran < chunk:  # the kernel stopped by itself (cost 0)
            break
        per_round = max((time.perf_counter() - t) / ran, 1e-7)
        target = CHUNK_S
        if time_limit is not None:
            target = min(target, max(left - (time.perf_counter() - t), 0.0) / 2)
        chunk = max(1, min(int(target / per_round), 2 * chunk + 16))
    return done


class _Helper:
    """A forked process running the single-line search with another seed on the second
    core until the same deadline; the parent keeps the better answer.

    Only with a time limit (a fixed number of rounds stays one deterministic search), at
    least 2 CPUs and ``MIN_FORK_JOBS`` jobs, and from a process with one thread (the
    command line): forking a threaded server could copy a lock another thread holds.
    """

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self.fd = fd

    @property
    def is_child(self) -> bool:
        return self.pid == 0

    @classmethod
    def start(cls, time_limit: float | None, max_rounds: int | None, n: int) -> _Helper | None:
        if (
            time_limit is None
            or max_rounds is not None
            or n < MIN_FORK_JOBS
            or not hasattr(os, "fork")
            or (os.cpu_count() or 1) < 2
            or threading.active_count() != 1
        ):
            return None
        read, write = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            return None
        if pid == 0:
            os.close(read)
            return cls(0, write)
        os.close(write)
        return cls(pid, read)

    def send(self, cost: float, seq: np.ndarray) -> None:
        data = memoryview(np.float64(cost).tobytes() + np.ascontiguousarray(seq).tobytes())
        while data:
            data = data[os.write(self.fd, data) :]

    def receive(self, n: int) -> tuple[float, np.ndarray] | None:
        """The child's (cost, sequence), or None when it is not done within a grace time."""
        want = 8 + 4 * n
        chunks: list[bytes] = []
        got = 0
        give_up = time.perf_counter() + FORK_GRACE_S
        try:
            while got < want:
                left = give_up - time.perf_counter()
                if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                    break
                chunk = os.read(self.fd, want - got)
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        finally:
            os.close(self.fd)
            if got < want:
                with contextlib.suppress(OSError):
                    os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(self.pid, 0)
        if got < want:
            return None
        raw = b"".join(chunks)
        seq = np.frombuffer(raw, dtype=np.int32, offset=8).copy()
        if not np.array_equal(np.sort(seq), np.arange(n)):
            return None
        return float(np.frombuffer(raw[:8], dtype=np.float64)[0]), seq


def _single_line_plain(arrays: Arrays, deadline: np.ndarray) -> bool:
    """True for one line without calendar, changeovers, waiting for release or deadlines
    (the flow tie-breaker is allowed: ``_wt_search`` applies it after the search)."""
    a = arrays
    if a.n_lines != 1 or a.n_jobs < 2 or np.any(np.isfinite(deadline)):
        return False
    base = a.free_at[0]
    if a.cal_ptr[1] > 0 and a.cal_close[-1] > base:
        return False
    if np.any(a.ready > base):
        return False
    used = np.unique(a.product)
    if np.any(a.setup[0][np.ix_(used, used)] != 0.0):
        return False
    return not (a.last_product[0] >= 0 and np.any(a.setup[0, a.last_product[0], used] != 0.0))


def _wt_search(
    arrays: Arrays,
    start: Solution,
    started: float,
    time_limit: float | None,
    max_rounds: int | None,
    seed: int,
    kernel: ModuleType,
) -> tuple[np.ndarray, np.ndarray, int]:
    a = arrays
    p = np.ascontiguousarray(a.proc[:, 0])
    seq = np.ascontiguousarray(start.order, dtype=np.int32).copy()
    best_seq = seq.copy()
    tardy = _tardiness(a, start, kernel)
    costs = np.array([tardy, tardy])
    ctl = np.zeros(4, np.int64)
    rng = _seed_state(seed)
    swap_window = WT_WINDOW if a.n_jobs <= WT_WINDOW else WT_SWAP_WINDOW
    params = np.array(
        [WT_WINDOW, WT_KICK_SWAPS, WT_KICK_REACH, WT_BACK_TO_BEST, swap_window], np.int64
    )
    base = float(a.free_at[0])

    def step(rounds: int) -> int:
        return int(
            kernel.wt_rounds(
                p, a.weight, a.due, base, seq, best_seq, costs, ctl, rng, params, rounds
            )
        )

    if time_limit is None:  # a fixed number of rounds: they all start from a local optimum
        step(0)
    helper = _Helper.start(time_limit, max_rounds, a.n_jobs)
    if helper is not None and helper.is_child:
        try:  # the second core: the same search from another seed, its best to the parent
            rng[:] = _seed_state(seed ^ 0x5EED)
            _run_chunks(step, lambda: float(costs[1]), started, time_limit, max_rounds)
            helper.send(float(costs[1]), best_seq)
        finally:
            os._exit(0)
    # With a time limit the first descent may not reach a local optimum in time: its best
    # so far is the answer then (the limit is the user's; the descent only improves).
    rounds = _run_chunks(step, lambda: float(costs[1]), started, time_limit, max_rounds)
    if helper is not None:
        other = helper.receive(a.n_jobs)
        if other is not None and other[0] < costs[1] - 1e-9 * max(1.0, costs[1]):
            best_seq[:] = other[1]
    if np.any(a.flow_array):
        # The tie-breaker, lexicographically after tardiness: the search above saw
        # tardiness alone (mixing the two would let it trade lateness for flow).
        kernel.wt_polish(p, a.weight, a.due, a.flow_array, base, best_seq, a.n_jobs)
    return np.zeros(a.n_jobs, np.int32), best_seq, rounds


def _general_search(
    arrays: Arrays,
    start: Solution,
    deadline: np.ndarray,
    started: float,
    time_limit: float | None,
    max_rounds: int | None,
    seed: int,
    focus: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    a = arrays
    n, n_lines = a.n_jobs, a.n_lines
    el_ptr, el_line = _eligibility(a)
    seq = np.zeros((n_lines, n), np.int32)
    cnt = np.zeros(n_lines, np.int32)
    pos = np.zeros(n, np.int32)
    for j in start.order:
        ln = start.line_of[j]
        seq[ln, cnt[ln]] = j
        pos[j] = cnt[ln]
        cnt[ln] += 1
    late = np.maximum(start.end - a.due, 0.0)
    jc = np.where(late > 0.0, a.weight * late, 0.0) + a.flow_array * start.end
    state = (
        seq, cnt, start.line_of.copy(), pos, start.start.copy(), start.end.copy(),
        start.setup_h.copy(), jc,
    )  # fmt: skip
    prob = (
        a.proc, a.ready, a.due, a.weight, a.product, a.setup, a.cal_ptr, a.cal_open,
        a.cal_close, a.free_at, a.last_product, deadline, a.flow_array,
    )  # fmt: skip
    best_seq = seq.copy()
    best_cnt = cnt.copy()
    visit = np.arange(n, dtype=np.int32)
    costs = np.array([start.cost, start.cost])
    ctl = np.zeros(5, np.int64)  # [4]: local optima reached
    rng = _seed_state(seed)
    kick = max(2, int(LS_KICK_PER_JOB * n))
    # A repair (``focus``): sweeps visit those jobs alone, and the search stops at the
    # first local optimum (no kick, which would shuffle work the change did not touch).
    m, stop_after = n, 0
    if focus is not None:
        m, stop_after = len(focus), 1
        visit[:m] = focus
    params = np.array(
        [LS_INTRA, LS_CROSS, LS_CROSS_SWAP, kick, LS_BACK_TO_BEST, m, stop_after], np.int64
    )

    def step(rounds: int) -> int:
        return int(
            _jit().ls_rounds(
                prob,
                state,
                el_ptr,
                el_line,
                best_seq,
                best_cnt,
                visit,
                costs,
                ctl,
                rng,
                params,
                rounds,
            )  # fmt: skip
        )

    def cost() -> float:  # 0 also once the repair reached its local optimum
        return 0.0 if stop_after and ctl[4] >= stop_after else float(costs.min())

    rounds = _run_chunks(step, cost, started, time_limit, max_rounds)
    if rounds == 0 and max_rounds is None and n <= LS_DESCEND_UP_TO:
        # The limit was spent before the search began (a loaded machine, a first call
        # loading the kernel): a small plan still gets a few sweeps, milliseconds.
        m = len(focus) if focus is not None else n
        rounds = step(max(LS_DESCEND_SWEEPS * m, min(50 * m, LS_DESCEND_VISITS)))
    if costs[0] < costs[1]:
        best_seq, best_cnt = seq, cnt
    line_of = np.zeros(n, np.int32)
    order = np.concatenate([best_seq[ln, : best_cnt[ln]] for ln in range(n_lines)])
    for ln in range(n_lines):
        line_of[best_seq[ln, : best_cnt[ln]]] = ln
    return line_of, order.astype(np.int32), rounds


def optimize(
    arrays: Arrays,
    *,
    time_limit: float | None = 1.0,
    max_rounds: int | None = None,
    seed: int = 0,
    initial: tuple[np.ndarray, np.ndarray] | None = None,
    started: float | None = None,
    focus: np.ndarray | None = None,
) -> Solution:
    """Improve the best of ``construct`` and ``initial`` by iterated local search.

    ``focus`` (with ``initial``): a repair of the previous plan after a change. Nothing is
    constructed; the search visits only the jobs in ``focus`` (those on the lines the
    change touched) and stops at the first local optimum or the limit.

    Stops after ``time_limit`` wall seconds or ``max_rounds`` rounds, whichever comes
    first, or at cost 0; the same inputs, seed and max_rounds give the same answer. Jobs
    meeting a finite deadline in the reference solution (``initial`` if given, else the
    constructed one) are never moved past it; the result is never worse than either start.
    """
    # ``started`` (perf_counter) lets a caller count its own preparation in the limit.
    started = time.perf_counter() if started is None else started
    if time_limit is None and max_rounds is None:
        raise ValueError("optimize: give time_limit or max_rounds")
    if focus is not None and initial is None:
        raise ValueError("optimize: focus needs initial")
    kernel = _kernel(_single_line_plain(arrays, arrays.deadline))
    ref = None if initial is None else decode(arrays, initial[0], initial[1], kernel=kernel)
    built = ref if focus is not None and ref is not None else construct(arrays, kernel=kernel)
    ref = built if ref is None else ref
    # Met within DEADLINE_TOLERANCE_H (datetimes carry microseconds, hours are floats):
    # the bound is then the reference's own end, so the job can stay exactly where it is.
    met = ref.end <= arrays.deadline + DEADLINE_TOLERANCE_H
    deadline = np.where(met, np.maximum(arrays.deadline, ref.end), np.inf)
    start = ref
    if built.cost < ref.cost and not np.any(built.end > deadline):
        start = built
    if start.cost <= 0.0 or arrays.n_jobs < 2 or (focus is not None and len(focus) == 0):
        return start
    lexicographic = _single_line_plain(arrays, deadline)
    if lexicographic:
        line_of, order, rounds = _wt_search(
            arrays, start, started, time_limit, max_rounds, seed, kernel
        )
    else:
        line_of, order, rounds = _general_search(
            arrays, start, deadline, started, time_limit, max_rounds, seed, focus
        )
    result = decode(arrays, line_of, order, rounds, kernel=kernel)
    if _worse(arrays, result, start, lexicographic, kernel) or np.any(result.end > deadline):
        return Solution(
            start.line_of, start.order, start.start, start.end, start.setup_h, start.cost, rounds
        )
    return result


def warm_up(*, ahead_of_time: bool = False) -> None:
    """Compile (or load from the cache) every kernel on a tiny instance; with
    ``ahead_of_time`` also build the single-line kernels' extension module (``aot``: about a
    minute once, skipped with a warning when there is no C compiler) that lets a
    ``loopline plan`` process of one plain line start without numba."""
    _jit_only.on = True
    try:
        _warm_up_jit()
    finally:
        _jit_only.on = False
    if ahead_of_time:
        aot.build()


def _warm_up_jit() -> None:
    n_jobs, n_lines = 4, 2
    proc = np.array([[1.0, 2.0], [2.0, np.inf], [1.5, 1.0], [np.inf, 3.0]])
    setup = np.full((n_lines, 2, 2), 0.5)
    setup[:, 0, 0] = setup[:, 1, 1] = 0.0
    arrays = Arrays(
        proc=proc,
        ready=np.array([0.0, 1.0, 0.0, 2.0]),
        due=np.array([1.0, 2.0, 2.0, 3.0]),
        weight=np.ones(n_jobs),
        deadline=np.array([np.inf, np.inf, 50.0, np.inf]),
        product=np.array([0, 1, 0, 1]),
        setup=setup,
        cal_ptr=np.array([0, 2, 2]),
        cal_open=np.array([0.0, 3.0]),
        cal_close=np.array([2.0, 10.0]),
        free_at=np.zeros(n_lines),
        last_product=np.array([-1, 0]),
    )
    optimize(arrays, time_limit=None, max_rounds=20)
    plain = Arrays(
        proc=proc[:, :1].clip(max=2.0),
        ready=np.zeros(n_jobs),
        due=np.array([1.0, 2.0, 2.0, 3.0]),
        weight=np.ones(n_jobs),
        deadline=np.full(n_jobs, np.inf),
        product=np.zeros(n_jobs),
        setup=np.zeros((1, 1, 1)),
        cal_ptr=np.zeros(2),
        cal_open=np.zeros(0),
        cal_close=np.zeros(0),
        free_at=np.zeros(1),
        last_product=np.array([-1]),
        flow=np.full(n_jobs, 1e-4),  # the tie-breaker pass as well
    )
    optimize(plain, time_limit=None, max_rounds=3)
