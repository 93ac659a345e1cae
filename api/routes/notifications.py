"""The in-app inbox: a caller's notifications, marked read one by one or all at once.

A caller's inbox holds what was addressed to their name and to their role (``role:x``
entries, written when nobody in the rules file holds that role). An admin sees every
inbox, or one person's with ``?person=``.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from loopline.api.auth import Principal
from loopline.api.deps import LiveDep, PrincipalDep, SessionDep, VisibleDep
from loopline.api.errors import RowId, error_responses
from loopline.api.schemas import NotificationView
from loopline.models.clock import iso
from loopline.models.live import Change, LiveState
from loopline.models.notify import (
    NOTIFICATION_ENTITY,
    in_scope,
    inbox,
    inbox_addresses,
    inbox_entry,
    mark_read,
    notification_view,
)
from loopline.models.notify_records import Notification
from loopline.models.scope import Visible

log = logging.getLogger("loopline.api.notifications")

router = APIRouter(prefix="/notifications", tags=["notifications"], responses=error_responses(401))


def _whose(who: Principal, person: str | None) -> tuple[list[str], bool]:
    """The inbox addresses a caller reads, and whether that is every inbox (admin)."""
    return inbox_addresses(who.name, who.roles, person=person)


def _in_scope(row: Notification, vis: Visible | None) -> bool:
    return in_scope(row, vis)


def _announce(live: LiveState, rows: list[tuple[int, str]]) -> None:
    """Tell open screens (the caller's other inboxes too) which entries were read."""
    for row_id, address in rows:
        try:
            live.announce(Change(NOTIFICATION_ENTITY, str(row_id), {}, {"address": address}))
        except Exception:  # the entry is read; a screen sees it on its next read
            log.warning("could not announce notification %s read", row_id, exc_info=True)
            return


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
    notification_id: RowId, session: SessionDep, live: LiveDep, who: PrincipalDep, vis: VisibleDep
) -> dict[str, int]:
    addresses, everyone = _whose(who, None)
    with session.begin():
        found = inbox_entry(
            session, notification_id=notification_id, addresses=addresses, everyone=everyone
        )
        if found is None or not _in_scope(found, vis):
            raise HTTPException(404, detail=f"no notification {notification_id} in your inbox")
        marked = mark_read(session, addresses=addresses, everyone=everyone, ids=[notification_id])
        address = found.address
    if marked:
        _announce(live, [(notification_id, address)])
    return {"marked": marked}


@router.post("/read-all", summary="Mark every unread notification of the caller's inbox read")
def read_all(
    session: SessionDep, live: LiveDep, who: PrincipalDep, vis: VisibleDep
) -> dict[str, int]:
    addresses, everyone = _whose(who, None)
    with session.begin():
        # Only what the caller may read: a role's shared entry about another customer's
        # order stays unread for the people it is theirs to read.
        unread = [
            (r.id, r.address)
            for r in inbox(
                session, addresses=addresses, everyone=everyone, unread_only=True, limit=100_000
            )
            if _in_scope(r, vis)
        ]
        marked = mark_read(
            session, addresses=addresses, everyone=everyone, ids=[i for i, _ in unread]
        )
    _announce(live, unread)
    return {"marked": marked}
