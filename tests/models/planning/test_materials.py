"""Material netting: all jobs at once nets as job by job, to the last bit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopline.models.planning import Job, Line, Material, Materials, Problem, PurchaseOrder
from loopline.models.planning.materials import Netting, commitment

START = datetime(2026, 12, 1, tzinfo=UTC)


@st.composite
def netted(draw: st.DrawFn) -> Problem:
    """Jobs on BOMs of two materials, some stock, purchase orders early and late."""
    items = {
        m: Material(m, draw(st.sampled_from([0.0, 50.0, 1e6]) | st.floats(0, 800)), lead)
        for m, lead in (("M1", draw(st.floats(0, 12))), ("M2", draw(st.floats(0, 12))))
    }
    bom = {
        "A": {"M1": draw(st.floats(0.1, 3))},
        "B": {"M2": draw(st.floats(0.1, 3)), "M1": draw(st.floats(0.1, 3))},
    }
    hours = st.floats(-12, 200).map(lambda h: START + timedelta(hours=h))
    pos = tuple(
        PurchaseOrder(f"PO{k}", draw(st.sampled_from(["M1", "M2"])), draw(st.floats(1, 400)), t)
        for k, t in enumerate(draw(st.lists(hours, max_size=4)))
    )
    jobs = tuple(
        Job(
            f"J{i:02d}",
            draw(st.sampled_from(["A", "B", "C"])),  # C takes no material
            draw(st.floats(1, 300)),
            START + timedelta(hours=draw(st.floats(0, 300))),
            planned_line="L1" if planned else None,
            planned_start=START + timedelta(hours=draw(st.floats(0, 50))) if planned else None,
        )
        for i, planned in enumerate(draw(st.lists(st.booleans(), max_size=25)))
    )
    line = Line("L1", {"A": 10.0, "B": 10.0, "C": 10.0})
    return Problem(START, (line,), jobs, materials=Materials(items, bom, pos))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(netted())
def test_netting_all_at_once_is_netting_job_by_job(problem: Problem) -> None:
    fastest = {"A": 10.0, "B": 10.0, "C": 10.0}
    order = sorted(problem.jobs, key=commitment)
    at_once, one_by_one = Netting(problem, fastest), Netting(problem, fastest)
    at_once.take_all(order)
    for job in order:
        one_by_one.take(job)
    for name in ("used", "waits", "short_qty", "short_jobs", "short_need_by", "last"):
        assert getattr(at_once, name) == getattr(one_by_one, name), name
    assert at_once.plan() == one_by_one.plan()
