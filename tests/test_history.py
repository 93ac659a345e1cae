"""The demo's backfilled history: enough delivered weeks that every KPI trend has data."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from loopline.history import HISTORY_WEEKS, backfill_history
from loopline.models.db import make_engine, make_sessions, migrate, transaction
from loopline.models.feedback import sync_feedback
from loopline.models.followup import list_tasks
from loopline.models.kpi import kpi_report
from loopline.models.records import OutboxEvent
from loopline.seed import seed_factory

NOW = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)


@pytest.fixture
def demo_sessions(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'demo.db'}")
    migrate(engine)
    sessions = make_sessions(engine)
    with transaction(sessions) as s:
        seed_factory(s, NOW)
        assert backfill_history(s, now=NOW, rng=random.Random(3)) > 60
        assert backfill_history(s, now=NOW) == 0  # once only
    yield sessions
    engine.dispose()


def test_every_kpi_has_a_trend_over_the_backfilled_weeks(demo_sessions, live):
    with demo_sessions() as s:
        report = kpi_report(s, now=NOW, weeks=13)
    for kpi in report["kpis"]:
        if kpi["key"] == "open_alerts":
            continue  # the history's stops are all resolved
        measured = [p for p in kpi["trend"] if p["value"] is not None]
        assert len(measured) >= HISTORY_WEEKS - 2, kpi["key"]
    on_time = [p["value"] for p in report["kpis"][0]["trend"] if p["value"] is not None]
    assert sum(on_time[-4:]) / 4 > sum(on_time[:4]) / 4  # the factory got better
    # OEE per line from the shifts the history stored (models/oee.py), week by week.
    assert report["oee"]["measure"] == "oee" and report["oee"]["source"] == "shifts"
    for line in report["oee"]["lines"]:
        assert line["availability"] is not None and 90 < line["availability"] < 100
        assert line["quality"] is not None and line["quality"] > 95
        assert line["performance"] is not None and 75 < line["performance"] < 96
        assert line["oee"] is not None and line["shifts"] >= 4 * HISTORY_WEEKS  # working days
        oee = [p["value"] for p in line["trend"] if p["value"] is not None]
        assert len(oee) >= HISTORY_WEEKS - 1, line["line"]
        assert sum(oee[-4:]) / 4 > sum(oee[:4]) / 4, line["line"]  # the lines got faster
    with demo_sessions() as s:
        # The inbox has the latest follow-ups still open.
        open_kinds = {t["kind"] for t in list_tasks(s)}
    assert open_kinds == {"delivery_confirmation", "satisfaction"}


def test_history_owes_the_crm_nothing(demo_sessions, live):
    with transaction(demo_sessions) as s:
        assert sync_feedback(s, live) == 0
        assert s.scalar(select(func.count(OutboxEvent.id))) == 0
