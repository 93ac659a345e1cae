"""Deliveries and the follow-up inbox: a sales rep's tasks after an order is delivered."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from loopline.api.auth import PRODUCTION_MANAGER, SALES, Principal
from loopline.api.deps import LiveDep, SessionDep, VisibleDep, require_roles
from loopline.api.errors import FieldError, RowId, error_body, error_responses
from loopline.api.schemas import DeliveryView, TaskView
from loopline.models.clock import utcnow
from loopline.models.estimate import iso
from loopline.models.followup import (
    NOTE_MAX_CHARS,
    SCORE_MAX,
    SCORE_MIN,
    BadTaskInput,
    NotDeliverable,
    TaskDone,
    TaskStatus,
    complete_task,
    get_task,
    list_tasks,
    mark_delivered,
)
from loopline.models.live import Change
from loopline.models.loop import request_replan
from loopline.models.records import Order

router = APIRouter(tags=["follow-up"], responses=error_responses(401))

FollowerDep = Annotated[Principal, Depends(require_roles(SALES, PRODUCTION_MANAGER))]
# Announced on the live channel so the KPI and inbox screens redraw at once.
FOLLOWUP_ENTITY = "followup"


class DeliverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delivered_at: AwareDatetime | None = Field(
        default=None, description="when the customer received it (default: now)"
    )


class CompleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    score: int | None = Field(
        default=None,
        ge=SCORE_MIN,
        le=SCORE_MAX,
        description="satisfaction 0-100 (required for a satisfaction follow-up)",
    )
    note: str | None = Field(default=None, max_length=NOTE_MAX_CHARS)


def announce(live: Any, order_id: str, what: str) -> None:
    """Tell the screens a delivery or a task changed."""
    live.announce(Change(FOLLOWUP_ENTITY, order_id, {}, {"what": what}))


@router.post(
    "/orders/{order_id}/deliver",
    summary="Record that an order reached its customer; opens the sales rep's follow-up",
    response_model=DeliveryView,
    responses=error_responses(403, 404, 409),
)
def deliver(
    order_id: str,
    session: SessionDep,
    live: LiveDep,
    who: FollowerDep,
    vis: VisibleDep,
    body: Annotated[DeliverIn | None, Body()] = None,
) -> dict[str, Any]:
    # Records keep wall-clock time (like every received_at); the demo's fast clock is
    # the screens' business (Screens.record_time).
    at = (body.delivered_at if body else None) or utcnow()
    with session.begin():
        order = session.get(Order, order_id, with_for_update={"of": Order})
        if order is None or (vis is not None and order_id not in vis.orders):
            raise HTTPException(404, detail=f"no order '{order_id}'")
        try:
            done = mark_delivered(
                session, order=order, delivered_at=at.astimezone(UTC), source="api", actor=who.name
            )
        except NotDeliverable as exc:
            raise HTTPException(409, detail=str(exc)) from None
        view: dict[str, Any] = {
            "order_id": order_id,
            "status": order.status,
            "delivered_at": iso(done.delivery.delivered_at),
            "source": done.delivery.source,
            "recorded_by": done.delivery.actor,
            "new": done.new,
        }
    if done.new:
        request_replan(live.redis, f"delivered {order_id}")
        announce(live, order_id, "delivered")
    view["tasks"] = list_tasks(session, order_id=order_id, status=None)
    return view


@router.get(
    "/tasks",
    summary="Follow-up tasks (open by default), oldest due first",
    response_model=list[TaskView],
)
def tasks(
    session: SessionDep,
    vis: VisibleDep,
    assignee: str | None = Query(None, max_length=100, description="a sales rep"),
    status: TaskStatus | None = "open",
    order_id: str | None = Query(None, max_length=64),
    limit: int = Query(200, ge=1, le=2000),
) -> list[Any]:
    found = list_tasks(session, assignee=assignee, status=status, order_id=order_id, limit=limit)
    return [t for t in found if vis is None or t["order_id"] in vis.orders]


@router.get(
    "/tasks/{task_id}",
    summary="One follow-up task",
    response_model=TaskView,
    responses=error_responses(404),
)
def task(task_id: RowId, session: SessionDep, vis: VisibleDep) -> Any:
    found = get_task(session, task_id=task_id)
    if found is None or (vis is not None and found["order_id"] not in vis.orders):
        raise HTTPException(404, detail=f"no task {task_id}")
    return found


@router.post(
    "/tasks/{task_id}/complete",
    summary="Complete a task: confirm a delivery, or record a satisfaction score and note",
    response_model=TaskView,
    responses=error_responses(403, 404, 409),
)
def complete(
    task_id: RowId,
    session: SessionDep,
    live: LiveDep,
    who: FollowerDep,
    vis: VisibleDep,
    body: Annotated[CompleteIn | None, Body()] = None,
) -> Any:
    body = body or CompleteIn()
    if vis is not None:
        mine = get_task(session, task_id=task_id)
        session.rollback()  # the read began a transaction; the write below begins its own
        if mine is None or mine["order_id"] not in vis.orders:
            raise HTTPException(404, detail=f"no task {task_id}")
    with session.begin():
        try:
            done = complete_task(
                session,
                task_id=task_id,
                actor=who.name,
                now=utcnow(),
                score=body.score,
                note=body.note,
            )
        except TaskDone as exc:
            raise HTTPException(409, detail=str(exc)) from None
        except BadTaskInput as exc:
            return JSONResponse(
                error_body([FieldError(field=exc.field, message=str(exc), location="body")]),
                status_code=422,
            )
        if done is None:
            raise HTTPException(404, detail=f"no task {task_id}")
        order_id = done.order_id
    announce(live, order_id, "task")
    return get_task(session, task_id=task_id)
