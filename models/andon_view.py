"""What the andon screen shows, read from the records: the stops waiting for a reason,
the codes an operator can pick, the lines, and a line's downtime Pareto for a week."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from loopline.models.downtime import load_tree, stop_view, unexplained_stops
from loopline.models.oee import downtime_pareto, iso_week
from loopline.models.planning.problem import parse_calendar
from loopline.models.records import Line

MAX_STOPS = 50


class ReasonOption(TypedDict):
    code: str
    name: str
    loss: str
    parent_name: str | None


class AndonData(TypedDict):
    stops: list[dict[str, Any]]  # downtime.stop_view, newest first
    reasons: list[ReasonOption]  # the tree's leaves, in tree order
    lines: dict[str, str]  # id -> name


class ParetoData(TypedDict):
    week: str
    rows: list[dict[str, Any]]  # oee.downtime_pareto


def read_andon(sessions: sessionmaker[Session], *, now: datetime) -> AndonData:
    """The stops waiting for a reason on every line, and what can be picked for them."""
    with sessions() as session:
        tree = load_tree(session)
        stops = unexplained_stops(session, tree, now=now, limit=MAX_STOPS)
        names = {r.code: r.name for r in tree.reasons}
        return {
            "stops": [stop_view(s, tree, now=now) for s in stops],
            "reasons": [
                {
                    "code": r.code,
                    "name": r.name,
                    "loss": r.loss,
                    "parent_name": names.get(r.parent) if r.parent else None,
                }
                for r in tree.leaves()
            ],
            "lines": {
                str(i): str(n)
                for i, n in session.execute(select(Line.id, Line.name).order_by(Line.id))
            },
        }


def read_pareto(sessions: sessionmaker[Session], line_id: str, *, now: datetime) -> ParetoData:
    """A line's downtime Pareto for the week of ``now`` (in the line's time zone)."""
    with sessions() as session:
        line = session.get(Line, line_id)
        tz = parse_calendar(line.id, line.calendar).timezone if line and line.calendar else "UTC"
        start, end = iso_week(None, now=now, tz=tz)
        rows = downtime_pareto(session, line_id, start=start, end=end) or []
    year, week, _ = (start + (end - start) / 2).isocalendar()
    return {"week": f"{year}-W{week:02d}", "rows": rows}
