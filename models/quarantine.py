"""Quarantine: an order, work order or line whose data makes one of the worker's duties fail
(or is not believable) is left out of that duty, with one alert, and the rest of the plant
goes on. The alert clears by itself once every duty accepts the entity's data again.

A duty step runs first as one unit (fast); if it fails, ``run_isolated`` rolls it back and
runs it again with each entity in its own savepoint, so only the bad one is lost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopline.models.alerts import ACTIVE, open_alert, resolve_alert
from loopline.models.records import Alert

log = logging.getLogger("loopline.quarantine")

T = TypeVar("T")

QUARANTINE_KIND = "quarantined"
# The SQL counters (work_order.good, scrap) are 32-bit on PostgreSQL.
MAX_COUNT = 2**31 - 1
# Good or scrap beyond this many times the work order's quantity is a bad value, not a
# count (ingest bounds counters at the edge; this catches what got past it).
COUNT_OVERRUN_FACTOR = 10
# How much of an error goes into an alert; alert columns have fixed widths.
ERROR_MAX_CHARS = 300
ENTITY_ID_MAX_CHARS = 80
KEY_MAX_CHARS = 200
ENTITY_LABEL = {"order": "Order", "work_order": "Work order", "line": "Line"}


def count_problem(fields: Mapping[str, Any], qty: Any) -> str | None:
    """Why a work order's counters (``good``, ``scrap``) are not believable; None when they are.

    Without a quantity (live state not yet filled from SQL) only the 32-bit bound applies.
    """
    if qty is None:
        limit = MAX_COUNT
    elif isinstance(qty, bool) or not isinstance(qty, int | float) or not qty > 0:
        return f"qty {_cut(qty)} is not a positive number"
    else:
        limit = int(min(MAX_COUNT, COUNT_OVERRUN_FACTOR * qty))
    for name in ("good", "scrap"):
        value = fields.get(name)
        if value is None:
            continue
        whole = isinstance(value, int) or (
            isinstance(value, float) and math.isfinite(value) and value.is_integer()
        )
        if isinstance(value, bool) or not whole:
            return f"{name} {_cut(value)} is not a whole number"
        if value < 0:
            return f"{name} {value} is negative"
        if value > limit:
            return f"{name} {value} is implausible for a quantity of {qty} (limit {limit})"
    return None


def describe(error: BaseException | str) -> str:
    """An error as one short line for an alert."""
    if isinstance(error, str):
        text = error
    else:
        text = f"{type(error).__name__}: {error}".splitlines()[0] if str(error) else ""
        text = text or type(error).__name__
    return _clean(text)[:ERROR_MAX_CHARS]


class Findings:
    """What the steps of one duty left out, and why; ``record`` turns it into alerts."""

    def __init__(self) -> None:
        # (entity, id) -> step -> error
        self.flagged: dict[tuple[str, str], dict[str, str]] = {}
        self.context: dict[tuple[str, str], dict[str, str]] = {}
        self.ran: set[str] = set()  # steps that looked at every entity (so may clear)

    def flag(
        self, step: str, entity: str, entity_id: Any, error: BaseException | str, **context: str
    ) -> None:
        """Leave one entity out of ``step`` because of ``error``."""
        ident = (entity, _clean(str(entity_id))[:ENTITY_ID_MAX_CHARS])
        text = describe(error)
        # Debug only: every sweep finds it again; ``record`` logs the quarantine once.
        log.debug("%s %s left out of %s: %s", entity, ident[1], step, text)
        self.flagged.setdefault(ident, {})[step] = text
        if context:
            self.context.setdefault(ident, {}).update(
                {k: _clean(str(v))[:ENTITY_ID_MAX_CHARS] for k, v in context.items()}
            )

    def is_flagged(self, step: str, entity: str, entity_id: Any) -> bool:
        """Whether ``step`` left this entity out."""
        return step in self.flagged.get((entity, str(entity_id)), {})

    def forget(self, step: str) -> None:
        """Drop what ``step`` found so far (before it runs again)."""
        for steps in self.flagged.values():
            steps.pop(step, None)
        self.flagged = {k: v for k, v in self.flagged.items() if v}

    def finished(self, step: str) -> None:
        """``step`` looked at every entity: what it did not flag is good again."""
        self.ran.add(step)

    @contextmanager
    def guard(self, step: str, entity: str, entity_id: Any, **context: str) -> Iterator[None]:
        """Run one entity's part of a step; an error flags the entity and is swallowed."""
        try:
            yield
        except Exception as exc:  # one entity's bad data must not stop the others
            log.debug("%s %s failed in %s", entity, entity_id, step, exc_info=True)
            self.flag(step, entity, entity_id, exc, **context)

    @contextmanager
    def unit(
        self,
        session: Session,
        step: str,
        entity: str,
        entity_id: Any,
        *,
        isolate: bool,
        **context: str,
    ) -> Iterator[None]:
        """One entity's SQL work: in its own savepoint when ``isolate``, else plain (an
        error then fails the whole step, which ``run_isolated`` runs again isolated)."""
        if not isolate:
            yield
            return
        with self.guard(step, entity, entity_id, **context), session.begin_nested():
            yield
            session.flush()


def run_isolated(
    session: Session, findings: Findings, step: str, work: Callable[[bool], T]
) -> T | None:
    """Run ``work(isolate=False)`` in a savepoint; if it fails, roll it back and run
    ``work(isolate=True)``, which keeps each entity in its own savepoint. None when even
    that fails (the step is skipped this time, the transaction stays usable)."""
    try:
        with session.begin_nested():
            result = work(False)
            session.flush()
        return result
    except Exception as exc:
        log.debug("%s failed as a whole (%s); again entity by entity", step, describe(exc))
    findings.forget(step)
    try:
        with session.begin_nested():
            result = work(True)
            session.flush()
        return result
    except Exception:
        log.exception("%s failed even entity by entity", step)
        return None


def quarantine_key(entity: str, entity_id: str) -> str:
    """The alert key of one quarantined entity."""
    return f"{QUARANTINE_KIND}:{entity}:{entity_id}"[:KEY_MAX_CHARS]


def record(session: Session, findings: Findings, *, now: datetime) -> None:
    """Open (once) an alert per entity some step left out; update or clear the others:
    an entity's alert resolves when no step leaves it out any more."""
    active = {
        (a.entity, a.entity_id): a
        for a in session.scalars(
            select(Alert).where(Alert.kind == QUARANTINE_KIND, Alert.status.in_(ACTIVE))
        )
    }
    for ident in set(active) | set(findings.flagged):
        alert = active.get(ident)
        old_steps: dict[str, str] = dict((alert.details or {}).get("steps", {})) if alert else {}
        steps = {s: e for s, e in old_steps.items() if s not in findings.ran}
        steps.update(findings.flagged.get(ident, {}))
        entity, entity_id = ident
        key = quarantine_key(entity, entity_id)
        if not steps:
            resolve_alert(session, key=key, now=now)
            log.info("%s %s out of quarantine", entity, entity_id)
            continue
        context = {**((alert.details or {}).get("context", {}) if alert else {})}
        context.update(findings.context.get(ident, {}))
        if alert is None:
            log.warning("%s %s quarantined: %s", entity, entity_id, steps)
        open_alert(
            session,
            key=key,
            kind=QUARANTINE_KIND,
            entity=entity,
            entity_id=entity_id,
            severity="critical",
            role="it",
            message=_message(entity, entity_id, steps, context),
            details={entity: entity_id, "steps": steps, "context": context},
            at=now,
        )


def _message(entity: str, entity_id: str, steps: dict[str, str], context: dict[str, str]) -> str:
    label = ENTITY_LABEL.get(entity, entity)
    of = f" (order {context['order']})" if context.get("order") else ""
    names = ", ".join(sorted(steps))
    error = steps[sorted(steps)[0]]
    return f"{label} {entity_id}{of} quarantined, left out of {names}: {error}"


def _clean(text: str) -> str:
    """Text safe for any SQL column: no NUL, no control characters."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _cut(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
