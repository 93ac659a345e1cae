"""The downtime reason tree (the six big losses) and the stops of each line.

Every reason code belongs to one of the six big losses. Stops (``LineStop``) are opened
and closed by the state reports a line sends; a stop the line gave no known code for is
*unexplained* until an operator assigns one on the andon screen. Two rules classify a
stop without a code: a changeover is setup, and a stop shorter than ``small_stop_max_s``
is a small stop (it costs performance, not availability).

The tree is configurable: ``loopline import-factory`` takes a ``downtime`` section
(``DowntimeConfig``); until one was imported the built-in ``DEFAULT_TREE`` holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from loopline.models.oee_records import LineStop, OeeConfig, OeeLineStart

Loss = Literal[
    "breakdown", "setup", "small_stop", "slow_cycle", "startup_reject", "production_reject"
]
LOSSES: Final[tuple[str, ...]] = get_args(Loss)
# Losses that take time out of availability (the rest cost performance or quality).
AVAILABILITY_LOSSES: Final = frozenset({"breakdown", "setup"})
STOP_LOSSES: Final = frozenset({"breakdown", "setup", "small_stop"})
REJECT_LOSSES: Final = frozenset({"startup_reject", "production_reject"})
UNEXPLAINED: Final = "unexplained"
STOP_STATES: Final = frozenset({"down", "idle", "changeover"})
DEFAULT_SMALL_STOP_MAX_S: Final = 300.0
_CODE = r"^[A-Za-z0-9_.-]{1,64}$"


class ReasonIn(BaseModel):
    """One node of the tree; children inherit the loss of their parent."""

    model_config = ConfigDict(extra="forbid", strict=True)
    code: Annotated[str, Field(pattern=_CODE)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    loss: Loss | None = None
    children: list[ReasonIn] = Field(default_factory=list)


class ShiftIn(BaseModel):
    """A daily shift for lines whose calendar names none (times of day, local)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: Annotated[str, Field(min_length=1, max_length=64)]
    start: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
    end: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]


class DowntimeConfig(BaseModel):
    """The ``downtime`` section of the factory file."""

    model_config = ConfigDict(extra="forbid", strict=True)
    small_stop_max_s: Annotated[float, Field(gt=0, le=24 * 3600)] = DEFAULT_SMALL_STOP_MAX_S
    shifts: list[ShiftIn] = Field(default_factory=list)
    reasons: Annotated[list[ReasonIn], Field(min_length=1)]

    @model_validator(mode="after")
    def _every_code_once_with_a_loss(self) -> DowntimeConfig:
        seen: set[str] = set()

        def walk(nodes: list[ReasonIn], loss: str | None, path: str) -> None:
            for k, node in enumerate(nodes):
                where = f"{path}[{k}]"
                if node.code in seen:
                    raise ValueError(f"{where}.code: '{node.code}' appears twice")
                seen.add(node.code)
                own = node.loss or loss
                if own is None:
                    raise ValueError(f"{where}.loss: a top-level reason needs a loss")
                if loss is not None and node.loss is not None and node.loss != loss:
                    raise ValueError(f"{where}.loss: '{node.loss}' differs from its parent's")
                walk(node.children, own, f"{where}.children")

        walk(self.reasons, None, "reasons")
        names = [s.name for s in self.shifts]
        if len(set(names)) != len(names):
            raise ValueError("shifts: names must be unique")
        return self


@dataclass(frozen=True)
class Reason:
    """A code of the tree with its loss and its place in it."""

    code: str
    name: str
    loss: str
    parent: str | None
    leaf: bool


@dataclass(frozen=True)
class DailyShift:
    name: str
    start: time
    end: time


@dataclass(frozen=True)
class ReasonTree:
    """The tree flattened: every code, in file order."""

    reasons: tuple[Reason, ...]
    small_stop_max_s: float
    shifts: tuple[DailyShift, ...]

    def get(self, code: str | None) -> Reason | None:
        """The reason of ``code``; None for no code or one the tree does not know."""
        if code is None:
            return None
        for r in self.reasons:
            if r.code == code:
                return r
        return None

    def leaves(self) -> list[Reason]:
        """The codes an operator picks from (the most specific ones)."""
        return [r for r in self.reasons if r.leaf]

    def first_of(self, loss: str) -> Reason | None:
        """The top-level code of a loss (what an uncoded changeover or small stop gets)."""
        return next((r for r in self.reasons if r.loss == loss and r.parent is None), None)


DEFAULT_TREE: Final[dict[str, Any]] = {
    "small_stop_max_s": DEFAULT_SMALL_STOP_MAX_S,
    "shifts": [
        {"name": "early", "start": "06:00", "end": "14:00"},
        {"name": "late", "start": "14:00", "end": "22:00"},
        {"name": "night", "start": "22:00", "end": "06:00"},
    ],
    "reasons": [
        {
            "code": "BD",
            "name": "Breakdown",
            "loss": "breakdown",
            "children": [
                {"code": "BD-MECH", "name": "Mechanical failure"},
                {"code": "BD-ELEC", "name": "Electrical failure"},
                {"code": "BD-TOOL", "name": "Tool broken"},
            ],
        },
        {
            "code": "SU",
            "name": "Setup and adjustment",
            "loss": "setup",
            "children": [
                {"code": "SU-CHANGEOVER", "name": "Product changeover"},
                {"code": "SU-ADJUST", "name": "Adjustment"},
                {"code": "SU-MATERIAL", "name": "Waiting for material"},
            ],
        },
        {
            "code": "SS",
            "name": "Small stop",
            "loss": "small_stop",
            "children": [
                {"code": "SS-JAM", "name": "Jam"},
                {"code": "SS-SENSOR", "name": "Sensor blocked"},
            ],
        },
        {
            "code": "SC",
            "name": "Slow cycle",
            "loss": "slow_cycle",
            "children": [{"code": "SC-WEAR", "name": "Worn tooling"}],
        },
        {
            "code": "SR",
            "name": "Startup reject",
            "loss": "startup_reject",
            "children": [{"code": "SR-WARMUP", "name": "Warm-up scrap"}],
        },
        {
            "code": "PR",
            "name": "Production reject",
            "loss": "production_reject",
            "children": [{"code": "PR-DIM", "name": "Out of tolerance"}],
        },
    ],
}


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def tree_from(config: DowntimeConfig) -> ReasonTree:
    """Flatten a checked config."""
    out: list[Reason] = []

    def walk(nodes: list[ReasonIn], loss: str | None, parent: str | None) -> None:
        for node in nodes:
            own = str(node.loss or loss)
            out.append(Reason(node.code, node.name, own, parent, not node.children))
            walk(node.children, own, node.code)

    walk(config.reasons, None, None)
    return ReasonTree(
        reasons=tuple(out),
        small_stop_max_s=config.small_stop_max_s,
        shifts=tuple(DailyShift(s.name, _hhmm(s.start), _hhmm(s.end)) for s in config.shifts),
    )


def default_tree() -> ReasonTree:
    """The built-in tree."""
    return tree_from(DowntimeConfig.model_validate(DEFAULT_TREE))


def load_tree(session: Session) -> ReasonTree:
    """The plant's tree (the imported one, else the built-in one)."""
    row = session.get(OeeConfig, 1)
    if row is None:
        return default_tree()
    return tree_from(DowntimeConfig.model_validate(row.config))


def save_tree(session: Session, config: DowntimeConfig) -> None:
    """Replace the plant's tree (stops keep the codes they have)."""
    data = config.model_dump(mode="json")
    row = session.get(OeeConfig, 1)
    if row is None:
        session.add(OeeConfig(id=1, config=data))
    else:
        row.config = data


# -- stops ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Transition:
    """A line's reported state changed at ``at`` (or a running stop got a code)."""

    line: str
    at: datetime
    state: str
    reason: str | None
    reason_code: str | None
    new_state: bool


def record_transitions(
    session: Session, transitions: Sequence[Transition], tree: ReasonTree
) -> None:
    """Close and open stops for state changes, in order. Idempotent: a batch handed back
    after a failure records the same stops again without duplicating them."""
    for tr in transitions:
        known = tree.get(tr.reason_code)
        if not tr.new_state:
            # The same stop, now with a code: the sensor's diagnosis came after the stop.
            if known is not None:
                session.execute(
                    update(LineStop)
                    .where(
                        LineStop.line_id == tr.line,
                        LineStop.ended_at.is_(None),
                        LineStop.assigned_by.is_(None),
                    )
                    .values(sensor_code=tr.reason_code, reason_code=known.code)
                )
            continue
        session.execute(
            update(LineStop)
            .where(
                LineStop.line_id == tr.line,
                LineStop.ended_at.is_(None),
                LineStop.started_at < tr.at,
            )
            .values(ended_at=tr.at)
        )
        if tr.state in STOP_STATES:
            _insert_ignore(
                session,
                {
                    "line_id": tr.line,
                    "started_at": tr.at,
                    "state": tr.state,
                    "sensor_reason": tr.reason,
                    "sensor_code": tr.reason_code,
                    "reason_code": known.code if known else None,
                },
            )


def record_first_reports(session: Session, firsts: Sequence[tuple[str, datetime]]) -> None:
    """Note when lines were first heard from (the earliest note stays)."""
    for line_id, at in firsts:
        _insert_ignore(session, {"line_id": line_id, "first_report_at": at}, OeeLineStart)


def first_report(session: Session, line_id: str) -> datetime | None:
    """When Loopline first heard from a line; None: never (or before OEE was recorded)."""
    row = session.get(OeeLineStart, line_id)
    return row.first_report_at if row else None


def _insert_ignore(session: Session, values: dict[str, Any], table: Any = LineStop) -> None:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table).values(**values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).values(**values).on_conflict_do_nothing()
    else:  # pragma: no cover - the two backends Loopline runs on
        raise RuntimeError(f"unsupported database {dialect}")
    session.execute(stmt)


def stops_between(session: Session, line_id: str, start: datetime, end: datetime) -> list[LineStop]:
    """The stops of a line overlapping ``[start, end)``, oldest first."""
    return list(
        session.scalars(
            select(LineStop)
            .where(
                LineStop.line_id == line_id,
                LineStop.started_at < end,
                (LineStop.ended_at.is_(None)) | (LineStop.ended_at > start),
            )
            .order_by(LineStop.started_at)
        )
    )


def loss_of(stop: LineStop, tree: ReasonTree, *, end: datetime) -> tuple[str, str | None]:
    """The loss a stop counts against and the code it is counted under (None: unexplained).

    ``end`` closes a stop that is still open (for its length).
    """
    known = tree.get(stop.reason_code)
    if known is not None:
        return known.loss, known.code
    if stop.state == "changeover":
        setup = tree.first_of("setup")
        return "setup", setup.code if setup else None
    length = ((stop.ended_at or end) - stop.started_at).total_seconds()
    if stop.ended_at is not None and length < tree.small_stop_max_s:
        small = tree.first_of("small_stop")
        return "small_stop", small.code if small else None
    return UNEXPLAINED, None


def unexplained_stops(
    session: Session,
    tree: ReasonTree,
    *,
    now: datetime,
    line_id: str | None = None,
    limit: int = 50,
) -> list[LineStop]:
    """Stops that wait for an operator's reason (newest first); an open one counts once
    it has lasted longer than a small stop."""
    query = select(LineStop).where(LineStop.reason_code.is_(None), LineStop.state != "changeover")
    if line_id is not None:
        query = query.where(LineStop.line_id == line_id)
    rows = session.scalars(query.order_by(LineStop.started_at.desc()).limit(limit * 4))
    out = [s for s in rows if loss_of(s, tree, end=now)[0] == UNEXPLAINED]
    return [
        s
        for s in out
        if s.ended_at is not None or (now - s.started_at).total_seconds() >= tree.small_stop_max_s
    ][:limit]


class UnknownReason(ValueError):
    """A code the tree does not have, or one that is not a leaf."""


def assign_reason(
    session: Session, *, stop_id: int, code: str, actor: str, now: datetime, tree: ReasonTree
) -> LineStop | None:
    """Give a stop an operator's reason; None when there is no such stop."""
    reason = tree.get(code)
    if reason is None:
        raise UnknownReason(f"code: '{code}' is not in the reason tree")
    stop = session.get(LineStop, stop_id)
    if stop is None:
        return None
    stop.reason_code = reason.code
    stop.assigned_by = actor
    stop.assigned_at = now
    session.flush()
    return stop


def stop_view(stop: LineStop, tree: ReasonTree, *, now: datetime) -> dict[str, Any]:
    """A stop as the API and the andon screen show it."""
    loss, code = loss_of(stop, tree, end=now)
    reason = tree.get(code)
    end = stop.ended_at or now
    return {
        "id": stop.id,
        "line": stop.line_id,
        "state": stop.state,
        "started_at": _iso(stop.started_at),
        "ended_at": _iso(stop.ended_at) if stop.ended_at else None,
        "duration_s": round((end - stop.started_at).total_seconds(), 3),
        "sensor_reason": stop.sensor_reason,
        "sensor_code": stop.sensor_code,
        "reason_code": code,
        "reason_name": reason.name if reason else None,
        "loss": loss,
        "assigned_by": stop.assigned_by,
    }


def reason_views(tree: ReasonTree) -> list[dict[str, Any]]:
    """The tree as flat rows (code, name, loss, parent, leaf)."""
    return [
        {"code": r.code, "name": r.name, "loss": r.loss, "parent": r.parent, "leaf": r.leaf}
        for r in tree.reasons
    ]


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
