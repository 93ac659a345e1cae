"""The worker's notification duties: a sweep (events -> rules -> rows; escalation) and the
relay that delivers, each in a thread of its own; N workers share them safely (the sweep
runs under a Redis lock, the relay claims rows with leases)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from loopline.models.clock import Clock, utcnow
from loopline.models.db import transaction
from loopline.models.escalation import escalate
from loopline.models.live import Change, LiveState
from loopline.models.loop import KeptLock
from loopline.models.notify import (
    NOTIFICATION_ENTITY,
    alert_events,
    apply_rules,
    audit_events,
)
from loopline.models.notify_records import Notification
from loopline.models.notify_relay import NotificationRelay
from loopline.models.notify_rules import INBOX, Directory, NotifyConfig

log = logging.getLogger("loopline.notify")

SWEEP_LOCK = "ll:lock:notify"
SWEEP_LOCK_TTL_S = 8.0
SWEEP_EVERY_S = 1.0
RELAY_EVERY_S = 1.0


@dataclass(frozen=True)
class SweepResult:
    notifications: int
    escalation_steps: int


class Notifier:
    """Runs the sweep and the relay until ``stop``; ``sweep``/``deliver`` run one round."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        live: LiveState,
        clock: Clock,
        config: NotifyConfig,
        directory: Directory,
        relay: NotificationRelay,
    ) -> None:
        self.sessions = sessions
        self.live = live
        self.clock = clock
        self.config = config
        self.directory = directory
        self.relay = relay
        self._stop = threading.Event()
        # Set by a sweep that wrote rows, so they leave now rather than at the next round.
        self._due = threading.Event()
        self._threads: list[threading.Thread] = []

    def sweep(self) -> SweepResult | None:
        """Turn new events into notifications and advance escalations (None: another
        worker is sweeping)."""
        lock = self.live.redis.lock(SWEEP_LOCK, timeout=SWEEP_LOCK_TTL_S, lock_class=KeptLock)
        if not lock.acquire(blocking=False):
            return None
        try:
            # Alerts, snoozes and escalations are records: their times are wall-clock time
            # (the demo's loop clock runs fast), so ages and deadlines are taken on it too.
            wall = utcnow()
            with transaction(self.sessions) as session:
                before = session.scalar(select(func.max(Notification.id))) or 0
                events = [*alert_events(session, now=wall), *audit_events(session, wall_now=wall)]
                written = apply_rules(session, self.config, self.directory, events, now=wall)
                steps = escalate(session, self.config, self.directory, now=wall, wall_now=wall)
                fresh: list[tuple[int, str, str]] = [
                    (r[0], r[1], r[2])
                    for r in session.execute(
                        select(Notification.id, Notification.address, Notification.severity).where(
                            Notification.id > before, Notification.channel == INBOX
                        )
                    )
                ]
            self._announce(fresh)
            if written or steps:
                self._due.set()
            return SweepResult(written, steps)
        finally:
            lock.release()

    def _announce(self, rows: list[tuple[int, str, str]]) -> None:
        """Tell open screens and stream clients whose inbox has a new entry (after the
        commit): only the address and severity; the entry itself is read from the API."""
        for row_id, address, severity in rows:
            try:
                self.live.announce(
                    Change(
                        NOTIFICATION_ENTITY,
                        str(row_id),
                        {},
                        {"address": address, "severity": severity},
                    )
                )
            except Exception:  # the inbox has it; a screen sees it on its next read
                log.warning("could not announce notification %s", row_id, exc_info=True)
                return

    def deliver(self) -> int:
        """Send what is due now; how many notifications left."""
        return self.relay.deliver_due()

    def start(self) -> None:
        self._stop.clear()
        for name, target in (
            ("notify-sweep", self._sweep_forever),
            ("notify-relay", self._relay_forever),
        ):
            t = threading.Thread(target=target, name=f"loopline-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def _sweep_forever(self) -> None:
        while not self._stop.wait(SWEEP_EVERY_S):
            try:
                self.sweep()
            except Exception:  # the next round tries again
                log.exception("notification sweep failed")

    def _relay_forever(self) -> None:
        while not self._stop.is_set():
            self._due.wait(RELAY_EVERY_S)
            self._due.clear()
            if self._stop.is_set():
                return
            try:
                self.deliver()
            except Exception:  # the rows stay pending: the next round tries again
                log.exception("notification relay failed")

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._due.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        self.relay.close()
