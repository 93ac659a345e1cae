"""The MQTT consumer's handler: parse shop-floor messages, apply them, dead-letter the rest.

Order of writes per batch: read the live state, work out what changes, store the dead
letters and alerts in SQL, then write Redis. A store that is down raises
``StoreUnavailable`` and the consumer hands the same batch back later (not acked): since
nothing reached Redis before SQL took its part, the retry works the batch out the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Final

import redis.exceptions as redis_errors
from sqlalchemy import exc as sql_errors
from sqlalchemy.orm import Session, sessionmaker

from loopline.ingest.mqtt.consumer import STATUS_FILTER, Inbound, StoreUnavailable
from loopline.ingest.mqtt.messages import ProgressMessage, Rejected, StateMessage, parse
from loopline.models.alerts import open_alert, resolve_alert
from loopline.models.clock import Clock, utcnow
from loopline.models.db import transaction
from loopline.models.downtime import load_tree, record_first_reports, record_transitions
from loopline.models.live import LiveState
from loopline.models.loop import DUTY_LOCK, DUTY_LOCK_TTL_S, REPLAN_WAIT_S
from loopline.models.oee import add_counts
from loopline.models.records import DeadLetter
from loopline.models.replan import sync_live
from loopline.models.shopfloor import ShopfloorOutcome, plan_reports
from loopline.models.watch import mirror_alerts

log = logging.getLogger("loopline.ingest")

PAYLOAD_KEEP = 64 * 1024
REASON_HANDLER_ERROR = "handler_error"
# Refusals that mean "not in the live model": after Redis lost its data, every message.
_MISSING = frozenset({"unknown_line", "unknown_work_order"})
# Errors that mean a store is down or unreachable, not that the message is bad.
_STORE_DOWN: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,  # a replica after failover: the primary comes back
    redis_errors.OutOfMemoryError,  # maxmemory reached: not the message's fault
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,
    sql_errors.OperationalError,
    sql_errors.InterfaceError,
    sql_errors.TimeoutError,
)


@contextmanager
def _stores() -> Iterator[None]:
    """Turn a store outage into ``StoreUnavailable`` (the consumer retries, does not ack)."""
    try:
        yield
    except _STORE_DOWN as exc:
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
    except sql_errors.DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        raise


# Members of a shared group (several ingest processes) take turns to store a batch: each
# batch reads, works out and writes the lines it touches, and two members doing that at
# once could each overwrite the other's counters. Why it keeps a line's order: every report
# is judged against the line's last seq in Redis, whichever member got it.
STORE_LOCK: Final = "ll:lock:ingest"
STORE_LOCK_TTL_S: Final = 15.0  # a member killed holding it blocks the others this long
STORE_LOCK_WAIT_S: Final = 30.0
# Why not redis-py's default (0.1 s): a member waiting for the other's batch would sleep
# 100 ms between tries, while a batch takes a few ms.
STORE_LOCK_POLL_S: Final = 0.002


class ShopfloorHandler:
    """Called by the consumer with each batch; returns only when the batch is stored.

    ``serialize``: take the group's store lock around each batch (shared-group members).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        live: LiveState,
        clock: Clock,
        *,
        serialize: bool = False,
        member: str = "",
    ) -> None:
        self.sessions = sessions
        self.live = live
        self.clock = clock
        self.serialize = serialize
        # This process's MQTT client id: members of a shared group each have their own
        # broker connection, so each has its own "disconnected" alert (one member coming
        # back must not close another's).
        self.member = member
        self.applied = 0
        self.rejected = 0
        self.rebuilds = 0

    def __call__(self, batch: Sequence[Inbound]) -> None:
        with _stores():
            if not self.serialize:
                self._handle(batch)
                return
            lock = self.live.redis.lock(
                STORE_LOCK,
                timeout=STORE_LOCK_TTL_S,
                sleep=STORE_LOCK_POLL_S,
                blocking_timeout=STORE_LOCK_WAIT_S,
            )
            if not lock.acquire():
                raise StoreUnavailable(f"store lock {STORE_LOCK} held elsewhere too long")
            try:
                self._handle(batch)
            finally:
                with suppress(redis_errors.LockError):  # expired meanwhile: not ours now
                    lock.release()

    def _handle(self, batch: Sequence[Inbound]) -> None:
        reports: list[ProgressMessage | StateMessage] = []
        dead: list[DeadLetter] = []
        topics: dict[int, Inbound] = {}
        for msg in batch:
            try:
                report = parse(msg.topic, msg.payload)
            except Rejected as exc:
                dead.append(_dead(msg.topic, msg.payload, exc.reason, str(exc)))
                continue
            topics[id(report)] = msg
            reports.append(report)
        first, rest = state_first(reports)
        if first and rest:
            self._store(first, [], topics, batch[-1])
            self._store(rest, dead, topics, batch[-1])
        else:
            self._store(reports, dead, topics, batch[-1])

    def _store(
        self,
        reports: Sequence[ProgressMessage | StateMessage],
        dead: list[DeadLetter],
        topics: dict[int, Inbound],
        last: Inbound,
    ) -> None:
        """Apply parsed reports and keep ``dead`` (plus the refused, found in ``topics``:
        ``id(report)`` -> the message it came from); also the Sparkplug adapter's way in."""
        view, outcome = self._plan(reports, last) if reports else (None, ShopfloorOutcome())
        for refused in outcome.refused:
            dead.append(self._refused(topics[id(refused.report)], refused.reason, refused.detail))
        if dead or outcome.gaps or outcome.jumps or outcome.transitions or outcome.first_reports:
            with transaction(self.sessions) as session:
                session.add_all(dead)
                _open_seq_alerts(session, outcome)
                if outcome.transitions:
                    record_transitions(session, outcome.transitions, load_tree(session))
                record_first_reports(session, outcome.first_reports)
        if outcome.updates or outcome.counts:
            # The batch's snapshot writes what it read once (one round trip for the lot),
            # with the OEE unit counts on the same pipeline.
            (view if view is not None else self.live).apply(
                outcome.updates, also=lambda pipe: add_counts(pipe, outcome.counts)
            )
        if outcome.gaps or outcome.jumps:
            with self.sessions() as session:
                mirror_alerts(session, self.live)
        self.applied += len(reports) - len(outcome.refused)
        self.rejected += len(dead)
        for d in dead:
            log.warning("dead letter from %s: %s (%s)", d.topic, d.reason, d.detail)

    def _refused(self, src: Inbound, reason: str, detail: str) -> DeadLetter:
        """The dead letter of a report the live model refused (the Sparkplug handler keeps
        its binary payloads its own way)."""
        return _dead(src.topic, src.payload, reason, detail)

    def _plan(
        self, reports: Sequence[ProgressMessage | StateMessage], last: Inbound
    ) -> tuple[LiveState, ShopfloorOutcome]:
        """What the batch changes, worked out on a view that also writes it.

        One view per batch: the reads of planning and estimating, and the diff of the
        write, share a round trip per entity instead of one per step (a retry reads anew).
        """
        view = self.live.snapshot()
        outcome = plan_reports(
            view,
            reports,
            now=self.clock.now(),
            received_at=last.received_at,
            reordered=self.serialize,
        )
        if any(r.reason in _MISSING for r in outcome.refused) and not self.live.built():
            # Redis restarted empty: rebuild the live model from SQL, as `loopline
            # rebuild-state` does, rather than dead-letter every message as unknown.
            self.rebuild()
            view = self.live.snapshot()
            outcome = plan_reports(
                view,
                reports,
                now=self.clock.now(),
                received_at=last.received_at,
                reordered=self.serialize,
            )
        return view, outcome

    def rebuild(self) -> None:
        """Restore the live model from SQL (lines, open orders, work orders, alerts)."""
        log.warning("live state is gone (Redis restarted empty?): rebuilding it from SQL")
        # The worker's duty lock: a replan or sweep must not interleave with the rebuild.
        lock = self.live.redis.lock(
            DUTY_LOCK, timeout=DUTY_LOCK_TTL_S, blocking_timeout=REPLAN_WAIT_S
        )
        held = lock.acquire()
        try:
            with self.sessions() as session:
                sync_live(session, self.live, now=self.clock.now())
        finally:
            if held:
                with suppress(redis_errors.LockError):  # expired meanwhile: not ours now
                    lock.release()
        self.rebuilds += 1

    def poison(self, msg: Inbound, exc: BaseException) -> None:
        """Dead-letter a message the handler raised on (a bug, not bad input)."""
        with _stores(), transaction(self.sessions) as session:
            session.add(
                _dead(msg.topic, msg.payload, REASON_HANDLER_ERROR, f"{type(exc).__name__}: {exc}")
            )
        self.rejected += 1
        log.error("dead letter from %s: %s (%s)", msg.topic, REASON_HANDLER_ERROR, exc)

    def connection_changed(self, connected: bool, reason: str) -> None:
        """Broker connection state is an alert people can see, one per member."""
        key = disconnected_key(self.member)
        with transaction(self.sessions) as session:
            if connected:
                resolve_alert(session, key=key)
            else:
                feed = f"Shop-floor feed ({self.member})" if self.member else "Shop-floor feed"
                open_alert(
                    session,
                    key=key,
                    kind=MQTT_DISCONNECTED,
                    entity="ingest",
                    entity_id=self.member or "mqtt",
                    severity="critical",
                    role="it",
                    message=f"{feed} disconnected from the broker: {reason}",
                    details={"reason": reason, "member": self.member},
                )
            session.flush()
            mirror_alerts(session, self.live)


def state_first(
    reports: Sequence[ProgressMessage | StateMessage],
) -> tuple[list[ProgressMessage | StateMessage], list[ProgressMessage | StateMessage]]:
    """Split a batch so that state changes are written before the bulk of the progress.

    Why: a batch under load holds thousands of progress reports; a line stopping should
    reach the screens without waiting for all of them. The first part holds, for each line
    with a state report, that line's reports up to its last state report, in order (a
    line's own reports are never reordered: seq gaps stay exact); the rest keeps its order.
    """
    last_state: dict[str, int] = {}
    for i, r in enumerate(reports):
        if r.kind == "state":
            last_state[r.line] = i
    if not last_state:
        return [], list(reports)
    first: list[ProgressMessage | StateMessage] = []
    rest: list[ProgressMessage | StateMessage] = []
    for i, r in enumerate(reports):
        (first if i <= last_state.get(r.line, -1) else rest).append(r)
    return first, rest


MQTT_DISCONNECTED: Final = "mqtt_disconnected"


def disconnected_key(member: str) -> str:
    """The alert key of one ingest member's lost broker connection."""
    return f"{MQTT_DISCONNECTED}:{member}" if member else MQTT_DISCONNECTED


INGEST_OFFLINE: Final = "ingest_offline"


def ingest_status_changed(sessions: sessionmaker[Session], live: LiveState, online: bool) -> None:
    """A dead ingest is an alert: ``ingest_offline`` opens on offline, resolves on online."""
    with transaction(sessions) as session:
        if online:
            resolve_alert(session, key=INGEST_OFFLINE)
        else:
            open_alert(
                session,
                key=INGEST_OFFLINE,
                kind=INGEST_OFFLINE,
                entity="ingest",
                entity_id="mqtt",
                severity="critical",
                role="it",
                message="Shop-floor ingest is offline: no line reports reach Loopline",
                details={"topics": STATUS_FILTER},
            )
        session.flush()
        mirror_alerts(session, live)
    log.log(
        logging.INFO if online else logging.ERROR, "ingest is %s", "online" if online else "offline"
    )


def _open_seq_alerts(session: Session, outcome: ShopfloorOutcome) -> None:
    # One alert per line and kind holds the latest gap: a query per line, not per gap.
    for gap in {g.line: g for g in outcome.gaps}.values():
        open_alert(
            session,
            key=f"mqtt_gap:{gap.line}",
            kind="mqtt_gap",
            entity="line",
            entity_id=gap.line,
            severity="info",
            role="it",
            message=f"Line {gap.line}: messages {gap.expected}–{gap.got - 1} never arrived",
            details={"line": gap.line, "expected": gap.expected, "last": gap.got - 1},
        )
    for jump in {j.line: j for j in outcome.jumps}.values():
        open_alert(
            session,
            key=f"mqtt_seq_reset:{jump.line}",
            kind="mqtt_seq_reset",
            entity="line",
            entity_id=jump.line,
            severity="info",
            role="it",
            message=f"Line {jump.line}: seq jumped from {jump.expected - 1} to {jump.got}; "
            "taken as a counter reset, not as lost messages",
            details={"line": jump.line, "last": jump.expected - 1, "got": jump.got},
        )


def _text(value: str) -> str:
    # Why: PostgreSQL text cannot hold U+0000; the escape keeps what was there visible.
    return value.replace("\x00", "\\u0000")


def _dead(topic: str, payload: bytes, reason: str, detail: str) -> DeadLetter:
    return DeadLetter(
        at=utcnow(),
        source="mqtt",
        topic=_text(topic)[:300],
        reason=_text(reason)[:200],
        detail=_text(detail)[:2000],
        payload=_text(payload[:PAYLOAD_KEEP].decode("utf-8", errors="replace")),
    )
