"""Planner v1: golden scenarios, properties on random factories, reasons, quotes."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopline.models.planning import (
    Calendar,
    Closure,
    Job,
    Line,
    Material,
    Materials,
    Problem,
    PurchaseOrder,
    WeeklyWindow,
    parse_problem,
    plan_json,
    solve,
)
from loopline.models.planning.quote import QuoteRequest, quote, with_plan
from loopline.models.planning.solver import PlanModel
from tests.models.planning.invariants import assert_valid

SCENARIOS = Path(__file__).parent / "scenarios"
START = datetime(2026, 12, 1, tzinfo=UTC)  # a Tuesday
# Golden files and properties use a fixed amount of search, never a clock.
ROUNDS = 200
WT_ROUNDS = 1000
HOUR = timedelta(hours=1)


# --- golden scenarios --------------------------------------------------------------------


def _rounded(value: Any) -> Any:
    """The JSON document with floats rounded, so golden files compare despite float noise."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _expected(name: str) -> dict[str, Any]:
    return json.loads((SCENARIOS / f"{name}.expected.json").read_text())  # type: ignore[no-any-return]


NAMES = sorted(p.name.removesuffix(".problem.json") for p in SCENARIOS.glob("*.problem.json"))


@pytest.mark.parametrize("name", NAMES)
def test_golden_scenario(name: str) -> None:
    data = json.loads((SCENARIOS / f"{name}.problem.json").read_text())
    assert _rounded(plan_json(data, max_rounds=ROUNDS)) == _rounded(_expected(name))
    problem = parse_problem(data)
    assert_valid(problem, solve(problem, max_rounds=ROUNDS))


def test_the_issue_asks_for_these_scenarios() -> None:
    assert {
        "rush_insertion",
        "material_shortage",
        "changeover_heavy",
        "line_down",
        "holiday",
    } <= set(NAMES)


def _rows(name: str) -> dict[str, dict[str, Any]]:
    return {row["job"]: row for row in _expected(name)["assignments"]}


def _late(name: str) -> dict[str, dict[str, Any]]:
    return {row["job"]: row for row in _expected(name)["late_jobs"]}


def test_scenarios_say_what_they_claim() -> None:
    # The golden files are checked above; these are the facts each one was written for.
    rush = _rows("rush_insertion")
    assert rush["SO-1-1"]["start"] == "2026-12-01T00:00:00Z"  # frozen: stays first
    assert rush["SO-9-1"]["start"] == "2026-12-01T02:00:00Z"  # the rush order goes next
    assert {lj["cause"]["kind"] for lj in _late("rush_insertion").values()} == {"rush"}
    assert _late("rush_insertion")["SO-2-1"]["cause"]["order"] == "SO-9"

    shortage = _expected("material_shortage")
    (request,) = shortage["purchase_requests"]
    assert request["material"] == "STEEL" and request["jobs"] == ["SO-3-1"]
    assert request["arrives_if_ordered_now"] == "2026-12-06T00:00:00Z"
    assert _rows("material_shortage")["SO-2-1"]["start"] >= "2026-12-03T08:00:00Z"
    assert {lj["cause"]["kind"] for lj in shortage["late_jobs"]} == {"material"}

    changeover = _expected("changeover_heavy")
    assert sum(row["changeover_h"] for row in changeover["assignments"]) == 1.0  # W, G, B
    assert changeover["total_weighted_tardiness_h"] == 0.0

    down = _late("line_down")
    assert down["SO-2-1"]["cause"] == {
        "kind": "line_down",
        "line": "L1",
        "until": "2026-12-01T04:00:00Z",
        "reason": "jam",
    }
    holiday = _rows("holiday")
    assert holiday["SO-5-1"]["end"].startswith("2026-12-28")


# --- properties on random factories ------------------------------------------------------

PRODUCTS = ("A", "B", "C", "D")
DAY_SHIFT = Calendar(
    "day",
    timezone="Europe/Berlin",
    shifts=(WeeklyWindow(frozenset(range(5)), time(6), time(14)),),
    breaks=(WeeklyWindow(frozenset(range(5)), time(10), time(10, 30)),),
    holidays=(date(2026, 12, 3),),
)
NIGHTS = Calendar(
    "nights",
    shifts=(WeeklyWindow(frozenset(range(7)), time(22), time(6)),),
    closures=(Closure(START + timedelta(hours=30), START + timedelta(hours=40), "service"),),
)


@st.composite
def problems(draw: st.DrawFn) -> Problem:
    """A small random factory with every feature the planner has."""
    n_lines = draw(st.integers(1, 4))
    lines = []
    for i in range(n_lines):
        made = draw(st.lists(st.sampled_from(PRODUCTS), min_size=1, max_size=3, unique=True))
        rates = {p: draw(st.sampled_from([10.0, 25.0, 60.0]) | st.floats(0.5, 300)) for p in made}
        down = draw(st.none() | st.floats(0.5, 12).map(lambda h: START + timedelta(hours=h)))
        lines.append(
            Line(
                id=f"L{i}",
                rates=rates,
                calendar=draw(st.sampled_from([None, None, "day", "nights"])),
                down_until=down,
                down_reason="jam" if down else "",
                setup=draw(st.none() | st.sampled_from(made)),
            )
        )
    makeable = sorted({p for ln in lines for p in ln.rates})
    hours = st.floats(-6, 48, allow_nan=False).map(lambda h: START + timedelta(hours=h))
    jobs = []
    for i in range(draw(st.integers(0, 18))):
        product = draw(st.sampled_from(makeable))
        makers = [ln.id for ln in lines if product in ln.rates]
        kind = draw(st.sampled_from(["free", "free", "free", "running", "planned"]))
        jobs.append(
            Job(
                id=f"J{i:02d}",
                product=product,
                qty=draw(st.floats(0.5, 300) | st.sampled_from([60.0, 120.0])),
                due=START + timedelta(hours=draw(st.floats(0, 72))),
                weight=draw(st.sampled_from([0.0, 1.0, 3.0, 10.0])),
                release=draw(st.none() | hours),
                pinned_line=draw(st.sampled_from(makers)) if kind == "running" else None,
                planned_line=draw(st.sampled_from(makers)) if kind == "planned" else None,
                planned_start=draw(hours) if kind == "planned" else None,
                priority=draw(st.sampled_from(["normal", "high", "rush"])),
            )
        )
    changeovers = {
        draw(st.sampled_from(["*", lines[0].id])): {
            a: {b: draw(st.floats(0, 3)) for b in makeable if b != a} for a in makeable
        }
    }
    materials = None
    if draw(st.booleans()):
        materials = Materials(
            items={
                "M1": Material("M1", draw(st.floats(0, 500)), draw(st.floats(0, 5))),
                "M2": Material("M2", draw(st.floats(0, 500)), draw(st.floats(0, 5))),
            },
            bom={
                p: {
                    m: draw(st.floats(0.1, 3)) for m in draw(st.sets(st.sampled_from(["M1", "M2"])))
                }
                for p in makeable
            },
            purchase_orders=(PurchaseOrder("PO1", "M1", draw(st.floats(1, 300)), draw(hours)),),
        )
        materials = replace(materials, bom={p: m for p, m in materials.bom.items() if m})
    return Problem(
        start=START,
        lines=tuple(lines),
        jobs=tuple(draw(st.permutations(jobs))),
        calendars={"day": DAY_SHIFT, "nights": NIGHTS},
        changeovers=changeovers,
        materials=materials,
        frozen_h=draw(st.sampled_from([0.0, 2.0])),
    )


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(problems())
def test_every_schedule_is_valid(problem: Problem) -> None:
    # No overlap, nothing before its release or material, nothing outside the calendar,
    # eligible lines only, each job once, the reported tardiness recomputed.
    assert_valid(problem, solve(problem, max_rounds=20))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.integers(0, 3))
def test_same_rounds_and_seed_same_plan(problem: Problem, seed: int) -> None:
    assert solve(problem, max_rounds=10, seed=seed) == solve(problem, max_rounds=10, seed=seed)


def test_a_replan_with_nothing_late_moves_nothing() -> None:
    # A fresh plan batches colours to save changeovers (the tie-breaker); a replan from a
    # plan where nothing is late keeps the floor's queue as it is, costly changeovers
    # and all: only lateness is worth reshuffling work people already prepared for.
    data = json.loads((SCENARIOS / "changeover_heavy.problem.json").read_text())
    for k, job in enumerate(data["jobs"]):  # the naive plan: J1..J6 in a row, 10.5 h of changeovers
        job["planned_line"] = "L1"
        job["planned_start"] = f"2026-12-01T{k:02d}:00:00Z"
    planned = parse_problem(data)
    again = solve(planned, max_rounds=ROUNDS)
    assert [a.job for a in again.assignments] == ["J1", "J2", "J3", "J4", "J5", "J6"]
    assert sum(a.setup_h for a in again.assignments) == 10.5
    assert again.total_weighted_tardiness_h == 0
    fresh = solve(
        parse_problem(json.loads((SCENARIOS / "changeover_heavy.problem.json").read_text())),
        max_rounds=ROUNDS,
    )
    assert sum(a.setup_h for a in fresh.assignments) == 1.0


def _busy_factory(n_lines: int = 6, per_line: int = 12) -> Problem:
    """Lines each making two products, loaded so that some work is late."""
    lines = tuple(
        Line(f"L{i}", {f"P{i}": 10.0, f"P{(i + 1) % n_lines}": 8.0}) for i in range(n_lines)
    )
    jobs = tuple(
        Job(
            f"J{i:02d}-{k:02d}",
            f"P{i}",
            qty=20.0 + 5 * ((i * 7 + k * 3) % 5),
            due=START + timedelta(hours=2.5 * k + (i % 3)),
            weight=1.0 + (k % 3),
        )
        for i in range(n_lines)
        for k in range(per_line)
    )
    return Problem(start=START, lines=lines, jobs=jobs)


def test_a_replan_after_one_change_repairs_only_the_lines_it_touched() -> None:
    # Issue 10: an incremental replan (the default limit, from the previous plan) places
    # the changed job where it costs least and searches the touched lines alone, stopping
    # at the first local optimum: other lines keep their queues exactly.
    problem = _busy_factory()
    planned = with_plan(problem, solve(problem, max_rounds=ROUNDS))
    queues = {
        ln.id: [a.job for a in solve(planned, max_rounds=0).assignments if a.line == ln.id]
        for ln in problem.lines
    }
    jobs = list(planned.jobs)
    k = next(i for i, j in enumerate(jobs) if j.planned_line == "L2")
    jobs[k] = replace(jobs[k], qty=jobs[k].qty * 3, planned_line=None, planned_start=None)
    changed = replace(planned, jobs=tuple(jobs))
    again = solve(changed)
    assert_valid(changed, again)
    after = {ln.id: [a.job for a in again.assignments if a.line == ln.id] for ln in problem.lines}
    # The changed job (P2) can go to L1 or L2; from there the search may move work of
    # P1..P3 to L0..L3. Lines L4 and L5 are out of its reach and keep their queues.
    assert [a.line for a in again.assignments if a.job == jobs[k].id][0] in {"L1", "L2"}
    assert after["L4"] == queues["L4"] and after["L5"] == queues["L5"]
    # No worse than re-solving from scratch by more than a little, and never worse than
    # leaving the changed job at the end of its old line.
    fresh = replace(
        changed, jobs=tuple(replace(j, planned_line=None, planned_start=None) for j in jobs)
    )
    full = solve(fresh, max_rounds=ROUNDS)
    assert again.total_weighted_tardiness_h <= full.total_weighted_tardiness_h * 1.25 + 1e-6
    appended = replace(
        changed,
        jobs=tuple(
            replace(j, planned_line="L2", planned_start=START + timedelta(days=30)) if i == k else j
            for i, j in enumerate(changed.jobs)
        ),
    )
    stay = solve(appended, max_rounds=0)
    assert again.total_weighted_tardiness_h <= stay.total_weighted_tardiness_h + 1e-6


@PROPERTY
@given(problems(), st.sampled_from(PRODUCTS), st.floats(1, 200), st.floats(0, 96))
def test_an_accepted_quote_is_met(problem: Problem, sku: str, qty: float, due_h: float) -> None:
    if not any(sku in ln.rates for ln in problem.lines):
        return
    planned = with_plan(problem, solve(problem, max_rounds=10))
    answer = quote(planned, QuoteRequest(sku, qty, START + timedelta(hours=due_h)))
    # The customer takes the earliest date: the order joins the plan with it as a promise.
    accepted = Job(
        id="NEW",
        product=sku,
        qty=qty,
        due=answer.earliest.end,
        deadline=answer.earliest.end,
        planned_line=answer.earliest.line,
        planned_start=answer.earliest.start,
    )
    after = replace(planned, jobs=(*planned.jobs, accepted))
    schedule = solve(after, max_rounds=20)
    assert_valid(after, schedule)
    (placed,) = [a for a in schedule.assignments if a.job == "NEW"]
    assert placed.end <= answer.earliest.end + timedelta(microseconds=2)
    # Prioritized is never later than earliest; whoever slips is named with hours.
    assert answer.prioritized.end <= answer.earliest.end
    assert all(s.slip_h > 0 and s.new_end > s.old_end for s in answer.slips)


def _same_model(fast: PlanModel, full: PlanModel) -> None:
    assert fast.problem == full.problem
    assert [j.id for j in fast.free] == [j.id for j in full.free]
    assert fast.pinned == full.pinned
    assert fast.materials == full.materials
    for name in ("proc", "ready", "due", "weight", "deadline", "product", "setup", "flow"):
        assert np.array_equal(getattr(fast.arrays, name), getattr(full.arrays, name)), name
    for name in ("cal_ptr", "cal_open", "cal_close", "free_at", "last_product"):
        assert np.array_equal(getattr(fast.arrays, name), getattr(full.arrays, name)), name
    a, b = fast.initial(), full.initial()
    assert (a is None) == (b is None)
    if a is not None and b is not None:
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@PROPERTY
@given(problems(), st.sampled_from(PRODUCTS), st.floats(1, 200), st.floats(0, 96), st.booleans())
def test_a_model_with_one_job_more_is_the_model_of_the_problem_with_it(
    problem: Problem, sku: str, qty: float, due_h: float, planned: bool
) -> None:
    if not any(sku in ln.rates for ln in problem.lines):
        return
    if planned:
        problem = with_plan(problem, solve(problem, max_rounds=5))
    job = Job("NEW", sku, qty, START + timedelta(hours=due_h))
    fast = PlanModel(problem).with_job(job)
    if fast is not None:  # None: more than its own part changes (the next test)
        _same_model(fast, PlanModel(replace(problem, jobs=(*problem.jobs, job))))


def test_a_model_takes_one_job_more_unless_more_than_its_part_changes() -> None:
    line = Line("L1", {"P": 10.0, "Q": 10.0}, calendar="day")
    steel = Materials(items={"S": Material("S", 100.0, 2.0)}, bom={"P": {"S": 1.0}})
    booked = tuple(Job(f"B{k}", "P", 20.0, START + timedelta(hours=8 + 4 * k)) for k in range(3))
    problem = Problem(START, (line,), booked, calendars={"day": DAY_SHIFT}, materials=steel)
    planned = with_plan(problem, solve(problem, max_rounds=ROUNDS))
    soon = Job("NEW", "P", 30.0, START + timedelta(hours=10))
    fast = PlanModel(planned).with_job(soon)
    assert fast is not None  # everyone else planned: only its own row is new
    _same_model(fast, PlanModel(replace(planned, jobs=(*planned.jobs, soon))))
    # A new job due later takes material (and its line's end) before it: not the same.
    waiting = replace(planned, jobs=(*planned.jobs, Job("N2", "P", 5.0, soon.due + HOUR)))
    assert PlanModel(waiting).with_job(soon) is None
    # Work so big its line's calendar must be laid out further than the plan needed.
    big = replace(soon, qty=1e5)
    model = PlanModel(planned)
    further = model.with_job(big)
    assert further is not None and further.until != model.until
    _same_model(further, PlanModel(replace(planned, jobs=(*planned.jobs, big))))
    # Pinned, or already planned, is no new job.
    assert PlanModel(planned).with_job(replace(soon, planned_line="L1")) is None


def test_a_quote_names_who_slips() -> None:
    problem = parse_problem(json.loads((SCENARIOS / "rush_job.problem.json").read_text()))
    jobs = tuple(j for j in problem.jobs if j.id != "SO-9-1")
    planned = with_plan(replace(problem, jobs=jobs), solve(replace(problem, jobs=jobs)))
    answer = quote(planned, QuoteRequest("GEAR-B", 60, START + timedelta(hours=2), 10, "rush"))
    assert answer.earliest.end == START + timedelta(hours=8)  # after the three booked orders
    assert answer.prioritized.end == START + timedelta(hours=2)  # first in line
    assert [(s.job, s.slip_h) for s in answer.slips] == [
        ("SO-1-1", 2.0),
        ("SO-2-1", 2.0),
        ("SO-3-1", 2.0),
    ]


def test_the_earliest_quote_uses_an_idle_gap_that_delays_nobody() -> None:
    # L1 idles until 10:00 waiting for B's release; 2 h of work fits before it, 12 h do
    # not (B would end later), so those go after B.
    line = Line("L1", {"P": 1.0})
    booked = Job("B", "P", 3, due=START + timedelta(hours=14), release=START + timedelta(hours=10))
    planned = with_plan(
        Problem(START, (line,), (booked,)),
        solve(Problem(START, (line,), (booked,)), max_rounds=ROUNDS),
    )
    small = quote(planned, QuoteRequest("P", 2, START + timedelta(hours=4)))
    assert (small.earliest.start, small.earliest.end) == (START, START + timedelta(hours=2))
    assert small.slips == () and small.prioritized == small.earliest
    big = quote(planned, QuoteRequest("P", 12, START + timedelta(hours=4)))
    assert big.earliest.end == START + timedelta(hours=25)  # after B, which ends at 13:00
    assert big.prioritized.end == START + timedelta(hours=12)
    assert [(s.job, s.slip_h) for s in big.slips] == [("B", 2.0)]


def test_a_met_deadline_is_kept_even_when_breaking_it_would_cost_less() -> None:
    line = Line("L1", {"P": 1.0})
    promised = Job(
        "kept",
        "P",
        5,
        due=START + timedelta(hours=5),
        deadline=START + timedelta(hours=5),
        planned_line="L1",
        planned_start=START,
    )
    heavy = Job(
        "heavy",
        "P",
        5,
        due=START + timedelta(hours=5),
        weight=10,
        planned_line="L1",
        planned_start=START + timedelta(hours=5),
    )
    schedule = solve(Problem(START, (line,), (promised, heavy)), max_rounds=50)
    ends = {a.job: a.end for a in schedule.assignments}
    assert ends["kept"] == START + timedelta(hours=5)
    # Without the promise the heavier job would go first.
    free = replace(promised, deadline=None)
    ends = {
        a.job: a.end
        for a in solve(Problem(START, (line,), (free, heavy)), max_rounds=50).assignments
    }
    assert ends["heavy"] == START + timedelta(hours=5)


def test_running_work_takes_its_material_first() -> None:
    # 100 of steel on hand; the running job still needs 80 of it, so the new job's 50 are
    # 30 short: it waits for the purchase order, and what that does not cover is requested.
    problem = Problem(
        start=START,
        lines=(Line("L1", {"P": 10.0}), Line("L2", {"P": 10.0})),
        jobs=(
            Job("NEW", "P", 50, due=START + timedelta(hours=6)),
            Job("RUN", "P", 80, due=START + timedelta(hours=9), pinned_line="L1"),
        ),
        materials=Materials(
            items={"STEEL": Material("STEEL", on_hand=100, lead_time_days=5)},
            bom={"P": {"STEEL": 1.0}},
            purchase_orders=(PurchaseOrder("PO-1", "STEEL", 10, START + timedelta(days=2)),),
        ),
    )
    schedule = solve(problem, max_rounds=ROUNDS)
    assert_valid(problem, schedule)
    (request,) = schedule.purchase_requests
    assert request.material == "STEEL" and request.qty == 20 and request.jobs == ("NEW",)
    new = next(a for a in schedule.assignments if a.job == "NEW")
    assert new.start == START + timedelta(days=5)
    assert next(a for a in schedule.assignments if a.job == "RUN").start == START


def test_buying_now_beats_waiting_for_a_late_purchase_order() -> None:
    # The open PO lands in 10 days, a purchase placed now in 2: the job waits 2 days and
    # the request buys its need, leaving the PO to later work.
    problem = Problem(
        start=START,
        lines=(Line("L1", {"P": 10.0}),),
        jobs=(Job("J", "P", 50, due=START + timedelta(days=1)),),
        materials=Materials(
            items={"STEEL": Material("STEEL", on_hand=0, lead_time_days=2)},
            bom={"P": {"STEEL": 1.0}},
            purchase_orders=(PurchaseOrder("PO-1", "STEEL", 80, START + timedelta(days=10)),),
        ),
    )
    schedule = solve(problem, max_rounds=ROUNDS)
    assert_valid(problem, schedule)
    (request,) = schedule.purchase_requests
    assert request.qty == 50 and request.arrives == START + timedelta(days=2)
    assert schedule.assignments[0].start == START + timedelta(days=2)


# --- quality on the OR-Library ----------------------------------------------------------


def test_orlib_wt40_mean_gap_within_the_target() -> None:
    # A fixed amount of search, so this checks quality, never speed. bench/planner.py
    # measures the issue's target (mean gap <= 0.1 % within 1 s, about 20,000 rounds
    # there); this guards against regressions with 1,000 rounds (measured: 0.36 %).
    data = Path(__file__).resolve().parents[3] / "bench" / "data" / "orlib-wt"
    numbers = [float(x) for x in (data / "wt40.txt").read_text().split()]
    optima = [float(x) for x in (data / "wtopt40.txt").read_text().split()]
    gaps = []
    for index, best in enumerate(optima):
        p, w, d = (numbers[index * 120 + k * 40 : index * 120 + (k + 1) * 40] for k in range(3))
        problem = Problem(
            start=START,
            lines=(Line("M", {"X": 1.0}),),
            jobs=tuple(
                Job(f"J{j:02d}", "X", p[j], START + timedelta(hours=d[j]), w[j]) for j in range(40)
            ),
        )
        found = solve(problem, max_rounds=WT_ROUNDS).total_weighted_tardiness_h
        assert found >= best - 1e-6  # nothing beats a proven optimum
        gaps.append((found - best) / best if best else float(found > 0))
    assert sum(gaps) / len(gaps) <= 0.005


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-(10**12), 10**12),
    st.lists(st.integers(-(10**13), 4 * 10**14), min_size=1, max_size=20),
)
def test_hours_of_many_moments_are_those_of_each_bit_for_bit(origin_us: int, offsets: list[int]):
    from loopline.models.planning.solver import _h, _hours_exact

    origin = START + timedelta(microseconds=origin_us)
    moments = [origin + timedelta(microseconds=us) for us in offsets]  # up to about 12 years
    got = _hours_exact(origin, [*moments, None])
    assert got[:-1].tolist() == [_h(m, origin) for m in moments] and np.isnan(got[-1])


def test_the_time_limit_holds_when_the_first_descent_is_long() -> None:
    """Found by bench/planner.py --set wt1000: on some 1,000-job instances the search's
    first descent from the start ran 13 s in one kernel call, past any time limit
    (`loopline plan --time-limit 3` took 15 s)."""
    import time as clock

    from bench.planner import WT1000_MIX, Instance, generate, to_problem

    def problem(n: int, seed: int) -> Problem:
        tf, rdd = WT1000_MIX[3]
        p, w, d = generate(n, tf, rdd, seed=seed)
        return parse_problem(to_problem(Instance("wt1000", 4, p, w, d, 0.0)))

    solve(problem(30, 1), time_limit=0.05, seed=1)  # the kernels loaded before the clock
    big = problem(1000, 1003)
    began = clock.monotonic()
    schedule = solve(big, time_limit=1.0, seed=1)
    took = clock.monotonic() - began
    assert len(schedule.assignments) == 1000
    assert took < 5.0, f"time_limit=1.0 took {took:.1f} s"
