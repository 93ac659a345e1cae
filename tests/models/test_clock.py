"""The loop's clock and how records' wall-clock times map onto it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from loopline.models.clock import Clock, utcnow


def test_a_real_clock_leaves_record_times_as_they_are() -> None:
    clock = Clock()
    moment = datetime(2026, 12, 2, 7, 37, 12, 345678, tzinfo=UTC)
    assert clock.simulated(moment) == moment
    assert abs(clock.now() - utcnow()) < timedelta(seconds=1)


def test_a_fast_clock_puts_record_times_on_its_own_timeline() -> None:
    origin = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    clock = Clock(speed=60.0, origin=origin)
    received = utcnow()  # a record stamped now, in wall-clock time
    assert clock.simulated(received) == pytest.approx(clock.now(), abs=timedelta(seconds=5))
    ten_s_later = received + timedelta(seconds=10)
    assert clock.simulated(ten_s_later) - clock.simulated(received) == timedelta(minutes=10)
    # Without an origin it starts at the wall clock and then runs fast.
    fast = Clock(speed=60.0)
    assert fast.simulated(received + timedelta(seconds=1)) - fast.simulated(received) == (
        timedelta(seconds=60)
    )
