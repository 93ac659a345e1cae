"""The in-app inbox: a caller's notifications, marked read one by one or all at once.

A caller's inbox holds what was addressed to their name and to their role (``role:x``
entries, written when nobody in the rules file holds that role). An admin sees every
inbox, or one person's with ``?person=``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from loopline.api.auth import ADMIN, Principal
from loopline.api.deps import PrincipalDep, SessionDep, VisibleDep
from loopline.api.errors import RowId, error_responses
from loopline.api.schemas import NotificationView
from loopline.models.clock import iso
from loopline.models.notify import inbox, inbox_entry, mark_read, notification_view
from loopline.models.notify_records import Notification
from loopline.models.scope import Visible

router = APIRouter(prefix="/notifications", tags=["notifications"], responses=error_responses(401))


def _whose(who: Principal, person: str | None) -> tuple[list[str], bool]:
    """The inbox addresses a caller reads, and whether that is every inbox (admin)."""
    if ADMIN in who.roles:
        return ([person], False) if person else ([], True)
    return [who.name, *(f"role:{role}" for role in who.roles)], False


def _in_scope(row: Notification, vis: Visible | None) -> bool:
    """Whether a person limited to some customers may read this entry: an entry about
    another customer's order (an order at risk told to ``role:sales``) is not theirs."""
    details = row.details
    return vis is None or not isinstance(details, dict) or vis.row_ok(details)


def _json(view: dict[str, Any]) -> dict[str, Any]:
    return {k: iso(v) if hasattr(v, "tzinfo") else v for k, v in view.items()}


@router.get("", summary="The caller's inbox, newest first", response_model=list[NotificationView])
def notifications(
    session: SessionDep,
    who: PrincipalDep,
    vis: VisibleDep,
    unread: bool = False,
    person: Annotated[str | None, Query(max_length=200, description="admin: one person")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    addresses, everyone = _whose(who, person)
    rows = inbox(session, addresses=addresses, everyone=everyone, unread_only=unread, limit=limit)
    return [_json(notification_view(r)) for r in rows if _in_scope(r, vis)]


@router.post(
    "/{notification_id}/read",
    summary="Mark one notification of the caller's inbox read",
    responses=error_responses(404),
)
def read_one(
    notification_id: RowId, session: SessionDep, who: PrincipalDep, vis: VisibleDep
) -> dict[str, int]:
    addresses, everyone = _whose(who, None)
    with session.begin():
        found = inbox_entry(
            session, notification_id=notification_id, addresses=addresses, everyone=everyone
        )
        if found is None or not _in_scope(found, vis):
            raise HTTPException(404, detail=f"no notification {notification_id} in your inbox")
        marked = mark_read(session, addresses=addresses, everyone=everyone, ids=[notification_id])
    return {"marked": marked}


@router.post("/read-all", summary="Mark every unread notification of the caller's inbox read")
def read_all(session: SessionDep, who: PrincipalDep) -> dict[str, int]:
    addresses, everyone = _whose(who, None)
    with session.begin():
        return {"marked": mark_read(session, addresses=addresses, everyone=everyone)}
