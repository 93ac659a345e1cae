"""The loop: apply received CRM events, replan on order changes (debounced) and keep
alerts, ETAs and feedback current.

Any process may ask for a replan (``request_replan``); a webhook that recorded a CRM event
asks too, which wakes a worker at once. Workers take the requests from a Redis list into a
processing list (``LMOVE``), so N workers share them and none is lost while all are down, or
when a replan fails (put back and retried with backoff), or when a worker dies holding them
(the next worker to start puts them back). Received CRM events wait in the inbox (SQL) until
applied, so a worker dying mid-apply loses none of them either.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar

import redis
from redis.exceptions import LockError
from redis.lock import Lock
from sqlalchemy.orm import Session, sessionmaker

from loopline.models.approvals import ApprovalPolicy, Gate, GateResult, announce_change
from loopline.models.clock import Clock, utcnow
from loopline.models.db import transaction
from loopline.models.estimate import estimate
from loopline.models.feedback import FEEDBACK_STEP, sync_feedback
from loopline.models.followup import open_due_followups
from loopline.models.intake import Intake, apply_received, has_received
from loopline.models.live import LiveState
from loopline.models.oee import OEE_STEP, refresh_oee
from loopline.models.quarantine import Findings, run_isolated
from loopline.models.quarantine import record as record_quarantine
from loopline.models.replan import PlanOutcome, PlanWindow, replan
from loopline.models.tracking import TrackingLinks
from loopline.models.watch import ALERTS_STEP, evaluate_alerts, mark_stale_lines, mirror_alerts

log = logging.getLogger("loopline.loop")

T = TypeVar("T")

REPLAN_QUEUE = "ll:replan:requests"
# Requests a worker took and has not finished yet; put back if it fails or dies.
REPLAN_PROCESSING = "ll:replan:processing"
# A failed replan is retried after this, doubling up to the max (seconds).
REPLAN_RETRY_BASE_S = 1.0
REPLAN_RETRY_MAX_S = 30.0
# One worker at a time plans or sweeps (alerts, feedback): N workers never race on SQL.
DUTY_LOCK = "ll:lock:loop"
# Short, and renewed while a duty runs: a worker that dies holding it stalls the duties of
# the others this long at most.
DUTY_LOCK_TTL_S = 8.0
DUTY_LOCK_RENEW_S = 2.0
# How often a worker waiting for the duty lock tries again (redis-py polls; its default of
# 0.1 s made the intake wait up to that long behind each tick).
DUTY_LOCK_POLL_S = 0.01
# Who holds the lock, readable in Redis (the token's prefix): host and process id.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
REPLAN_WAIT_S = 60.0
# While a burst of CRM events is still arriving, the worker applies what came in meanwhile
# before it replans, for at most this long: applying is a few times cheaper than a replan
# round, so a burst is applied as it arrives and planned together once it calms. Why 5 s,
# not 2 s as before: a burst of 1,500 new orders outlasted 2 s, and the replan in its middle
# (1.4 s at 1,200 open orders) held the rest back; half the runs of bench/connectors.py
# --n 1500 then applied about 350 events/s instead of 460-660. A promise waits at most this
# long (and one replan) however long the burst.
INTAKE_DEFER_S = 5.0
# After a round that applied more than one order (a burst), the worker waits this long for
# the next part before it replans: a CRM delivering in a few concurrent requests (HubSpot's
# batches, each read from its API first) lands them a fraction of a second apart, and a
# replan started in a gap holds the duty lock while the rest waits. A single event does
# not wait.
INTAKE_QUIET_S = 0.25
INTAKE_POLL_S = 0.02
TICK_S = 1.0
# A tick this soon after a replan leaves out what the replan has just done itself (ETAs and
# CRM feedback): at 800 open orders the two cost a tick ~1.4 s of the duty lock, which
# delayed the next round of CRM events by as much (bench/connectors.py).
REPLAN_FRESH_S = TICK_S
# A replan brings the live state only the orders that changed (``sync_live``'s ``full``),
# and all of them at this interval at most: what the live state holds for an order is
# rewritten from SQL at least this often (seconds), whatever else wrote it meanwhile.
FULL_SYNC_S = 60.0
# OEE per shift is recomputed this often (the wall tile's figures are this fresh).
OEE_REFRESH_S = 5.0


def request_replan(client: redis.Redis, trigger: str) -> None:
    """Ask a worker to replan soon; bursts of requests become one replan."""
    client.rpush(REPLAN_QUEUE, trigger)


def finish_replan_requests(client: redis.Redis, triggers: list[str]) -> None:
    """Drop requests that were acted on from the processing list (one each)."""
    if triggers:
        with client.pipeline(transaction=True) as pipe:
            for trigger in triggers:
                pipe.lrem(REPLAN_PROCESSING, 1, trigger)
            pipe.execute()


def requeue_replan_requests(client: redis.Redis, triggers: list[str]) -> None:
    """Put requests whose replan failed back in the queue, at its head."""
    if triggers:
        with client.pipeline(transaction=True) as pipe:
            for trigger in triggers:
                pipe.lrem(REPLAN_PROCESSING, 1, trigger)
            pipe.lpush(REPLAN_QUEUE, *reversed(triggers))
            pipe.execute()


def recover_replan_requests(client: redis.Redis) -> int:
    """Put back what a worker that died was processing; how many requests.

    Why at start only: a live worker's requests may be in the list too, and taking them
    over means at worst one replan too many, never one too few.
    """
    moved = 0
    while client.lmove(REPLAN_PROCESSING, REPLAN_QUEUE, "RIGHT", "LEFT") is not None:
        moved += 1
    return moved


def _release(lock: Lock) -> None:
    try:
        lock.release()
    except LockError:  # it expired while we worked: someone else may hold it now
        log.warning("duty lock expired before release")


class KeptLock(Lock):
    """A Redis lock with a short TTL that a keeper thread renews while it is held: held as
    long as its holder lives, free again ``timeout`` seconds after the holder dies.

    Its token starts with ``WORKER_ID``, so Redis shows which worker holds it.
    """

    def __init__(self, *args: Any, renew_s: float = DUTY_LOCK_RENEW_S, **kwargs: Any) -> None:
        # The keeper renews from its own thread, so the token must not be thread-local.
        kwargs["thread_local"] = False
        super().__init__(*args, **kwargs)
        self.renew_s = renew_s
        self._kept = threading.Event()
        self._keeper: threading.Thread | None = None

    def acquire(
        self,
        sleep: float | None = None,
        blocking: bool | None = None,
        blocking_timeout: float | None = None,
        token: str | None = None,
    ) -> bool:
        """Take the lock (as ``Lock.acquire``) and start renewing it."""
        token = token or f"{WORKER_ID}:{uuid.uuid4().hex}"
        if not super().acquire(sleep, blocking, blocking_timeout, token):
            return False
        self._kept = threading.Event()
        self._keeper = threading.Thread(
            target=self._keep, args=(self._kept,), name="loopline-lock-keeper", daemon=True
        )
        self._keeper.start()
        return True

    def release(self) -> None:
        """Stop renewing, then release (as ``Lock.release``)."""
        self._kept.set()
        if self._keeper is not None and self._keeper is not threading.current_thread():
            self._keeper.join()
        self._keeper = None
        super().release()

    def _keep(self, stop: threading.Event) -> None:
        while not stop.wait(self.renew_s):
            try:
                self.reacquire()
            except LockError:
                log.error("lock %s lost while held (renewal too late)", self.name)
                return
            except redis.RedisError as exc:  # try again: the TTL leaves a few renewals
                log.warning("lock %s not renewed: %s", self.name, exc)


def summarize_triggers(triggers: list[str]) -> str:
    """One line naming what caused a replan: all of a few triggers, the count of many."""
    unique = list(dict.fromkeys(triggers))
    if len(unique) <= 3:
        return ", ".join(unique)
    return f"{len(unique)} changes: {unique[0]} … {unique[-1]}"


class Relay(Protocol):
    def deliver_due(self, limit: int = 100) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class LoopConfig:
    """The worker's settings (built from Settings by ``loopline.runtime.loop_config``)."""

    replan_debounce_ms: int
    line_down_alert_after_s: float
    stale_after_s: float
    window: PlanWindow
    approval_policy: ApprovalPolicy
    followup_after_days: float  # satisfaction follow-up after delivery
    # Signs the customer tracking link sent with each promise (None: no link is sent).
    tracking: TrackingLinks | None


class Loop:
    """The worker's duties; ``start`` runs them in threads until ``stop``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        live: LiveState,
        clock: Clock,
        config: LoopConfig,
        relay: Relay | None = None,
    ) -> None:
        self.sessions = sessions
        self.live = live
        self.clock = clock
        self.config = config
        self.relay = relay
        self._stop = threading.Event()
        # Set when the outbox has new rows, so feedback leaves at once, not at the next tick.
        self._outbox_due = threading.Event()
        # Set when an intake round left received orders for the next one: no waiting.
        self._more_received = False
        self._threads: list[threading.Thread] = []
        self._oee_due = 0.0  # time.monotonic() of the next OEE refresh
        # time.monotonic() when the last replan that succeeded ended (having estimated ETAs
        # and queued feedback); None: none yet.
        self._replanned_at: float | None = None
        self._full_sync_at: float | None = None  # time.monotonic() of the last full sync

    # -- one step of each duty (also what tests call) -------------------------------
    def _track(self) -> Callable[[str], str] | None:
        """What makes the customer tracking link sent with a promise (None: no link)."""
        return self.config.tracking.url_for if self.config.tracking else None

    def replan_now(self, trigger: str) -> PlanOutcome:
        """Apply the received CRM events, then replan (after any other worker's duty)."""
        outcome = self.work([trigger])
        assert outcome is not None
        return outcome

    def work(self, triggers: list[str]) -> PlanOutcome | None:
        """Under the duty lock: apply received CRM events (``apply_received``), then replan
        if anything was applied or asked for (None: nothing to do)."""
        with self._duty_lock(blocking_timeout=REPLAN_WAIT_S):
            intake = self._apply_received()
            began = time.monotonic()
            last = intake
            while (
                (intake.applied or intake.parked)
                and time.monotonic() - began < INTAKE_DEFER_S
                and self._received_soon(
                    INTAKE_QUIET_S if len(last.applied) + len(last.parked) > 1 else 0.0
                )
            ):
                last = self._apply_received()
                intake = intake.merged(last)
            self._more_received = intake.more
            if intake.applied or intake.parked:
                self._outbox_due.set()  # change.pending / auto_approved for the CRM
            asked = triggers + intake.triggers()
            if not asked:
                return None
            full = (
                self._full_sync_at is None or time.monotonic() - self._full_sync_at >= FULL_SYNC_S
            )
            try:
                outcome = replan(
                    self.sessions,
                    self.live,
                    now=self.clock.now(),
                    trigger=summarize_triggers(asked)[:200],
                    window=self.config.window,
                    track=self._track(),
                    full_sync=full,
                )
            except Exception:
                # What the intake applied is committed but not yet planned: ask again, so
                # the retry replans it even if no webhook's request is waiting.
                if intake.applied:
                    self.live.redis.rpush(REPLAN_QUEUE, *intake.triggers())
                raise
            self._replanned_at = time.monotonic()
            if full:
                self._full_sync_at = self._replanned_at
        self._outbox_due.set()
        return outcome

    def apply_received_now(self) -> Intake:
        """Apply received CRM events now, without replanning (under the duty lock)."""
        with self._duty_lock(blocking_timeout=REPLAN_WAIT_S):
            return self._apply_received()

    def _apply_received(self) -> Intake:
        gate = Gate(self.live, self.clock.now, self.config.approval_policy, self.config.window)

        def announce(result: GateResult) -> None:
            assert result.change_id is not None
            status = result.change_status or "pending"
            announce_change(self.live, result.change_id, result.order_id, status)

        return apply_received(self.sessions, gate=gate, on_change=announce)

    def received_waiting(self) -> bool:
        """Whether received CRM events wait (a webhook whose wake-up was lost, say)."""
        with self.sessions() as session:
            return has_received(session)

    def _received_soon(self, wait_s: float) -> bool:
        """Whether received CRM events wait now or arrive within ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while not self.received_waiting():
            if time.monotonic() >= deadline:
                return False
            time.sleep(INTAKE_POLL_S)
        return True

    def take_replan_requests(self, wait_s: float) -> list[str]:
        """Wait for a replan request, then for the burst to settle; return the triggers.

        They move to the processing list: ``finish_replan_requests`` drops them once acted
        on, ``requeue_replan_requests`` puts them back if that failed.
        """
        redis_ = self.live.redis
        if wait_s > 0:
            # Redis >= 6 takes a decimal timeout; redis-py's stubs say int.
            first = redis_.blmove(
                REPLAN_QUEUE,
                REPLAN_PROCESSING,
                wait_s,  # type: ignore[arg-type]
                "LEFT",
                "RIGHT",
            )
        else:
            first = redis_.lmove(REPLAN_QUEUE, REPLAN_PROCESSING, "LEFT", "RIGHT")
        if first is None:
            return []
        triggers = [str(first)]
        deadline = time.monotonic() + self.config.replan_debounce_ms / 1000
        while time.monotonic() < deadline:
            time.sleep(0.02)
        while (more := redis_.lmove(REPLAN_QUEUE, REPLAN_PROCESSING, "LEFT", "RIGHT")) is not None:
            triggers.append(str(more))
        return triggers

    def tick(self) -> bool:
        """ETAs drift while lines stand still; alerts and CRM feedback follow live state.

        Skipped (False) while another worker, or this one's replan, holds the duty lock.
        Each step runs on its own, and an order, work order or line whose data makes a
        step fail is quarantined (an alert) while the rest of the plant goes on. Within
        ``REPLAN_FRESH_S`` of this worker's last replan, and while no line went silent, the
        ETAs and the CRM feedback are left as that replan made them.
        """
        lock = self._duty_lock(blocking_timeout=None)
        if not lock.acquire(blocking=False):
            return False
        queued = 0
        try:
            now, wall = self.clock.now(), utcnow()
            fresh = (
                self._replanned_at is not None
                and time.monotonic() - self._replanned_at < REPLAN_FRESH_S
            )
            findings = Findings()
            silent = self._step(
                "staleness",
                lambda: mark_stale_lines(
                    self.live,
                    wall_now=wall,
                    stale_after_s=self.config.stale_after_s,
                    findings=findings,
                ),
            )
            # A line that went silent changes risks and reasons: estimate all the same.
            fresh = fresh and silent == []
            if not fresh:
                self._step(
                    "estimate",
                    lambda: self.live.apply(estimate(self.live, now, findings=findings)),
                )
            self._in_sql(
                findings,
                ALERTS_STEP,
                lambda s, isolate: evaluate_alerts(
                    s,
                    self.live,
                    now=now,
                    wall_now=wall,
                    down_after_s=self.config.line_down_alert_after_s,
                    findings=findings,
                    isolate=isolate,
                ),
            )
            queued = (
                0
                if fresh
                else self._in_sql(
                    findings,
                    FEEDBACK_STEP,
                    lambda s, isolate: sync_feedback(
                        s,
                        self.live,
                        findings=findings,
                        isolate=isolate,
                        track=self._track(),
                    ),
                )
                or 0
            )
            queued += (
                self._in_sql(
                    findings,
                    "followup",
                    lambda s, _: open_due_followups(
                        s, now=wall, after=timedelta(days=self.config.followup_after_days)
                    ),
                )
                or 0
            )
            if time.monotonic() >= self._oee_due:
                self._oee_due = time.monotonic() + OEE_REFRESH_S
                self._in_sql(
                    findings,
                    OEE_STEP,
                    lambda s, isolate: refresh_oee(
                        s, self.live, now=now, findings=findings, isolate=isolate
                    ),
                )
            self._in_sql(findings, "quarantine", lambda s, _: self._quarantine(s, findings))
        finally:
            _release(lock)
        if queued:
            self._outbox_due.set()
        return True

    def _quarantine(self, session: Session, findings: Findings) -> None:
        record_quarantine(session, findings, now=utcnow())
        session.flush()
        mirror_alerts(session, self.live)

    @staticmethod
    def _step(name: str, work: Callable[[], T]) -> T | None:
        """One step of a sweep (its result); its failure is logged (None) and the next step
        still runs."""
        try:
            return work()
        except Exception:
            log.exception("%s failed", name)
            return None

    def _in_sql(
        self, findings: Findings, step: str, work: Callable[[Session, bool], T]
    ) -> T | None:
        """One SQL step of a sweep in its own transaction, entity by entity if it fails."""
        try:
            with transaction(self.sessions) as session:
                return run_isolated(session, findings, step, lambda iso: work(session, iso))
        except Exception:
            log.exception("%s failed", step)
            return None

    def _duty_lock(self, blocking_timeout: float | None) -> Lock:
        return self.live.redis.lock(
            DUTY_LOCK,
            timeout=DUTY_LOCK_TTL_S,
            sleep=DUTY_LOCK_POLL_S,
            blocking_timeout=blocking_timeout,
            lock_class=KeptLock,
        )

    def relay_once(self) -> int:
        """Deliver the outbox rows that are due; how many were delivered."""
        return self.relay.deliver_due() if self.relay is not None else 0

    # -- threads ----------------------------------------------------------------------
    def start(self) -> None:
        """Run replanning and the periodic duties in background threads."""
        self._stop.clear()
        duties = [("replan", self._replan_forever), ("tick", self._tick_forever)]
        if self.relay is not None:
            duties.append(("relay", self._relay_forever))
        for name, target in duties:
            t = threading.Thread(target=target, name=f"loopline-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the current step and stop."""
        self._stop.set()
        self._outbox_due.set()
        started = bool(self._threads)
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        if started:
            # A last sweep checkpoints live progress into SQL and queues its feedback
            # (the outbox keeps it for the next start: no waiting on a slow CRM here).
            try:
                self.tick()
            except Exception:
                log.exception("final sweep failed")
        if self.relay is not None:
            self.relay.close()

    def _replan_forever(self) -> None:
        failures = 0
        try:
            if moved := recover_replan_requests(self.live.redis):
                log.warning("took back %d replan requests of a worker that stopped", moved)
        except Exception:
            log.exception("could not take back unfinished replan requests")
        while not self._stop.is_set():
            triggers: list[str] = []
            try:
                triggers = self.take_replan_requests(wait_s=0 if self._more_received else 1.0)
                if triggers or self._more_received or self.received_waiting():
                    self.work(triggers)
                finish_replan_requests(self.live.redis, triggers)
                failures = 0
            except Exception:  # one failed replan must not end replanning, nor lose requests
                log.exception("replan failed; retrying")
                try:
                    requeue_replan_requests(self.live.redis, triggers)
                except Exception:  # still in the processing list: the next start takes them
                    log.exception("could not put replan requests back")
                failures += 1
                self._stop.wait(min(REPLAN_RETRY_MAX_S, REPLAN_RETRY_BASE_S * 2 ** (failures - 1)))

    def _relay_forever(self) -> None:
        while not self._stop.is_set():
            self._outbox_due.wait(TICK_S)
            self._outbox_due.clear()
            try:
                self.relay_once()
            except Exception:
                log.exception("outbox relay failed")

    def _tick_forever(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self.tick()
            except Exception:
                log.exception("periodic duties failed")
