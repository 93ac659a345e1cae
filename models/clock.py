"""Time for the whole loop: the clock (real time in production, scaled time in the demo)
and the one place that turns moments into text and back (RFC 3339, promise days)."""

from __future__ import annotations

import time as _time
from datetime import UTC, date, datetime, time, timedelta
from typing import Any


class Clock:
    """Tells the loop's current time; ``speed`` > 1 runs simulated time faster."""

    def __init__(self, speed: float = 1.0, origin: datetime | None = None) -> None:
        self.speed = speed
        self._real0 = _time.time()
        self._sim0 = origin or datetime.fromtimestamp(self._real0, UTC)
        self._simulated_origin = origin is not None

    def now(self) -> datetime:
        """The current (possibly simulated) UTC time."""
        elapsed = _time.time() - self._real0
        return self._sim0 + timedelta(seconds=elapsed * self.speed)

    def simulated(self, real: datetime) -> datetime:
        """A wall-clock moment (a record's ``received_at``, ``created_at``...) on this clock's
        timeline, so screens show records and the simulated time on one clock; the moment
        itself when this clock is real time."""
        if self.speed == 1.0 and not self._simulated_origin:
            return real
        elapsed = real.timestamp() - self._real0
        return self._sim0 + timedelta(seconds=elapsed * self.speed)


def utcnow() -> datetime:
    """Wall-clock UTC now (for records such as received_at that are never simulated)."""
    return datetime.now(UTC)


def parse_ts(value: Any) -> datetime | None:
    """An RFC 3339 string (``Z`` or offset) as an aware datetime; None stays None.

    Strict: raises ValueError on text that is not a timestamp (for data Loopline wrote).
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def parse_time(value: str | None) -> datetime | None:
    """Lenient :func:`parse_ts` for display: None when absent, bad or without a zone."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed


def parse_date(value: str | None) -> date | None:
    """A ``YYYY-MM-DD`` date (or the date part of a timestamp); None when absent or bad."""
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def iso(value: datetime | None) -> str | None:
    """An aware datetime as RFC 3339 with 'Z'."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def end_of_day(day: date | str) -> datetime:
    """The instant a promised date ends (UTC): a promise for the 10th holds until midnight."""
    d = date.fromisoformat(day) if isinstance(day, str) else day
    return datetime.combine(d + timedelta(days=1), time(0), tzinfo=UTC)


def promise_day(end: datetime) -> date:
    """The date a promise must name for work ending at ``end`` (a partial day counts): the
    inverse of ``end_of_day``."""
    return (end.astimezone(UTC) - timedelta(microseconds=1)).date()
