"""FastAPI dependencies: the session, the live state, and the caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.auth import COOKIE, Principal, Tokens
from api.context import ApiContext
from models.live import LiveState

_bearer = HTTPBearer(auto_error=False)


def get_context(request: Request) -> ApiContext:
    return request.app.state.context  # type: ignore[no-any-return]


def get_session(ctx: Annotated[ApiContext, Depends(get_context)]) -> Iterator[Session]:
    with ctx.sessions() as session:
        yield session


def get_live(ctx: Annotated[ApiContext, Depends(get_context)]) -> LiveState:
    return ctx.live


def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller: a bearer token, or a signed-in browser of our own screens.

    A browser counts only with the ``X-Requested-By`` header, which a page of another site
    cannot send without a CORS preflight we never grant (so its cookie cannot be misused).
    """
    tokens: Tokens = request.app.state.tokens
    principal = tokens.principal(credentials.credentials if credentials else None)
    if principal is None and request.headers.get("x-requested-by") == "loopline":
        principal = tokens.from_cookie(request.cookies.get(COOKIE))
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="a valid bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def get_writer(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if not principal.can_write:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this token is read-only")
    return principal


ContextDep = Annotated[ApiContext, Depends(get_context)]
SessionDep = Annotated[Session, Depends(get_session)]
LiveDep = Annotated[LiveState, Depends(get_live)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
WriterDep = Annotated[Principal, Depends(get_writer)]
