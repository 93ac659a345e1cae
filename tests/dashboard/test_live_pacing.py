"""When a live page draws: an urgent change at once, calm ones together (issue 13: at
5k progress msg/s, drawing every count kept the wall's browser so busy that a line
stopping showed seconds late)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from loopline.dashboard.live_push import Pacer, PageStream
from loopline.dashboard.pages.wall import CALM_S, WallStream
from loopline.models.live import Change


def change(entity: str, entity_id: str, **new: Any) -> Change:
    return Change(entity, entity_id, {}, new)


class Page(PageStream):
    """Wants everything; urgent when the change says so."""

    def __init__(self, calm_s: float) -> None:
        super().__init__(SimpleNamespace(default_lang="en"), {})  # type: ignore[arg-type]
        self.calm_s = calm_s

    def wants(self, change: Change) -> bool:
        return change.entity != "ignored"

    def urgent(self, change: Change) -> bool:
        return bool(change.new.get("urgent"))


def test_calm_changes_wait_and_go_together():
    pacer = Pacer(Page(calm_s=1.0))
    first = change("work_order", "W1", good=1)
    assert pacer.take([first], 100.0) == [first]  # nothing drawn lately: at once
    a, b = change("work_order", "W1", good=2), change("work_order", "W2", good=5)
    assert pacer.take([a], 100.2) == []
    assert abs(pacer.wait_s(100.2, idle_s=1.0) - 0.8) < 1e-9
    assert pacer.take([b, change("ignored", "x")], 100.5) == []
    assert pacer.take([], 101.0) == [a, b]  # due: both in one draw
    assert pacer.wait_s(101.0, idle_s=1.0) == 1.0  # nothing held: the idle wait


def test_an_urgent_change_draws_at_once_with_its_own_entitys_held_changes_only():
    pacer = Pacer(Page(calm_s=1.0))
    pacer.take([change("work_order", "W1", good=1)], 10.0)
    count = change("work_order", "W1", good=2)
    rate = change("line", "L1", rate_uph=50.0)
    assert pacer.take([count, rate], 10.1) == []
    stop = change("line", "L1", urgent=True, rate_uph=0.0)
    # The line's older rate goes before its stop (never drawn over the newer value); the
    # work order's count keeps its calm time.
    assert pacer.take([stop], 10.2) == [rate, stop]
    assert pacer.take([], 10.5) == []
    assert pacer.take([], 11.0) == [count]


def test_no_calm_time_draws_every_change():
    pacer = Pacer(Page(calm_s=0.0))
    for t in (1.0, 1.001, 1.002):
        c = change("work_order", "W1", good=t)
        assert pacer.take([c], t) == [c]


def test_dropped_changes_are_not_drawn_later():
    pacer = Pacer(Page(calm_s=1.0))
    pacer.take([change("work_order", "W1", good=1)], 0.0)
    pacer.take([change("work_order", "W1", good=2)], 0.5)
    pacer.drop()
    assert pacer.take([], 5.0) == []


def test_wall_draws_state_at_once_and_counts_calmly():
    wall = WallStream(SimpleNamespace(default_lang="en"), {})  # type: ignore[arg-type]
    wall.lines = {"L1": {"id": "L1", "state": "running"}}
    wall.wos = {"W1": {"id": "W1"}}
    assert wall.calm_s == CALM_S > 0
    assert wall.urgent(change("line", "L1", state="down", reason="jam"))
    assert wall.urgent(change("line", "L1", since="2026-12-03T10:00:00Z"))
    assert wall.urgent(change("line", "L9", seq=4))  # a line the wall does not show yet
    assert wall.urgent(Change("line", "L1", {"state": "running"}, {}, removed=True))
    # A progress message on another work order moves the line's current one: calm too.
    assert not wall.urgent(
        change("line", "L1", seq=41, rate_uph=118.0, eta="2026-12-03T10:00Z", work_order="W2")
    )
    assert not wall.urgent(change("work_order", "W1", good=120, scrap=2))


def test_only_a_paced_page_skips_the_batch_wait_and_only_for_an_urgent_change():
    paced, unpaced = Pacer(Page(calm_s=1.0)), Pacer(Page(calm_s=0.0))
    stop, count = change("line", "L1", urgent=True), change("work_order", "W1", good=3)
    assert paced.urgent_in([count, stop])
    assert not paced.urgent_in([count])
    assert not paced.urgent_in([change("ignored", "x", urgent=True)])  # not wanted
    assert not unpaced.urgent_in([stop])  # draws every batch anyway: gathers first
