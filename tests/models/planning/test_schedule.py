"""The schedule's JSON form, the objective and the plan_json convenience."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from loopline.models.planning import (
    Assignment,
    Job,
    Line,
    Problem,
    build_schedule,
    plan_json,
    rfc3339,
    solve,
    tardiness_h,
    to_json,
    weighted_tardiness,
)

START = datetime(2026, 12, 1, tzinfo=UTC)


def _problem() -> Problem:
    return Problem(
        start=START,
        lines=(Line("L1", {"P": 10.0}), Line("L2", {"P": 5.0})),
        jobs=(
            Job("a", "P", 20, due=START + timedelta(hours=1), weight=2),
            Job("b", "P", 10, due=START + timedelta(hours=5)),
        ),
    )


def test_rfc3339_is_utc_with_z() -> None:
    plus8 = timezone(timedelta(hours=8))
    assert rfc3339(datetime(2026, 12, 1, 8, tzinfo=plus8)) == "2026-12-01T00:00:00Z"
    assert rfc3339(START + timedelta(milliseconds=5)) == "2026-12-01T00:00:00.005000Z"


def test_to_json_has_the_contract_keys_and_the_v1_extensions() -> None:
    problem = _problem()
    assignments = [
        Assignment("a", "L1", START, START + timedelta(hours=2)),
        Assignment("b", "L2", START, START + timedelta(hours=2)),
    ]
    doc = to_json(build_schedule(problem, assignments))
    assert doc == {
        "assignments": [
            {
                "job": "a",
                "line": "L1",
                "start": "2026-12-01T00:00:00Z",
                "end": "2026-12-01T02:00:00Z",
                "changeover_h": 0.0,
            },
            {
                "job": "b",
                "line": "L2",
                "start": "2026-12-01T00:00:00Z",
                "end": "2026-12-01T02:00:00Z",
                "changeover_h": 0.0,
            },
        ],
        "total_weighted_tardiness_h": 2.0,
        "late_jobs": [
            {
                "job": "a",
                "line": "L1",
                "tardiness_h": 1.0,
                "weight": 2,
                "reason": "lead time: cannot finish by due even on an idle line",
                "cause": {"kind": "lead_time"},
            },
        ],
        "at_risk": [],
        "purchase_requests": [],
        "makespan_end": "2026-12-01T02:00:00Z",
        "solver": "dispatch-v0",
    }


def test_capacity_is_the_reason_when_an_idle_line_would_have_made_it() -> None:
    problem = _problem()
    assignments = [
        Assignment("a", "L1", START, START + timedelta(hours=2)),
        Assignment("b", "L1", START + timedelta(hours=5), START + timedelta(hours=6)),
    ]
    schedule = build_schedule(problem, assignments)
    late = {lj.job: lj for lj in schedule.late_jobs}
    assert late["b"].reason == "capacity on line L1"
    assert late["b"].tardiness_h == 1.0
    # Sorted by weighted tardiness, the costliest first.
    assert [lj.job for lj in schedule.late_jobs] == ["a", "b"]
    assert schedule.total_weighted_tardiness_h == 3.0


def test_weighted_tardiness_recomputes_the_objective() -> None:
    problem = _problem()
    schedule = solve(problem)
    assert weighted_tardiness(problem, schedule.assignments) == schedule.total_weighted_tardiness_h
    assert weighted_tardiness(problem, []) == 0.0


def test_rounding_noise_is_not_lateness() -> None:
    job = Job("a", "P", 1, due=START)
    assert tardiness_h(job, START + timedelta(microseconds=3)) == 0.0
    assert tardiness_h(job, START + timedelta(seconds=36)) == 0.01


def test_an_empty_problem_gives_an_empty_schedule() -> None:
    doc = plan_json({"start": "2026-12-01T00:00:00Z", "lines": [], "jobs": []})
    assert doc == {
        "assignments": [],
        "total_weighted_tardiness_h": 0.0,
        "late_jobs": [],
        "at_risk": [],
        "purchase_requests": [],
        "makespan_end": None,
        "solver": "ils-v1",
    }


def test_plan_json_accepts_a_time_limit() -> None:
    data = {
        "start": "2026-12-01T00:00:00Z",
        "lines": [{"id": "L1", "rates": {"P1": 60.0}}],
        "jobs": [
            {
                "id": "J1",
                "product": "P1",
                "qty": 120,
                "due": "2026-12-01T06:00:00Z",
                "weight": 3,
                "release": "2026-12-01T00:00:00Z",
            }
        ],
    }
    doc = plan_json(data, time_limit=5)
    assert doc["assignments"] == [
        {
            "job": "J1",
            "line": "L1",
            "start": "2026-12-01T00:00:00Z",
            "end": "2026-12-01T02:00:00Z",
            "changeover_h": 0.0,
        }
    ]
    assert doc["total_weighted_tardiness_h"] == 0.0
    assert doc["makespan_end"] == "2026-12-01T02:00:00Z"
    assert doc == plan_json(data)
