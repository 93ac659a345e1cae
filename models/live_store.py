"""Connections to the live store: a real Redis, or the in-process one for the demo."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis
import redis.asyncio as aredis


@dataclass(frozen=True)
class LiveStore:
    """A synchronous client plus a factory for asyncio clients on the same data."""

    sync: redis.Redis
    new_async: Callable[[], aredis.Redis]
    embedded: bool


def open_live_store(url: str | None) -> LiveStore:
    """Connect to Redis at ``url``; ``None`` means the in-process store (fakeredis)."""
    if url is None:
        import fakeredis

        server = fakeredis.FakeServer()
        return LiveStore(
            sync=fakeredis.FakeRedis(server=server, decode_responses=True),
            new_async=lambda: fakeredis.FakeAsyncRedis(server=server, decode_responses=True),
            embedded=True,
        )
    return LiveStore(
        sync=redis.Redis.from_url(url, decode_responses=True, health_check_interval=30),
        new_async=lambda: aredis.Redis.from_url(url, decode_responses=True),
        embedded=False,
    )
