"""The line simulator: lines that run the planned work orders and publish MQTT like sensors.

It reads what to run from the live state (each line's queue) but reports only through
MQTT, exactly as real line sensors would.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from loopline.ingest.mqtt.publisher import LinePublisher
from loopline.models.clock import Clock
from loopline.models.live import LiveState

log = logging.getLogger("loopline.sim.factory")

STOP_REASONS = (
    "jam on feeder",
    "tool change",
    "material shortage",
    "quality check",
    "sensor fault",
    "operator break",
)
# The reason code a line's controller sends with each stop (the default downtime tree's);
# the others come without one, for an operator to explain on /andon.
STOP_CODES = {
    "jam on feeder": "SS-JAM",
    "tool change": "BD-TOOL",
    "material shortage": "SU-MATERIAL",
    "sensor fault": "SS-SENSOR",
}
MEAN_HOURS_BETWEEN_STOPS = 5.0
STOP_MINUTES = (8, 40)
CHANGEOVER_MINUTES = (10, 25)
HEARTBEAT_TICKS = 10


@dataclass
class _LineSim:
    id: str
    state: str = "idle"
    reason: str | None = None
    until: datetime | None = None
    seq: int = 0
    current: str | None = None
    good: dict[str, float] = field(default_factory=dict)
    scrap: dict[str, int] = field(default_factory=dict)
    ticks: int = 0


class FactorySimulator:
    """Simulated lines on the demo clock; ``run`` publishes until stopped."""

    def __init__(
        self,
        live: LiveState,
        publisher: LinePublisher,
        clock: Clock,
        *,
        site: str,
        rng: random.Random,
        tick_s: float = 1.0,
    ) -> None:
        self.live = live
        self.publisher = publisher
        self.clock = clock
        self.site = site
        self.rng = rng
        self.tick_s = tick_s
        self.lines: dict[str, _LineSim] = {}
        self._last: datetime | None = None

    def run(self, stop: threading.Event) -> None:
        """Advance every line once per tick until ``stop`` is set."""
        while not stop.wait(self.tick_s):
            try:
                self.step()
            except Exception:  # a simulator hiccup must not end the demo
                log.exception("factory simulator step failed")

    def step(self) -> None:
        """Advance all lines by the simulated time since the last step."""
        now = self.clock.now()
        dt_h = 0.0 if self._last is None else (now - self._last).total_seconds() / 3600
        self._last = now
        for line in self.live.all("line"):
            sim = self.lines.setdefault(line["id"], _LineSim(line["id"]))
            self._advance(sim, line, now, dt_h)

    def _advance(self, sim: _LineSim, line: dict, now: datetime, dt_h: float) -> None:
        sim.ticks += 1
        if sim.state in ("down", "changeover") and sim.until and now < sim.until:
            self._heartbeat(sim, now)
            return
        wo = self._current(sim, line)
        if wo is None:
            self._set_state(sim, now, "idle", None)
            self._heartbeat(sim, now)
            return
        sim.good.setdefault(wo["id"], float(wo.get("good") or 0))
        sim.scrap.setdefault(wo["id"], int(wo.get("scrap") or 0))
        if sim.current != wo["id"]:
            if sim.current is not None and sim.state != "changeover":
                minutes = self.rng.uniform(*CHANGEOVER_MINUTES)
                sim.until = now + _minutes(minutes)
                self._set_state(sim, now, "changeover", f"to {wo['sku']}")
                sim.current = wo["id"]
                return
            sim.current = wo["id"]
        if sim.state == "running" and self.rng.random() < dt_h / MEAN_HOURS_BETWEEN_STOPS:
            sim.until = now + _minutes(self.rng.uniform(*STOP_MINUTES))
            self._set_state(sim, now, "down", self.rng.choice(STOP_REASONS))
            return
        self._set_state(sim, now, "running", None)
        rate = float((line.get("rates") or {}).get(wo["sku"]) or 0)
        made = rate * dt_h * self.rng.uniform(0.8, 1.05)
        good = min(float(wo["qty"]), sim.good[wo["id"]] + made)
        sim.good[wo["id"]] = good
        if made > 0 and self.rng.random() < 0.3:
            sim.scrap[wo["id"]] += self.rng.randint(0, max(1, int(made * 0.02)))
        sim.seq += 1
        self.publisher.progress(
            self.site, sim.id, sim.seq, now, wo["id"], int(good), sim.scrap[wo["id"]]
        )

    def _current(self, sim: _LineSim, line: dict) -> dict | None:
        queue = list(line.get("queue") or [])
        # A line finishes what it started before it takes the next job the plan offers.
        if sim.current in queue:
            queue.remove(sim.current)
            queue.insert(0, sim.current)
        wos = self.live.get_many("work_order", queue)
        for wo in wos:
            if wo is None or wo.get("status") in ("done", "cancelled"):
                continue
            if sim.good.get(wo["id"], 0) >= float(wo["qty"]):
                continue
            if wo.get("line") not in (None, sim.id):
                continue
            return wo
        return None

    def _set_state(self, sim: _LineSim, now: datetime, state: str, reason: str | None) -> None:
        if sim.state == state and sim.reason == reason:
            return
        sim.state, sim.reason = state, reason
        sim.seq += 1
        self.publisher.state(
            self.site, sim.id, sim.seq, now, state, reason, reason_code=STOP_CODES.get(reason or "")
        )

    def _heartbeat(self, sim: _LineSim, now: datetime) -> None:
        if sim.ticks % HEARTBEAT_TICKS == 0:
            sim.seq += 1
            self.publisher.state(
                self.site,
                sim.id,
                sim.seq,
                now,
                sim.state,
                sim.reason,
                reason_code=STOP_CODES.get(sim.reason or ""),
            )


def _minutes(m: float) -> timedelta:
    return timedelta(minutes=m)
