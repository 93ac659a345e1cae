"""Checks every valid schedule must pass, shared by the planner tests."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta

from models.planning import Problem, Schedule, to_json, weighted_tardiness

# Assignment times are float hours turned into microsecond datetimes.
TIME_TOLERANCE = timedelta(microseconds=2)


def assert_valid(problem: Problem, schedule: Schedule) -> None:
    """Fail unless the schedule is a feasible, honestly scored plan for the problem."""
    jobs = {j.id: j for j in problem.jobs}
    lines = {ln.id: ln for ln in problem.lines}

    # Every job placed exactly once, and nothing else.
    placed = Counter(a.job for a in schedule.assignments)
    assert set(placed) == set(jobs)
    assert all(count == 1 for count in placed.values())

    by_line = defaultdict(list)
    for a in schedule.assignments:
        job, line = jobs[a.job], lines[a.line]
        # Only lines that can make the product; pinned work on its own line.
        assert job.product in line.rates, (a, line)
        if job.pinned_line is not None:
            assert a.line == job.pinned_line, a
            if job.pinned_start is not None:
                assert a.start >= job.pinned_start, a
        # Nothing starts before the plan starts or before the job is released.
        assert a.start >= problem.start, a
        assert a.start >= problem.release_of(job), a
        # The run lasts exactly qty / rate hours.
        length = timedelta(hours=job.qty / line.rates[job.product])
        assert abs((a.end - a.start) - length) <= TIME_TOLERANCE, (a, length)
        by_line[a.line].append(a)

    # No two jobs overlap on one line.
    for runs in by_line.values():
        runs.sort(key=lambda a: (a.start, a.end))
        for before, after in zip(runs, runs[1:], strict=False):
            assert after.start >= before.end, (before, after)

    # The reported objective is the recomputed one, and the late jobs are exactly the
    # jobs that end after their due date.
    ends = {a.job: a.end for a in schedule.assignments}
    line_of = {a.job: a.line for a in schedule.assignments}
    late_h = {
        j.id: (ends[j.id] - j.due).total_seconds() / 3600
        for j in problem.jobs
        if (ends[j.id] - j.due).total_seconds() > 0.001
    }
    recomputed = sum(jobs[job].weight * hours for job, hours in late_h.items())
    assert abs(schedule.total_weighted_tardiness_h - recomputed) <= 1e-6 * max(1.0, recomputed)
    assert schedule.total_weighted_tardiness_h == weighted_tardiness(problem, schedule.assignments)
    assert {lj.job: lj.tardiness_h for lj in schedule.late_jobs} == late_h
    for lj in schedule.late_jobs:
        assert lj.weight == jobs[lj.job].weight
        assert lj.line == line_of[lj.job]
        assert lj.reason == f"capacity on line {lj.line}" or lj.reason.startswith("lead time")

    # The JSON form carries the same plan.
    doc = to_json(schedule)
    assert len(doc["assignments"]) == len(schedule.assignments)
    assert all(
        row["start"].endswith("Z") and row["end"].endswith("Z") for row in doc["assignments"]
    )
