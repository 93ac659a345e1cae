"""The live state in Redis: lines, work orders, orders and open alerts, with change fan-out.

Each entity is a Redis hash ``ll:{entity}:{id}`` whose field values are JSON, plus an
index set ``ll:index:{entity}``. Writing a value that did not change only touches its
quiet fields (``last_seen``); a real change is written and published as
``{entity, id, old, new}``: appended to the stream ``ll:stream`` one entry per change,
and published on the channel ``ll:changes`` as one JSON array per write (a batch of a
few hundred progress messages is one message to every follower, not hundreds: at
5k msg/s the screens' followers spent their time reading the channel, message by
message). Every write is pipelined: one round trip per batch, never per value.

Values are JSON written and read with orjson (the ingest hot path reads and writes every
field it touches; the standard library's json took a fifth of a batch). ``snapshot()``
gives a view that reads each entity from Redis at most once: a batch that reads the same
lines and work orders in several steps pays one round trip for them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import redis
import redis.asyncio as aredis

CHANNEL = "ll:changes"
STREAM = "ll:stream"
STREAM_MAXLEN = 10_000
QUIET_FIELDS = frozenset({"last_seen"})
ENTITIES = ("line", "work_order", "order", "alert")
# Set once the live model was built from SQL; gone when Redis restarted empty.
BUILT_KEY = "ll:meta:built"


@dataclass(frozen=True)
class Update:
    """New values for some fields of one entity."""

    entity: str
    id: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class Change:
    """What really changed in one entity; ``new == {}`` with ``removed`` means it is gone."""

    entity: str
    id: str
    old: dict[str, Any]
    new: dict[str, Any]
    removed: bool = False

    def to_json(self) -> str:
        """The change as the JSON that goes on the wire."""
        return _dump(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        """The change as a plain dict (its wire form before encoding)."""
        return {
            "entity": self.entity,
            "id": self.id,
            "old": self.old,
            "new": self.new,
            "removed": self.removed,
        }

    @staticmethod
    def from_json(raw: str | bytes) -> Change:
        """Read a change back from its wire form."""
        data = orjson.loads(raw)
        return Change(**data)


def changes_from_wire(raw: str | bytes) -> list[Change]:
    """The changes in one channel message: a JSON array of changes (or one change)."""
    data = orjson.loads(raw)
    if isinstance(data, dict):
        return [Change(**data)]
    return [Change(**item) for item in data]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# Why passthrough: orjson would write datetimes as "+00:00"; the live state says "Z".
_ORJSON_OPTS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def _dump(value: Any) -> str:
    return orjson.dumps(value, default=_json_default, option=_ORJSON_OPTS).decode()


def key(entity: str, entity_id: str) -> str:
    """The Redis key of one entity."""
    return f"ll:{entity}:{entity_id}"


def index_key(entity: str) -> str:
    """The Redis set that lists every id of an entity kind."""
    return f"ll:index:{entity}"


def _decode(raw: dict[str, str]) -> dict[str, Any]:
    loads = orjson.loads
    return {k: loads(v) for k, v in raw.items()}


class LiveState:
    """Reads and writes the live model through one synchronous Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    # -- reads ---------------------------------------------------------------------
    def get(self, entity: str, entity_id: str) -> dict[str, Any] | None:
        """One entity's fields, or None when it does not exist."""
        raw = self.redis.hgetall(key(entity, entity_id))
        return _decode(raw) if raw else None  # type: ignore[arg-type]

    def get_many(self, entity: str, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """Several entities in one round trip, in the order asked."""
        return self.get_many_keys([(entity, entity_id) for entity_id in ids])

    def ids(self, entity: str) -> list[str]:
        """Every id of an entity kind, sorted."""
        return sorted(self.redis.smembers(index_key(entity)))  # type: ignore[arg-type]

    def all(self, entity: str) -> list[dict[str, Any]]:
        """Every entity of a kind, sorted by id."""
        return [e for e in self.get_many(entity, self.ids(entity)) if e is not None]

    # -- writes --------------------------------------------------------------------
    def apply(
        self,
        updates: Iterable[Update],
        also: Callable[[redis.client.Pipeline], None] | None = None,
    ) -> list[Change]:
        """Write updates, publish what really changed, and return those changes.

        ``also`` queues more commands on the same pipeline: one round trip, so OEE counts
        are written together with the counters they were derived from.
        """
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for u in updates:
            merged.setdefault((u.entity, u.id), {}).update(u.fields)
        if not merged:
            if also is not None:
                pipe = self.redis.pipeline(transaction=False)
                also(pipe)
                pipe.execute()
            return []
        targets = list(merged)
        current = self.get_many_keys(targets)
        changes: list[Change] = []
        pipe = self.redis.pipeline(transaction=False)
        for (entity, entity_id), old in zip(targets, current, strict=True):
            new_fields = merged[(entity, entity_id)]
            diff = {
                k: v
                for k, v in new_fields.items()
                if k not in QUIET_FIELDS and (old is None or old.get(k) != _roundtrip(v))
            }
            to_write: dict[Any, str] = {
                k: _dump(v) for k, v in new_fields.items() if k in diff or k in QUIET_FIELDS
            }
            if old is None:
                to_write.setdefault("id", _dump(entity_id))
                pipe.sadd(index_key(entity), entity_id)
            if to_write:
                pipe.hset(key(entity, entity_id), mapping=to_write)
            if diff:
                before = {k: (old or {}).get(k) for k in diff}
                changes.append(Change(entity, entity_id, before, _roundtrip(diff)))
        if also is not None:
            also(pipe)
        self._publish(pipe, changes)
        pipe.execute()
        return changes

    def remove(self, entity: str, ids: Iterable[str]) -> list[Change]:
        """Delete entities and publish their removal."""
        ids = list(ids)
        if not ids:
            return []
        current = self.get_many(entity, ids)
        pipe = self.redis.pipeline(transaction=False)
        changes = []
        for entity_id, old in zip(ids, current, strict=True):
            if old is None:
                continue
            pipe.delete(key(entity, entity_id))
            pipe.srem(index_key(entity), entity_id)
            changes.append(Change(entity, entity_id, old, {}, removed=True))
        self._publish(pipe, changes)
        pipe.execute()
        return changes

    def announce(self, change: Change) -> None:
        """Publish a change that is not a field update (for example, a new plan)."""
        pipe = self.redis.pipeline(transaction=False)
        self._publish(pipe, [change])
        pipe.execute()

    def built(self) -> bool:
        """Whether the live model was built from SQL (false after Redis lost its data)."""
        return bool(self.redis.exists(BUILT_KEY))

    def mark_built(self, at: datetime) -> None:
        """Record that the live model now agrees with SQL."""
        self.redis.set(BUILT_KEY, _dump(at))

    def clear(self) -> None:
        """Forget all live state (before a rebuild from SQL)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(BUILT_KEY)
        for entity in ENTITIES:
            for entity_id in self.ids(entity):
                pipe.delete(key(entity, entity_id))
            pipe.delete(index_key(entity))
        pipe.execute()

    def snapshot(self) -> Snapshot:
        """A view of this live state that reads each entity at most once (for one batch)."""
        return Snapshot(self.redis)

    def get_many_keys(self, targets: Sequence[tuple[str, str]]) -> list[dict[str, Any] | None]:
        """Entities of mixed kinds in one round trip."""
        if not targets:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for entity, entity_id in targets:
            pipe.hgetall(key(entity, entity_id))
        return [_decode(raw) if raw else None for raw in pipe.execute()]

    @staticmethod
    def _publish(pipe: redis.client.Pipeline, changes: Sequence[Change]) -> None:
        if not changes:
            return
        dicts = [change.as_dict() for change in changes]
        for item in dicts:
            pipe.xadd(STREAM, {"change": _dump(item)}, maxlen=STREAM_MAXLEN, approximate=True)
        pipe.publish(CHANNEL, _dump(dicts))


class Snapshot(LiveState):
    """A live state that remembers what it read: each entity costs one read, then none.

    For one batch of work: what it read may since have changed in Redis, and what it
    wrote is not re-read (``apply`` diffs against the values read first). Values it returns
    are shared, not copied: callers must not change them.
    """

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self._seen: dict[tuple[str, str], dict[str, Any] | None] = {}

    def get_many_keys(self, targets: Sequence[tuple[str, str]]) -> list[dict[str, Any] | None]:
        """Entities of mixed kinds; one round trip for those not read before, none else."""
        seen = self._seen
        missing = [t for t in dict.fromkeys(targets) if t not in seen]
        if missing:
            seen.update(zip(missing, super().get_many_keys(missing), strict=True))
        return [seen[t] for t in targets]

    def apply(
        self,
        updates: Iterable[Update],
        also: Callable[[redis.client.Pipeline], None] | None = None,
    ) -> list[Change]:
        """Write as ``LiveState.apply`` does, then forget what was read (it changed)."""
        changes = super().apply(updates, also)
        self._seen.clear()
        return changes


def _roundtrip(value: Any) -> Any:
    """The value as it reads back from Redis (datetimes become strings, tuples lists)."""
    if value is None or type(value) in (str, int, bool):
        return value  # why: the hot path writes mostly these; they read back as they are
    return orjson.loads(_dump(value))


async def follow_batches(client: aredis.Redis) -> AsyncIterator[list[Change]]:
    """Yield the live changes published from now on, one list per write, until the caller
    stops."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(CHANNEL)
    try:
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            yield changes_from_wire(message["data"])
    finally:
        await pubsub.unsubscribe(CHANNEL)
        await pubsub.aclose()


async def follow(client: aredis.Redis) -> AsyncIterator[Change]:
    """Yield every live change published from now on, one by one, until the caller stops."""
    async for batch in follow_batches(client):
        for change in batch:
            yield change
