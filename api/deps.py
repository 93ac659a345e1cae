"""FastAPI dependencies: the session, the live state, and the caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from loopline.api.auth import (
    ADMIN,
    COOKIE,
    ROLES,
    ApiKeys,
    BrowserSessions,
    Principal,
    SessionStoreDown,
    Tokens,
)
from loopline.api.context import ApiContext
from loopline.models.live import LiveState
from loopline.models.scope import Visible, visible

_bearer = HTTPBearer(auto_error=False)


async def get_context(request: Request) -> ApiContext:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a hop per request
    # (with ``refuse_nul``, the webhook's serve profile spent 14 % solving dependencies).
    return request.app.state.context  # type: ignore[no-any-return]


def get_session(ctx: Annotated[ApiContext, Depends(get_context)]) -> Iterator[Session]:
    with ctx.sessions() as session:
        yield session


async def get_live(ctx: Annotated[ApiContext, Depends(get_context)]) -> LiveState:
    return ctx.live


def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller: a bearer token (a role's, or a person's API key), or a signed-in
    browser of our own screens.

    A browser counts only with the ``X-Requested-By`` header, which a page of another site
    cannot send without a CORS preflight we never grant (so its cookie cannot be misused).
    Its session must be valid (not expired, not revoked, its token not rotated).
    """
    tokens: Tokens = request.app.state.tokens
    bearer = credentials.credentials if credentials else None
    principal = tokens.principal(bearer)
    try:
        if principal is None and bearer:
            keys: ApiKeys = request.app.state.api_keys
            principal = keys.check(bearer)
        if principal is None and request.headers.get("x-requested-by") == "loopline":
            sessions: BrowserSessions = request.app.state.browser_sessions
            principal = sessions.check(request.cookies.get(COOKIE))
    except SessionStoreDown as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="the session store is unavailable; retry shortly",
            headers={"Retry-After": "5"},
        ) from exc
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="a valid bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def require_roles(*roles: str) -> Callable[[Principal], Principal]:
    """A dependency letting in callers with one of ``roles`` (admin always), else 403."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")
    allowed = frozenset(roles) | {ADMIN}

    def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.holds(allowed):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"role '{'/'.join(principal.roles)}' may not do this; allowed: "
                + ", ".join(sorted(allowed)),
            )
        return principal

    return dependency


ContextDep = Annotated[ApiContext, Depends(get_context)]
SessionDep = Annotated[Session, Depends(get_session)]
LiveDep = Annotated[LiveState, Depends(get_live)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
WriterDep = Annotated[Principal, Depends(require_roles())]  # admin only


def get_visible(session: SessionDep, principal: PrincipalDep) -> Visible | None:
    """The orders and work orders the caller may see (None: every one).

    The read's transaction is ended here, so a route may still open its own with
    ``session.begin()`` (a scoped caller's writes crashed with "a transaction is already
    begun" before)."""
    if principal.scope is None:
        return None
    try:
        return visible(session, principal.scope)
    finally:
        session.rollback()  # only ids were read


VisibleDep = Annotated[Visible | None, Depends(get_visible)]
