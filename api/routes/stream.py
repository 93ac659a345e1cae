"""The live stream: every change of live state, as JSON, over a websocket."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from loopline.api.auth import (
    COOKIE,
    SESSION_RECHECK_S,
    WS_UNAUTHORIZED,
    ApiKeys,
    BrowserSessions,
    Principal,
    SessionStoreDown,
    Tokens,
    same_origin,
)
from loopline.models.live import Change, follow
from loopline.models.scope import LiveScope

router = APIRouter(tags=["stream"])


async def _caller(websocket: WebSocket) -> tuple[Principal | None, str | None]:
    """Who opens the stream: a bearer ``Authorization`` header, or a browser of our own
    pages by its session cookie (with an Origin of this server). Never a query token: URLs
    end up in logs. Returns the caller and the cookie it came by (None for a bearer)."""
    tokens: Tokens = websocket.app.state.tokens
    header = websocket.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        bearer = header[7:].strip()
        keys: ApiKeys = websocket.app.state.api_keys
        return tokens.principal(bearer) or await keys.acheck(bearer), None
    cookie = websocket.cookies.get(COOKIE)
    if cookie is None or not same_origin(websocket.scope):
        return None, None
    sessions: BrowserSessions = websocket.app.state.browser_sessions
    return await sessions.acheck(cookie), cookie


@router.websocket("/stream")
async def stream(websocket: WebSocket) -> None:
    """Send ``{entity, id, old, new, removed}`` for each change; ``?entity=`` filters.

    Authenticate with ``Authorization: Bearer <token>``, or from a signed-in browser.
    """
    try:
        principal, cookie = await _caller(websocket)
    except SessionStoreDown:
        await websocket.close(code=1013)  # try again later
        return
    if principal is None:
        await websocket.close(code=WS_UNAUTHORIZED)
        return
    wanted = set(filter(None, websocket.query_params.get("entity", "").split(",")))
    await websocket.accept()
    client = websocket.app.state.context.new_async_redis()

    # A person limited to some customers sees only their orders' changes (models/scope.py).
    scoped = (
        LiveScope(websocket.app.state.context.sessions, principal.scope)
        if principal.scope is not None
        else None
    )

    async def pump() -> None:
        async for change in follow(client):
            if wanted and change.entity not in wanted:
                continue
            shown: Change | None = change
            if scoped is not None:  # may read SQL: off the event loop
                shown = await run_in_threadpool(scoped.filter, change)
            if shown is not None:
                await websocket.send_text(shown.to_json())

    async def watch_session() -> None:
        # A browser's session may be revoked or expire while its stream is open.
        sessions: BrowserSessions = websocket.app.state.browser_sessions
        while True:
            await asyncio.sleep(SESSION_RECHECK_S)
            with contextlib.suppress(SessionStoreDown):  # an outage is not a sign-out
                if await sessions.acheck(cookie) is None:
                    await websocket.close(code=WS_UNAUTHORIZED)
                    return

    tasks = [asyncio.create_task(pump())]
    if cookie is not None:
        tasks.append(asyncio.create_task(watch_session()))
    try:
        while True:
            await websocket.receive_text()  # clients may ping; we only watch for the close
    except WebSocketDisconnect:
        pass
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await client.aclose()
