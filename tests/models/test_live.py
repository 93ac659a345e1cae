"""The live state on a real Redis: only real changes are published."""

from __future__ import annotations

import asyncio

import redis.asyncio as aredis

from loopline.models.live import STREAM, Change, Update, follow
from tests.stack import run_async


def test_unchanged_value_only_touches_quiet_fields(live):
    assert live.apply([Update("line", "L1", {"state": "running", "last_seen": "a"})])
    assert live.apply([Update("line", "L1", {"state": "running", "last_seen": "b"})]) == []
    assert live.get("line", "L1") == {"id": "L1", "state": "running", "last_seen": "b"}


def test_change_carries_old_and_new_and_goes_to_stream(live):
    live.apply([Update("line", "L1", {"state": "running"})])
    [change] = live.apply([Update("line", "L1", {"state": "down", "reason": "jam"})])
    assert change == Change(
        "line", "L1", {"state": "running", "reason": None}, {"state": "down", "reason": "jam"}
    )
    assert live.redis.xlen(STREAM) == 2


def test_remove_and_index(live):
    live.apply([Update("order", "A", {"x": 1}), Update("order", "B", {"x": 2})])
    assert live.ids("order") == ["A", "B"]
    [gone] = live.remove("order", ["A", "missing"])
    assert gone.removed and live.ids("order") == ["B"]


def test_follow_receives_published_changes(live, redis_server):
    async def scenario():
        client = aredis.Redis.from_url(redis_server, decode_responses=True)
        received = []

        async def reader():
            async for change in follow(client):
                received.append(change)
                return

        task = asyncio.create_task(reader())
        await asyncio.sleep(0.3)
        live.apply([Update("line", "L9", {"state": "idle"})])
        await asyncio.wait_for(task, 5)
        await client.aclose()
        return received

    [change] = run_async(scenario())
    assert (change.entity, change.id, change.new) == ("line", "L9", {"state": "idle"})
