"""OEE per line and shift, the downtime Pareto, stops and the reasons operators give them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from loopline.api.auth import PRODUCTION_MANAGER, Principal
from loopline.api.deps import ContextDep, LiveDep, PrincipalDep, SessionDep, require_roles
from loopline.api.errors import RowId, error_responses
from loopline.models.downtime import (
    UnknownReason,
    assign_reason,
    load_tree,
    reason_views,
    stop_view,
    stops_between,
    unexplained_stops,
)
from loopline.models.live import Update
from loopline.models.oee import current_shift, downtime_pareto, iso_week, shift_view
from loopline.models.oee_records import LineStop, ShiftOee
from loopline.models.planning.problem import parse_calendar
from loopline.models.records import Line

router = APIRouter(tags=["oee"], responses=error_responses(401))

AssignerDep = Annotated[Principal, Depends(require_roles(PRODUCTION_MANAGER))]


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LossesView(_View):
    breakdown_s: float = Field(description="stop time coded as breakdowns, in planned time")
    setup_s: float = Field(description="changeovers and stops coded as setup")
    unexplained_s: float = Field(description="stops longer than a small stop, with no reason")
    small_stop_s: float = Field(description="short stops (kept in run time: performance)")
    slow_cycle_s: float = Field(description="run time not at the ideal rate, past small stops")
    startup_reject: float = Field(description="scrap units sent with a startup-reject code")
    production_reject: float = Field(description="the other scrap units")


class OeeView(_View):
    line: str
    shift: str = Field(description="the shift's name (the reason tree's) or its times")
    shift_start: str = Field(description="ISO 8601, UTC")
    shift_end: str = Field(description="ISO 8601, UTC")
    final: bool = Field(description="the shift is over and its figures no longer change")
    planned_s: float = Field(description="shift time minus breaks, holidays and closures")
    run_s: float = Field(description="planned time minus breakdown, setup and unexplained stops")
    ideal_s: float = Field(description="units made (good + scrap) at the line's ideal rate")
    good: int
    scrap: int
    availability: float | None = Field(description="run_s / planned_s (0-1)")
    performance: float | None = Field(description="ideal_s / run_s (0-1)")
    quality: float | None = Field(description="good / (good + scrap) (0-1)")
    oee: float | None = Field(description="availability x performance x quality (0-1)")
    losses: LossesView
    computed_at: str = Field(description="ISO 8601, UTC")


class ParetoRow(_View):
    code: str | None = Field(description="the reason code; null: unexplained stops")
    name: str | None
    loss: str = Field(description="one of the six big losses, or unexplained")
    seconds: float
    stops: int
    share: float = Field(description="this reason's part of all stop time (0-1)")
    cumulative: float = Field(description="the running share, largest reason first (0-1)")


class ParetoView(_View):
    line: str
    week: str = Field(description="ISO week, e.g. 2026-W49")
    start: str = Field(description="ISO 8601, UTC: Monday 00:00 in the line's time zone")
    end: str
    total_s: float
    reasons: list[ParetoRow]


class StopView(_View):
    id: int
    line: str
    state: str = Field(description="down, idle or changeover")
    started_at: str
    ended_at: str | None = Field(description="null while the line is still stopped")
    duration_s: float
    sensor_reason: str | None = Field(description="the free text the line sent")
    sensor_code: str | None = Field(description="the reason code the line sent, as sent")
    reason_code: str | None = Field(description="the code it counts under; null: unexplained")
    reason_name: str | None
    loss: str
    assigned_by: str | None = Field(description="who gave the reason on a screen or the API")


class ReasonView(_View):
    code: str
    name: str
    loss: str
    parent: str | None
    leaf: bool


class ReasonTreeView(_View):
    small_stop_max_s: float
    reasons: list[ReasonView]


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, Field(min_length=1, max_length=64)]


def _line(session: SessionDep, line_id: str) -> Line:
    line = session.get(Line, line_id)
    if line is None:
        raise HTTPException(404, detail=f"no line '{line_id}'")
    return line


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise RequestValidationError(
            [{"loc": ("query", name), "msg": "needs a UTC offset (Z or +08:00)", "type": "tz"}]
        )
    return value


@router.get(
    "/lines/{line_id}/oee",
    summary="A line's OEE over the shift running at `at` (default now), or the last one",
    response_model=OeeView,
    responses=error_responses(404),
)
def line_oee(
    line_id: str,
    session: SessionDep,
    live: LiveDep,
    ctx: ContextDep,
    _: PrincipalDep,
    at: datetime | None = None,
) -> dict[str, Any]:
    _line(session, line_id)
    now = ctx.clock.now()
    view = current_shift(session, live, line_id, at=_aware(at, "at") or now, now=now)
    if view is None:
        raise HTTPException(404, detail=f"line '{line_id}' has had no shift before then")
    return view


@router.get(
    "/lines/{line_id}/oee/shifts",
    summary="A line's stored shifts, newest first",
    response_model=list[OeeView],
    responses=error_responses(404),
)
def line_shifts(
    line_id: str,
    session: SessionDep,
    _: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 21,
) -> list[dict[str, Any]]:
    _line(session, line_id)
    rows = session.scalars(
        select(ShiftOee)
        .where(ShiftOee.line_id == line_id)
        .order_by(ShiftOee.shift_start.desc())
        .limit(limit)
    )
    return [shift_view(r) for r in rows]


@router.get(
    "/lines/{line_id}/downtime/pareto",
    summary="Stop time per reason over an ISO week (default this week), largest first",
    response_model=ParetoView,
    responses=error_responses(404),
)
def pareto(
    line_id: str,
    session: SessionDep,
    ctx: ContextDep,
    _: PrincipalDep,
    week: Annotated[str | None, Query(pattern=r"^\d{4}-W\d{2}$", examples=["2026-W49"])] = None,
) -> dict[str, Any]:
    line = _line(session, line_id)
    tz = parse_calendar(line.id, line.calendar).timezone if line.calendar else "UTC"
    try:
        start, end = iso_week(week, now=ctx.clock.now(), tz=tz)
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ("query", "week"), "msg": str(exc), "type": "week"}]
        ) from None
    rows = downtime_pareto(session, line_id, start=start, end=end) or []
    middle = (start + (end - start) / 2).isocalendar()  # the week's Thursday: its ISO week
    return {
        "line": line_id,
        "week": f"{middle[0]}-W{middle[1]:02d}",
        "start": _iso(start),
        "end": _iso(end),
        "total_s": round(sum(r["seconds"] for r in rows), 3),
        "reasons": rows,
    }


@router.get(
    "/lines/{line_id}/stops",
    summary="A line's stops since `since` (default: the last day); unexplained=true: only "
    "those waiting for a reason",
    response_model=list[StopView],
    responses=error_responses(404),
)
def stops(
    line_id: str,
    session: SessionDep,
    ctx: ContextDep,
    _: PrincipalDep,
    unexplained: bool = False,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    _line(session, line_id)
    tree = load_tree(session)
    now = ctx.clock.now()
    if unexplained:
        found = unexplained_stops(session, tree, now=now, line_id=line_id, limit=limit)
    else:
        start = _aware(since, "since") or now - timedelta(days=1)
        found = list(reversed(stops_between(session, line_id, start, now)))[:limit]
    return [stop_view(s, tree, now=now) for s in found]


@router.post(
    "/lines/{line_id}/stops/{stop_id}/reason",
    summary="Give a stop its reason (production manager): a code of the reason tree",
    response_model=StopView,
    responses=error_responses(403, 404),
)
def assign(
    line_id: str,
    stop_id: RowId,
    body: AssignIn,
    session: SessionDep,
    live: LiveDep,
    ctx: ContextDep,
    who: AssignerDep,
) -> dict[str, Any]:
    now = ctx.clock.now()
    with session.begin():
        tree = load_tree(session)
        stop = session.get(LineStop, stop_id)
        if stop is None or stop.line_id != line_id:
            raise HTTPException(404, detail=f"no stop {stop_id} on line '{line_id}'")
        try:
            assign_reason(session, stop_id=stop_id, code=body.code, actor=who.name, now=now,
                          tree=tree)  # fmt: skip
        except UnknownReason as exc:
            raise RequestValidationError(
                [{"loc": ("body", "code"), "msg": str(exc).split(": ", 1)[1], "type": "code"}]
            ) from None
        view = stop_view(stop, tree, now=now)
    # Screens following the line hear of it (the andon list, the wall's reason).
    live.apply([Update("line", line_id, {"stop_assigned": {"id": stop_id, "at": _iso(now)}})])
    return view


@router.get(
    "/downtime/reasons",
    summary="The downtime reason tree: every code with its loss (six big losses)",
    response_model=ReasonTreeView,
)
def reasons(session: SessionDep, _: PrincipalDep) -> dict[str, Any]:
    tree = load_tree(session)
    return {"small_stop_max_s": tree.small_stop_max_s, "reasons": reason_views(tree)}


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
