"""Checks every valid schedule must pass, shared by the planner tests."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta

from loopline.models.planning import Problem, Schedule, to_json, weighted_tardiness
from loopline.models.planning.calendar import Timeline, working_windows

# Assignment times are float hours turned into microsecond datetimes.
TIME_TOLERANCE = timedelta(microseconds=2)
KINDS = {"capacity", "material", "line_down", "rush", "lead_time"}


def _h(problem: Problem, moment: datetime) -> float:
    return (moment - problem.start).total_seconds() / 3600


def _timeline(problem: Problem, line_id: str, until: datetime) -> Timeline:
    """The line's working time, recomputed from its calendar, past ``until``."""
    line = next(ln for ln in problem.lines if ln.id == line_id)
    if line.calendar is None:
        return Timeline()
    far = max(until, problem.start) + timedelta(days=60)
    return Timeline(working_windows(problem.calendars[line.calendar], problem.start, far))


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
        assert a.start >= problem.release_of(job) - TIME_TOLERANCE, a
        # Nor before its material is there (running work has its material already).
        if job.pinned_line is None:
            for pr in schedule.purchase_requests:
                if job.id in pr.jobs:
                    assert a.start >= pr.arrives - TIME_TOLERANCE, (a, pr)
        # A line that is down takes nothing new before it is back.
        if line.down_until is not None and job.pinned_line is None:
            assert a.start >= line.down_until - TIME_TOLERANCE, (a, line)
        # The block is the changeover plus the run, in the line's working time only.
        run_h = job.qty / line.rates[job.product]
        timeline = _timeline(problem, a.line, a.end)
        start_h, end_h = _h(problem, a.start), _h(problem, a.end)
        assert timeline.is_working(start_h), (a, "starts outside working time")
        worked = timeline.working_between(start_h, end_h)
        assert abs(worked - (a.setup_h + run_h)) <= 1e-5, (a, worked, run_h)
        by_line[a.line].append(a)

    # No two jobs overlap on one line, and each changeover is the matrix's for the pair.
    for line_id, runs in by_line.items():
        runs.sort(key=lambda a: (a.start, a.end))
        for before, after in zip(runs, runs[1:], strict=False):
            assert after.start >= before.end - TIME_TOLERANCE, (before, after)
            if jobs[after.job].pinned_line is None:
                want = problem.changeover_h(
                    line_id, jobs[before.job].product, jobs[after.job].product
                )
                assert abs(after.setup_h - want) <= 1e-9, (before, after, want)

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
    for lj in (*schedule.late_jobs, *schedule.at_risk):
        assert lj.weight == jobs[lj.job].weight
        assert lj.line == line_of[lj.job]
        assert lj.reason and lj.cause["kind"] in KINDS, lj

    # The JSON form carries the same plan.
    doc = to_json(schedule)
    assert len(doc["assignments"]) == len(schedule.assignments)
    assert all(
        row["start"].endswith("Z") and row["end"].endswith("Z") for row in doc["assignments"]
    )
