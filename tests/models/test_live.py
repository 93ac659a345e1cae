"""The live state on a real Redis: only real changes are published."""

from __future__ import annotations

import asyncio

import redis.asyncio as aredis

from loopline.models.live import CHANNEL, STREAM, Change, Update, follow, follow_batches
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


def test_one_write_is_one_channel_message_and_each_change_one_stream_entry(live, redis_server):
    """A batch of progress is one message to every follower (at 5k msg/s the screens'
    followers spent their time reading the channel message by message)."""

    async def scenario():
        client = aredis.Redis.from_url(redis_server, decode_responses=True)
        raw = aredis.Redis.from_url(redis_server, decode_responses=True)
        batches, singles, messages = [], [], []
        pubsub = raw.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(CHANNEL)

        async def read_batches():
            async for batch in follow_batches(client):
                batches.append(batch)
                return

        async def read_singles():
            async for change in follow(client):
                singles.append(change)
                if len(singles) == 3:
                    return

        tasks = [asyncio.create_task(read_batches()), asyncio.create_task(read_singles())]
        await asyncio.sleep(0.3)
        live.apply([Update("work_order", f"W{i}", {"good": i}) for i in range(3)])
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        for _ in range(5):  # None also for the ignored "subscribed" reply
            if (message := await pubsub.get_message(timeout=0.2)) is not None:
                messages.append(message)
        await pubsub.aclose()
        await client.aclose()
        await raw.aclose()
        return batches, singles, messages

    [batch], singles, messages = run_async(scenario())
    assert [c.id for c in batch] == ["W0", "W1", "W2"] == [c.id for c in singles]
    assert len(messages) == 1
    assert live.redis.xlen(STREAM) == 3
