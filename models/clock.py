"""Time for the whole loop: real time in production, scaled time in the demo."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class Clock:
    """Tells the loop's current time; ``speed`` > 1 runs simulated time faster."""

    def __init__(self, speed: float = 1.0, origin: datetime | None = None) -> None:
        self.speed = speed
        self._real0 = time.time()
        self._sim0 = origin or datetime.fromtimestamp(self._real0, UTC)
        self._simulated_origin = origin is not None

    def now(self) -> datetime:
        """The current (possibly simulated) UTC time."""
        elapsed = time.time() - self._real0
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
