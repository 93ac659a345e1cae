"""Browser sessions: the admin lists who is signed in and ends sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from pydantic import BaseModel

from loopline.api.auth import BrowserSessions
from loopline.api.deps import WriterDep
from loopline.api.errors import error_responses

router = APIRouter(prefix="/sessions", tags=["sessions"], responses=error_responses(401, 403))


class SessionView(BaseModel):
    """One signed-in browser (never its secret, never the token it signed in with)."""

    id: str
    principal: str
    role: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    user_agent: str | None
    current: bool  # the session of the caller's own browser


def _sessions(request: Request) -> BrowserSessions:
    return request.app.state.browser_sessions  # type: ignore[no-any-return]


@router.get("", summary="Signed-in browsers (admin)", response_model=list[SessionView])
def list_sessions(request: Request, who: WriterDep) -> list[SessionView]:
    return [
        SessionView(
            id=r.id,
            principal=r.principal,
            role=r.role,
            created_at=r.created_at,
            last_seen_at=r.last_seen_at,
            expires_at=r.expires_at,
            user_agent=r.user_agent,
            current=r.id == who.session,
        )
        for r in _sessions(request).list()
    ]


@router.delete(
    "/{session_id}",
    summary="End a browser session (admin); it is signed out at its next request",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404),
)
def revoke_session(
    request: Request, session_id: Annotated[str, Path(max_length=64)], who: WriterDep
) -> Response:
    if not _sessions(request).revoke(session_id, actor=who.name):
        raise HTTPException(404, detail=f"no session {session_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
