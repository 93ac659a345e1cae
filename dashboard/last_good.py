"""The last good reading of each screen, kept in the serving process for store outages.

A page opened while Redis (or the database) is down renders the last data this process
read for it, greyed with "stale since HH:MM"; with none, it says since when live data is
unavailable. Readings are keyed by page and parameters and bounded in number (a URL's
parameters come from anyone).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, NamedTuple, TypeVar

from loopline.models.scope import acting_scope
from loopline.models.stores import STORE_DOWN, store_down

log = logging.getLogger("loopline.dashboard")

T = TypeVar("T")

MAX_READINGS = 64  # distinct (page, parameters) kept; the least recently read go first


@dataclass(frozen=True)
class Reading(Generic[T]):
    """What a page can show: fresh data, the last good data, or nothing."""

    value: T | None
    read_at: datetime | None  # when ``value`` came from the store
    down_since: datetime | None = None  # None: ``value`` is fresh
    store: str | None = None  # the store that is down

    @property
    def fresh(self) -> bool:
        """Whether the value was read just now."""
        return self.down_since is None


class LastGood:
    """The last good value per key, and since when the stores have been failing."""

    def __init__(self, max_readings: int = MAX_READINGS) -> None:
        self._values: OrderedDict[Hashable, tuple[object, datetime]] = OrderedDict()
        self._max = max_readings
        self._lock = threading.Lock()
        self._down_since: datetime | None = None

    def fresh(self, key: Hashable, read: Callable[[], T], now: datetime) -> T:
        """``read()``, kept as the last good value of ``key``; store errors propagate."""
        try:
            value = read()
        except STORE_DOWN:
            with self._lock:
                self._down_since = self._down_since or now
            raise
        kept = copy.deepcopy(value)  # the caller may change its copy in place
        with self._lock:
            self._down_since = None
            self._values[key] = (kept, now)
            self._values.move_to_end(key)
            while len(self._values) > self._max:
                self._values.popitem(last=False)
        return value

    def read(self, key: Hashable, read: Callable[[], T], now: datetime) -> Reading[T]:
        """A fresh reading, or while a store is down the last good one (or none)."""
        try:
            return Reading(self.fresh(key, read, now), now)
        except STORE_DOWN as exc:
            log.warning("screen %r: %s unreachable, showing the last good data", key, exc)
            with self._lock:
                kept = self._values.get(key)
                since = self._down_since or now
            if kept is None:
                return Reading(None, None, since, store_down(exc))
            value, read_at = kept
            return Reading(copy.deepcopy(value), read_at, since, store_down(exc))  # type: ignore[arg-type]


class _ScopedKey(NamedTuple):
    scope: Hashable
    key: Hashable


class ScopedLastGood(LastGood):
    """:class:`LastGood` keeping each scope's readings apart, so a page opened in an
    outage never shows what another person's scope read (``models.scope.acting_scope``)."""

    @staticmethod
    def _scoped(key: Hashable) -> _ScopedKey:
        return key if isinstance(key, _ScopedKey) else _ScopedKey(acting_scope(), key)

    def fresh(self, key: Hashable, read: Callable[[], T], now: datetime) -> T:
        return super().fresh(self._scoped(key), read, now)

    def read(self, key: Hashable, read: Callable[[], T], now: datetime) -> Reading[T]:
        return super().read(self._scoped(key), read, now)
