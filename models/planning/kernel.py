"""Numba kernels of the planner's optimiser: timing, construction and local search.

Everything here takes plain numpy arrays (the fields of ``optimize.Arrays``) and is
compiled with ``@njit(cache=True)``; ``optimize.py`` is the typed entry point. Times are
float hours. A line's sequence is ``seq[ln, :cnt[ln]]``; a block (changeover then run) needs
``setup + proc`` working hours, pausing outside the line's calendar windows.

Two searches share one round-based, restartable interface (all state lives in arrays the
caller keeps, so running R rounds in one call or in many chunks gives the same answer):

- ``wt_rounds``: the single-line case without calendar, changeovers, releases or
  deadlines (the OR-Library problem). Iterated dynasearch (Congram, Potts & van de Velde,
  INFORMS J. Computing 14(1), 2002) with swaps plus forward/backward insertions in the
  dynamic programme (Grosso, Della Croce & Tadei, Oper. Res. Letters 32, 2004); insertion
  deltas are O(1) each from prefix completion times. One round = kick + descent.
- ``ls_rounds``: the general case. Job-centred moves (insert/swap within the line, move to
  another eligible line, swap across lines) evaluated by re-timing only the changed part
  of a line until its end times rejoin the old ones; kicks at local optima. One round =
  one job visited.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# A move must lower the cost by more than this (weighted hours) to count as better.
IMPROVE_EPS = 1e-9

# Indices into the integer control arrays of the two searches.
_C_STARTED = 0
_C_VISIT = 1
_C_QUIET = 2
_C_SINCE_BEST = 3


# --------------------------------------------------------------------------- random


@njit(cache=True)
def _rand(rng):
    """xorshift64* step; the state lives in ``rng[0]`` so chunks continue one stream."""
    x = rng[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[0] = x
    return (x * np.uint64(2685821657736338717)) >> np.uint64(11)


@njit(cache=True)
def _randint(rng, m):
    """Uniform integer in [0, m)."""
    return np.int64(_rand(rng) % np.uint64(m))


# --------------------------------------------------------------------------- timing


@njit(cache=True)
def block_times(ln, t, work, cal_ptr, cal_open, cal_close):
    """Start and end of a block needing ``work`` working hours on line ``ln``, not before ``t``."""
    lo = cal_ptr[ln]
    hi = cal_ptr[ln + 1]
    if lo == hi:
        return t, t + work
    a = lo
    b = hi
    while a < b:  # first window closing after t
        m = (a + b) // 2
        if cal_close[m] > t:
            b = m
        else:
            a = m + 1
    k = a
    if k == hi:  # after the last window the line works all the time
        return t, t + work
    start = t if t > cal_open[k] else cal_open[k]
    cur = start
    rem = work
    while True:
        avail = cal_close[k] - cur
        if rem <= avail:
            return start, cur + rem
        rem -= avail
        k += 1
        if k == hi:
            return start, cal_close[hi - 1] + rem
        cur = cal_open[k]


@njit(cache=True)
def job_times(
    j, ln, prev_end, prev_prod, proc, ready, product, setup, cal_ptr, cal_open, cal_close
):
    """(start, end, changeover hours) of job ``j`` on line ``ln`` after the given predecessor."""
    t = prev_end if prev_end > ready[j] else ready[j]
    c = 0.0 if prev_prod < 0 else setup[ln, prev_prod, product[j]]
    s, e = block_times(ln, t, c + proc[j, ln], cal_ptr, cal_open, cal_close)
    return s, e, c


@njit(cache=True)
def decode_kernel(
    proc, ready, product, setup, cal_ptr, cal_open, cal_close, free_at, last_product, line_of, order
):
    """Start, end and changeover hours of every job of a (line_of, order) solution."""
    n = order.shape[0]
    prev_end = free_at.copy()
    prev_prod = last_product.astype(np.int64)
    start = np.empty(n)
    end = np.empty(n)
    sh = np.empty(n)
    for q in range(n):
        j = order[q]
        ln = line_of[j]
        s, e, c = job_times(
            j,
            ln,
            prev_end[ln],
            prev_prod[ln],
            proc,
            ready,
            product,
            setup,
            cal_ptr,
            cal_open,
            cal_close,
        )
        start[j] = s
        end[j] = e
        sh[j] = c
        prev_end[ln] = e
        prev_prod[ln] = product[j]
    return start, end, sh


@njit(cache=True)
def tardy_cost(end, due, weight):
    """Total weighted tardiness."""
    total = 0.0
    for j in range(end.shape[0]):
        late = end[j] - due[j]
        if late > 0.0:
            total += weight[j] * late
    return total


# --------------------------------------------------------------------------- construction


@njit(cache=True, nogil=True)  # run two at once on two cores (optimize.construct)
def construct_list(
    prio,
    proc,
    ready,
    product,
    setup,
    cal_ptr,
    cal_open,
    cal_close,
    free_at,
    last_product,
    el_ptr,
    el_line,
):
    """List scheduling: jobs in ``prio`` order, each appended where it ends earliest."""
    n = prio.shape[0]
    prev_end = free_at.copy()
    prev_prod = last_product.astype(np.int64)
    line_of = np.empty(n, np.int32)
    for q in range(n):
        j = prio[q]
        best_l = -1
        best_e = np.inf
        for r in range(el_ptr[j], el_ptr[j + 1]):
            ln = el_line[r]
            s, e, c = job_times(
                j,
                ln,
                prev_end[ln],
                prev_prod[ln],
                proc,
                ready,
                product,
                setup,
                cal_ptr,
                cal_open,
                cal_close,
            )
            if best_l < 0 or e < best_e:
                best_e = e
                best_l = ln
        line_of[j] = best_l
        prev_end[best_l] = best_e
        prev_prod[best_l] = product[j]
    return line_of, prio.astype(np.int32)


@njit(cache=True, nogil=True)  # run two at once on two cores (optimize.construct)
def construct_atc(
    kval,
    pbar,
    pool,
    duekey,
    by_due,
    by_ratio,
    proc,
    ready,
    weight,
    product,
    setup,
    cal_ptr,
    cal_open,
    cal_close,
    free_at,
    last_product,
    el_ptr,
    el_line,
):
    """Dynamic ATC dispatch: the earliest-free line takes the candidate with the best index.

    The index is ATC's ``w / span * exp(-max(0, d - end) / (k * pbar))`` where ``span`` and
    ``end`` include changeover, waiting for release and calendar pauses, so setups,
    releases and calendars are priced in. Candidates are the first ``pool`` unscheduled
    jobs of the line in due-date order, in weight/time order and, in due-date order, of the
    product the line is set up for (exact when pool >= n).
    """
    n = proc.shape[0]
    L = free_at.shape[0]
    # Per-line candidate lists in the two global orders.
    cnt = np.zeros(L + 1, np.int64)
    for r in range(el_line.shape[0]):
        cnt[el_line[r] + 1] += 1
    for ln in range(L):
        cnt[ln + 1] += cnt[ln]
    list_d = np.empty(el_line.shape[0], np.int32)
    list_w = np.empty(el_line.shape[0], np.int32)
    fill = cnt[:L].copy()
    for q in range(n):
        j = by_due[q]
        for r in range(el_ptr[j], el_ptr[j + 1]):
            ln = el_line[r]
            list_d[fill[ln]] = j
            fill[ln] += 1
    fill = cnt[:L].copy()
    for q in range(n):
        j = by_ratio[q]
        for r in range(el_ptr[j], el_ptr[j + 1]):
            ln = el_line[r]
            list_w[fill[ln]] = j
            fill[ln] += 1
    # Per-product lists in due-date order, for jobs needing no changeover.
    n_prod = setup.shape[1]
    prod_ptr = np.zeros(n_prod + 1, np.int64)
    for j in range(n):
        prod_ptr[product[j] + 1] += 1
    for q in range(n_prod):
        prod_ptr[q + 1] += prod_ptr[q]
    list_p = np.empty(n, np.int32)
    head_p = prod_ptr[:n_prod].copy()
    fill_p = prod_ptr[:n_prod].copy()
    for q in range(n):
        j = by_due[q]
        list_p[fill_p[product[j]]] = j
        fill_p[product[j]] += 1
    head_d = cnt[:L].copy()
    head_w = cnt[:L].copy()
    left = np.empty(L, np.int64)
    for ln in range(L):
        left[ln] = cnt[ln + 1] - cnt[ln]
    done = np.zeros(n, np.bool_)
    prev_end = free_at.copy()
    prev_prod = last_product.astype(np.int64)
    line_of = np.empty(n, np.int32)
    order = np.empty(n, np.int32)
    scale = kval * pbar
    if scale <= 0.0:
        scale = 1.0
    for step in range(n):
        ln = -1
        for ll in range(L):
            if left[ll] > 0 and (ln < 0 or prev_end[ll] < prev_end[ln]):
                ln = ll
        t0 = prev_end[ln]
        best_j = -1
        best_v = -np.inf
        pp = prev_prod[ln]
        for which in range(3):
            if which == 0:
                lst, head, hx, stop = list_d, head_d, ln, cnt[ln + 1]
            elif which == 1:
                lst, head, hx, stop = list_w, head_w, ln, cnt[ln + 1]
            elif pp >= 0:  # same product as the line has set up: no changeover
                lst, head, hx, stop = list_p, head_p, pp, prod_ptr[pp + 1]
            else:
                break
            while head[hx] < stop and done[lst[head[hx]]]:
                head[hx] += 1
            taken = 0
            r = head[hx]
            while taken < pool and r < stop:
                j = lst[r]
                r += 1
                if done[j]:
                    continue
                taken += 1
                if which == 2 and not np.isfinite(proc[j, ln]):
                    continue
                # Rank by the end ignoring the calendar (it shifts all candidates alike).
                tj = t0 if t0 > ready[j] else ready[j]
                c = 0.0 if prev_prod[ln] < 0 else setup[ln, prev_prod[ln], product[j]]
                e = tj + c + proc[j, ln]
                span = e - t0
                if span < 1e-9:
                    span = 1e-9
                slack = duekey[j] - e
                if slack < 0.0:
                    slack = 0.0
                v = -np.inf if weight[j] <= 0.0 else np.log(weight[j] / span) - slack / scale
                if best_j < 0 or v > best_v:
                    best_v = v
                    best_j = j
        j = best_j
        s, best_e, c = job_times(
            j, ln, t0, prev_prod[ln], proc, ready, product, setup, cal_ptr, cal_open, cal_close
        )
        done[j] = True
        for r in range(el_ptr[j], el_ptr[j + 1]):
            left[el_line[r]] -= 1
        line_of[j] = ln
        order[step] = j
        prev_end[ln] = best_e
        prev_prod[ln] = product[j]
    return line_of, order


# --------------------------------------------------------------------------- single line, fast


@njit(cache=True)
def _f(w, d, j, c):
    late = c - d[j]
    return w[j] * late if late > 0.0 else 0.0


@njit(cache=True)
def _seq_cost(seq, p, w, d, base):
    c = base
    total = 0.0
    for q in range(seq.shape[0]):
        j = seq[q]
        c += p[j]
        total += _f(w, d, j, c)
    return total


@njit(cache=True)
def _dynasearch_step(seq, p, w, d, base, wmax, wswap, C, M, T, F, arg):
    """One dynasearch step (best set of independent swaps/insertions); returns the gain.

    Insertions reach ``wmax`` positions (O(1) each), swaps ``wswap`` (O(distance) each).
    """
    n = seq.shape[0]
    c = base
    for q in range(n):
        c += p[seq[q]]
        C[q] = c
    for i in range(n):
        for r in range(wmax + 1):
            M[i, r] = 0.0
            T[i, r] = -1
    # Forward insertion: job at i moved just after position k; jobs i+1..k move up by p_a.
    for i in range(n - 1):
        a = seq[i]
        pa = p[a]
        fa_i = _f(w, d, a, C[i])
        acc = 0.0
        top = min(n - 1, i + wmax)
        for k in range(i + 1, top + 1):
            m = seq[k]
            acc += _f(w, d, m, C[k] - pa) - _f(w, d, m, C[k])
            v = acc + _f(w, d, a, C[k]) - fa_i
            M[i, k - i] = v
            T[i, k - i] = 1
    # Backward insertion: job at k moved to position i; jobs i..k-1 move down by p_b.
    for k in range(1, n):
        b = seq[k]
        pb = p[b]
        fb_k = _f(w, d, b, C[k])
        acc = 0.0
        bot = max(0, k - wmax)
        for i in range(k - 1, bot - 1, -1):
            m = seq[i]
            acc += _f(w, d, m, C[i] + pb) - _f(w, d, m, C[i])
            cprev = C[i - 1] if i > 0 else base
            v = acc + _f(w, d, b, cprev + pb) - fb_k
            if v < M[i, k - i]:
                M[i, k - i] = v
                T[i, k - i] = 2
    # Swaps of positions i < k (k > i + 1; adjacent swaps equal insertions).
    for i in range(n - 2):
        a = seq[i]
        pa = p[a]
        cprev = C[i - 1] if i > 0 else base
        fa_i = _f(w, d, a, C[i])
        top = min(n - 1, i + wswap)
        for k in range(i + 2, top + 1):
            b = seq[k]
            delta = p[b] - pa
            v = _f(w, d, b, cprev + p[b]) - fa_i + _f(w, d, a, C[k]) - _f(w, d, b, C[k])
            if delta != 0.0:
                for m_ in range(i + 1, k):
                    m = seq[m_]
                    v += _f(w, d, m, C[m_] + delta) - _f(w, d, m, C[m_])
            if v < M[i, k - i]:
                M[i, k - i] = v
                T[i, k - i] = 0
    # DP over prefixes: F[k] = best gain on positions < k with disjoint segments.
    F[0] = 0.0
    for k in range(n):
        F[k + 1] = F[k]
        arg[k + 1] = -1
        bot = max(0, k - wmax)
        for i in range(bot, k):
            if T[i, k - i] < 0:
                continue
            v = F[i] + M[i, k - i]
            if v < F[k + 1] - IMPROVE_EPS:
                F[k + 1] = v
                arg[k + 1] = i
    gain = F[n]
    if gain >= -IMPROVE_EPS:
        return 0.0
    k = n
    while k > 0:
        i = arg[k]
        if i < 0:
            k -= 1
            continue
        e = k - 1
        kind = T[i, e - i]
        if kind == 0:
            tmp = seq[i]
            seq[i] = seq[e]
            seq[e] = tmp
        elif kind == 1:
            tmp = seq[i]
            for q in range(i, e):
                seq[q] = seq[q + 1]
            seq[e] = tmp
        else:
            tmp = seq[e]
            for q in range(e, i, -1):
                seq[q] = seq[q - 1]
            seq[i] = tmp
        k = i
    return gain


@njit(cache=True)
def _descend(seq, p, w, d, base, wmax, wswap, C, M, T, F, arg):
    while _dynasearch_step(seq, p, w, d, base, wmax, wswap, C, M, T, F, arg) < 0.0:
        pass
    return _seq_cost(seq, p, w, d, base)


@njit(cache=True)
def wt_rounds(p, w, d, base, seq, best_seq, costs, ctl, rng, params, rounds):
    """Iterated dynasearch on one line; returns the rounds run (stops early at cost 0).

    ``costs`` = [current, best]; ``params`` = [window, kick swaps, kick reach,
    rounds without a new best before going back to the best, swap window].

    The first descent from the start counts each dynasearch step as a round, so a call
    never runs past its budget: from a poor start on 1,000 jobs that descent alone took
    13 s, and the caller's time limit with it. ``rounds`` = 0 descends to the end.
    """
    n = seq.shape[0]
    wmax = min(params[0], max(n - 1, 1))
    wswap = min(params[4], wmax)
    C = np.empty(n)
    M = np.empty((n, wmax + 1))
    T = np.empty((n, wmax + 1), np.int8)
    F = np.empty(n + 1)
    arg = np.empty(n + 1, np.int64)
    done = 0
    if ctl[_C_STARTED] == 0:
        if rounds <= 0:
            _descend(seq, p, w, d, base, wmax, wswap, C, M, T, F, arg)
            ctl[_C_STARTED] = 1
        else:
            while done < rounds:
                done += 1
                if _dynasearch_step(seq, p, w, d, base, wmax, wswap, C, M, T, F, arg) >= 0.0:
                    ctl[_C_STARTED] = 1
                    break
        costs[0] = _seq_cost(seq, p, w, d, base)
        costs[1] = costs[0]
        best_seq[:] = seq
        if ctl[_C_STARTED] == 0:
            return done  # the budget went into the first descent
    trial = np.empty(n, seq.dtype)
    while done < rounds and costs[1] > 0.0 and n > 1:
        done += 1
        trial[:] = seq
        swaps = 1 + _randint(rng, params[1])
        reach = max(1, min(params[2], n - 1))
        for _ in range(swaps):
            i = _randint(rng, n)
            k = i + 1 + _randint(rng, reach)
            if k >= n:
                k = i - 1 - _randint(rng, min(reach, i)) if i > 0 else 1
            tmp = trial[i]
            trial[i] = trial[k]
            trial[k] = tmp
        c = _descend(trial, p, w, d, base, wmax, wswap, C, M, T, F, arg)
        if c <= costs[0]:
            seq[:] = trial
            costs[0] = c
        if c < costs[1] - IMPROVE_EPS:
            costs[1] = c
            best_seq[:] = trial
            ctl[_C_SINCE_BEST] = 0
        else:
            ctl[_C_SINCE_BEST] += 1
            if ctl[_C_SINCE_BEST] >= params[3]:
                ctl[_C_SINCE_BEST] = 0
                seq[:] = best_seq
                costs[0] = costs[1]
    return done


@njit(cache=True)
def wt_polish(p, w, d, fl, base, seq, max_passes):
    """Tie-breaker pass: adjacent swaps that never raise the weighted tardiness and lower
    it or the flow term ``sum fl[j] * C[j]``; returns the passes run.

    The dynasearch minimises tardiness alone; this orders the jobs it left equally late
    (on-time jobs among themselves, mostly) so that work finishes earlier.
    """
    n = seq.shape[0]
    passes = 0
    changed = True
    while changed and passes < max_passes:
        changed = False
        passes += 1
        c0 = base
        for q in range(n - 1):
            a = seq[q]
            b = seq[q + 1]
            pa = p[a]
            pb = p[b]
            both = c0 + pa + pb
            dwt = (
                _f(w, d, b, c0 + pb) + _f(w, d, a, both) - _f(w, d, a, c0 + pa) - _f(w, d, b, both)
            )
            dflow = fl[a] * pb - fl[b] * pa
            if dwt < -IMPROVE_EPS or (dwt <= 0.0 and dflow < -IMPROVE_EPS * 1e-3):
                seq[q] = b
                seq[q + 1] = a
                c0 += pb
                changed = True
            else:
                c0 += pa
    return passes


# --------------------------------------------------------------------------- general search
#
# ``prob`` = (proc, ready, due, weight, product, setup, cal_ptr, cal_open, cal_close,
#             free_at, last_product, dl, flow) with dl the active deadlines (inf: none);
# ``state`` = (seq, cnt, lin, pos, st, en, sh, jc): line sequences and counts, each job's
#             line, position, start, end, changeover and cost (weighted tardiness plus
#             the flow tie-breaker).


@njit(cache=True)
def _job_at(seq, ln, p, kind, a, b, x):
    """Job at position ``p`` of line ``ln`` after a move, without building the sequence.

    kind 0: move position a to b; 1: swap positions a and b; 2: remove position a;
    3: insert job x at position a; 4: replace position a by job x.
    """
    if kind == 0:
        if a < b:
            if p < a or p > b:
                return seq[ln, p]
            if p == b:
                return seq[ln, a]
            return seq[ln, p + 1]
        if p < b or p > a:
            return seq[ln, p]
        if p == b:
            return seq[ln, a]
        return seq[ln, p - 1]
    if kind == 1:
        if p == a:
            return seq[ln, b]
        if p == b:
            return seq[ln, a]
        return seq[ln, p]
    if kind == 2:
        return seq[ln, p] if p < a else seq[ln, p + 1]
    if kind == 3:
        if p < a:
            return seq[ln, p]
        if p == a:
            return x
        return seq[ln, p - 1]
    return x if p == a else seq[ln, p]


@njit(cache=True)
def _span(kind, a, b, n_l):
    """(first changed position, last changed position, new length) of a move."""
    if kind <= 1:
        return min(a, b), max(a, b), n_l
    if kind == 2:
        return a, a - 1, n_l - 1
    if kind == 3:
        return a, a, n_l + 1
    return a, a, n_l


@njit(cache=True)
def eval_move(prob, state, kind, ln, a, b, x, cutoff):
    """Cost change of line ``ln`` under a move (``inf``: breaks a deadline or cannot beat cutoff).

    Re-times from the first changed position until a job ends exactly when it did before
    (then the rest is unchanged). Past the changed part, once a job ends no earlier than
    before, every later job does too, so the walk stops as soon as the delta reaches cutoff.
    """
    (proc, ready, due, weight, product, setup, cal_ptr, cal_open, cal_close, free_at, lastp, dl,
     flow) = prob  # fmt: skip
    seq, cnt, lin, pos, st, en, sh, jc = state
    lo, hi, newlen = _span(kind, a, b, cnt[ln])
    if lo > 0:
        pj = seq[ln, lo - 1]
        prev_end = en[pj]
        prev_prod = np.int64(product[pj])
    else:
        prev_end = free_at[ln]
        prev_prod = np.int64(lastp[ln])
    delta = 0.0
    for p in range(lo, newlen):
        j = _job_at(seq, ln, p, kind, a, b, x)
        s, e, c = job_times(
            j, ln, prev_end, prev_prod, proc, ready, product, setup, cal_ptr, cal_open, cal_close
        )
        if e > dl[j]:
            return np.inf
        late = e - due[j]
        delta += (weight[j] * late if late > 0.0 else 0.0) + flow[j] * e - jc[j]
        if p > hi:
            if e == en[j]:
                break
            if e > en[j] and delta >= cutoff:
                return np.inf
        prev_end = e
        prev_prod = np.int64(product[j])
    return delta


@njit(cache=True)
def retime_line(prob, state, ln, lo):
    """Re-time line ``ln`` from position ``lo``; returns the change in total cost."""
    (proc, ready, due, weight, product, setup, cal_ptr, cal_open, cal_close, free_at, lastp, dl,
     flow) = prob  # fmt: skip
    seq, cnt, lin, pos, st, en, sh, jc = state
    if lo > 0:
        pj = seq[ln, lo - 1]
        prev_end = en[pj]
        prev_prod = np.int64(product[pj])
    else:
        prev_end = free_at[ln]
        prev_prod = np.int64(lastp[ln])
    delta = 0.0
    for p in range(lo, cnt[ln]):
        j = seq[ln, p]
        pos[j] = p
        lin[j] = ln
        s, e, c = job_times(
            j, ln, prev_end, prev_prod, proc, ready, product, setup, cal_ptr, cal_open, cal_close
        )
        late = e - due[j]
        cj = (weight[j] * late if late > 0.0 else 0.0) + flow[j] * e
        delta += cj - jc[j]
        st[j] = s
        en[j] = e
        sh[j] = c
        jc[j] = cj
        prev_end = e
        prev_prod = np.int64(product[j])
    return delta


@njit(cache=True)
def _apply(state, kind, ln, a, b, x):
    """Change line ``ln``'s sequence by a move (see ``_job_at``); returns where it changed."""
    seq, cnt, lin, pos, st, en, sh, jc = state
    if kind == 0:
        j = seq[ln, a]
        if a < b:
            for q in range(a, b):
                seq[ln, q] = seq[ln, q + 1]
        else:
            for q in range(a, b, -1):
                seq[ln, q] = seq[ln, q - 1]
        seq[ln, b] = j
        return min(a, b)
    if kind == 1:
        j = seq[ln, a]
        seq[ln, a] = seq[ln, b]
        seq[ln, b] = j
        return min(a, b)
    if kind == 2:
        for q in range(a, cnt[ln] - 1):
            seq[ln, q] = seq[ln, q + 1]
        cnt[ln] -= 1
        return a
    if kind == 3:
        for q in range(cnt[ln], a, -1):
            seq[ln, q] = seq[ln, q - 1]
        seq[ln, a] = x
        cnt[ln] += 1
        return a
    seq[ln, a] = x
    return a


@njit(cache=True)
def _do(prob, state, kind, ln, a, b, x):
    """Apply a move to line ``ln`` and re-time it; returns the change in total cost."""
    lo = _apply(state, kind, ln, a, b, x)
    return retime_line(prob, state, ln, lo)


@njit(cache=True)
def _first_at_or_after(seq, ln, n_l, st, t):
    """First position of line ``ln`` whose job starts at or after ``t`` (starts are sorted)."""
    a = 0
    b = n_l
    while a < b:
        m = (a + b) // 2
        if st[seq[ln, m]] < t:
            a = m + 1
        else:
            b = m
    return a


@njit(cache=True)
def _visit(prob, state, el_ptr, el_line, x, w1, w2, w3):
    """Best improving move for job ``x``, applied; returns the change in total cost (<= 0)."""
    proc = prob[0]
    seq, cnt, lin, pos, st, en, sh, jc = state
    ln = lin[x]
    i = pos[x]
    n_l = cnt[ln]
    best = -IMPROVE_EPS
    bk = -1
    bb = 0
    bl2 = 0
    bq = 0
    for kind in range(2):
        for b in range(max(0, i - w1), min(n_l - 1, i + w1) + 1):
            if b == i or (kind == 1 and abs(b - i) == 1):
                continue
            v = eval_move(prob, state, kind, ln, i, b, 0, best)
            if v < best:
                best = v
                bk = kind
                bb = b
    if el_ptr[x + 1] - el_ptr[x] > 1:
        rem = eval_move(prob, state, 2, ln, i, 0, 0, np.inf)
        for r in range(el_ptr[x], el_ptr[x + 1]):
            l2 = el_line[r]
            if l2 == ln:
                continue
            n2 = cnt[l2]
            q0 = _first_at_or_after(seq, l2, n2, st, st[x])
            if rem < np.inf:
                for q in range(max(0, q0 - w2), min(n2, q0 + w2) + 1):
                    v = eval_move(prob, state, 3, l2, q, 0, x, best - rem)
                    if rem + v < best:
                        best = rem + v
                        bk = 3
                        bl2 = l2
                        bq = q
            for q in range(max(0, q0 - w3), min(n2, q0 + w3)):
                y = seq[l2, q]
                if not np.isfinite(proc[y, ln]):
                    continue
                v1 = eval_move(prob, state, 4, ln, i, 0, y, np.inf)
                if v1 == np.inf:
                    continue
                v2 = eval_move(prob, state, 4, l2, q, 0, x, best - v1)
                if v1 + v2 < best:
                    best = v1 + v2
                    bk = 4
                    bl2 = l2
                    bq = q
    if bk < 0:
        return 0.0
    if bk <= 1:
        return _do(prob, state, bk, ln, i, bb, 0)
    if bk == 3:
        d = _do(prob, state, 2, ln, i, 0, 0)
        return d + _do(prob, state, 3, bl2, bq, 0, x)
    y = seq[bl2, bq]
    d = _do(prob, state, 4, ln, i, 0, y)
    return d + _do(prob, state, 4, bl2, bq, 0, x)


@njit(cache=True)
def _kick(prob, state, el_ptr, el_line, rng, moves):
    """Random moves keeping every active deadline: near swaps in a line, or a line change."""
    seq, cnt, lin, pos, st, en, sh, jc = state
    n = lin.shape[0]
    total = 0.0
    for _ in range(moves):
        x = _randint(rng, n)
        ln = lin[x]
        i = pos[x]
        n_eli = el_ptr[x + 1] - el_ptr[x]
        if n_eli > 1 and _randint(rng, 2) == 0:
            l2 = el_line[el_ptr[x] + _randint(rng, n_eli)]
            if l2 == ln:
                continue
            q = _first_at_or_after(seq, l2, cnt[l2], st, st[x])
            rem = eval_move(prob, state, 2, ln, i, 0, 0, np.inf)
            ins = eval_move(prob, state, 3, l2, q, 0, x, np.inf)
            if rem == np.inf or ins == np.inf:
                continue
            total += _do(prob, state, 2, ln, i, 0, 0)
            total += _do(prob, state, 3, l2, q, 0, x)
        else:
            n_l = cnt[ln]
            if n_l < 2:
                continue
            b = i + 1 + _randint(rng, 3)
            if b >= n_l:
                b = max(0, i - 1 - _randint(rng, 3))
            if b == i or eval_move(prob, state, 1, ln, i, b, 0, np.inf) == np.inf:
                continue
            total += _do(prob, state, 1, ln, i, b, 0)
    return total


@njit(cache=True)
def ls_rounds(
    prob, state, el_ptr, el_line, best_seq, best_cnt, visit, costs, ctl, rng, params, rounds
):
    """General local search: ``rounds`` job visits; returns the visits run.

    ``costs`` = [current, best local optimum] (the caller keeps whichever is lower; the
    best is only taken at local optima so chunking cannot change the search); ``params`` =
    [intra window, cross-line window, cross-swap
    window, kick moves, local optima without a new best before going back to the best,
    jobs visited m, local optima to stop after (0: never)]. With m < n the caller fills
    ``visit[:m]`` with the jobs to visit (a replan repairing the lines a change touched):
    a sweep is over those alone. ``ctl[4]``, if present, counts local optima.
    Each visited job tries insertion and swap within its line, insertion near the same
    start time on each other eligible line and swaps with jobs there, and takes the best
    improving move. A sweep over all jobs without improvement is a local optimum: keep it
    if best, else maybe go back to the best, then kick.
    """
    seq, cnt, lin, pos, st, en, sh, jc = state
    due_of = prob[2]
    n = lin.shape[0]
    L = cnt.shape[0]
    m = n
    stop_after = 0
    if params.shape[0] > 6:
        m = min(n, params[5])
        stop_after = params[6]
    if ctl[_C_STARTED] == 0:
        ctl[_C_STARTED] = 1
        costs[1] = costs[0]
        best_seq[:, :] = seq
        best_cnt[:] = cnt
        if m == n:
            for q in range(n):
                visit[q] = q
        ctl[_C_VISIT] = m
    done = 0
    while done < rounds and costs[0] > 0.0:
        if ctl[_C_VISIT] >= m:  # new sweep in a fresh random order
            ctl[_C_VISIT] = 0
            for q in range(m - 1, 0, -1):
                r = _randint(rng, q + 1)
                tmp = visit[q]
                visit[q] = visit[r]
                visit[r] = tmp
            # Late jobs first: moves around them are the likeliest to pay.
            front = 0
            for q in range(m):
                if en[visit[q]] > due_of[visit[q]]:
                    tmp = visit[front]
                    visit[front] = visit[q]
                    visit[q] = tmp
                    front += 1
        x = visit[ctl[_C_VISIT]]
        ctl[_C_VISIT] += 1
        done += 1
        d = _visit(prob, state, el_ptr, el_line, x, params[0], params[1], params[2])
        if d < 0.0:
            costs[0] += d
            ctl[_C_QUIET] = 0
        else:
            ctl[_C_QUIET] += 1
        if ctl[_C_QUIET] < m:
            continue
        # A whole sweep without improvement: a local optimum.
        ctl[_C_QUIET] = 0
        if costs[0] < costs[1] - IMPROVE_EPS:
            costs[1] = costs[0]
            best_seq[:, :] = seq
            best_cnt[:] = cnt
            ctl[_C_SINCE_BEST] = 0
        else:
            ctl[_C_SINCE_BEST] += 1
            if ctl[_C_SINCE_BEST] >= params[4]:
                ctl[_C_SINCE_BEST] = 0
                seq[:, :] = best_seq
                cnt[:] = best_cnt
                total = 0.0
                for ll in range(L):
                    retime_line(prob, state, ll, 0)
                for j in range(n):
                    total += jc[j]
                costs[0] = total
        if ctl.shape[0] > 4:
            ctl[4] += 1
            if stop_after > 0 and ctl[4] >= stop_after:
                break
        costs[0] += _kick(prob, state, el_ptr, el_line, rng, params[3])
    return done
