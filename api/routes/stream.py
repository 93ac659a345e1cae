"""The live stream: every change of live state, as JSON, over a websocket."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from api.auth import Tokens
from models.live import follow

router = APIRouter(tags=["stream"])


@router.websocket("/stream")
async def stream(websocket: WebSocket) -> None:
    """Send ``{entity, id, old, new, removed}`` for each change; ``?entity=`` filters."""
    tokens: Tokens = websocket.app.state.tokens
    header = websocket.headers.get("authorization", "")
    token = header.removeprefix("Bearer ").strip() or websocket.query_params.get("token")
    if tokens.principal(token) is None:
        await websocket.close(code=4401)
        return
    wanted = set(filter(None, websocket.query_params.get("entity", "").split(",")))
    await websocket.accept()
    client = websocket.app.state.context.new_async_redis()

    async def pump() -> None:
        async for change in follow(client):
            if not wanted or change.entity in wanted:
                await websocket.send_text(change.to_json())

    task = asyncio.create_task(pump())
    try:
        while True:
            await websocket.receive_text()  # clients may ping; we only watch for the close
    except WebSocketDisconnect:
        pass
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await client.aclose()
