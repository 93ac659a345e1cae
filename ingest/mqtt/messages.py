"""Shop-floor MQTT messages: topic + payload bytes in, a frozen message or ``Rejected`` out.

Pure parsing, no I/O. The contract is DESIGN.md "MQTT (shop floor → Loopline)":
topic ``loopline/v1/{site}/{line}/{kind}``, names ``[A-Za-z0-9_-]+``, kinds ``progress``
and ``state``, ``ts`` as RFC 3339 or epoch milliseconds. Unknown extra fields are ignored
(the contract lets producers add fields). One added field is read: ``source`` (optional, a
name like the topic's) says which publisher's ``seq`` stream a message belongs to, so a
second device or a hand-typed message on a line has a sequence of its own (default: the
line's own sensor). Another is ``reason_code`` (optional, ``[A-Za-z0-9_.-]{1,64}``): on a
state message the downtime reason tree's code of the stop, on a progress message the code
of the scrap it counts (models/downtime.py).

Hot path: one pydantic-core ``validate_json`` call (JSON decoding and field checks in Rust)
plus a little Python for the timestamp. Only a payload that fails takes the slow path that
works out which machine-readable reason to give.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Final, Literal, NotRequired

from pydantic import (
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    with_config,
)
from pydantic import ValidationError as _ValidationError
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

MAX_PAYLOAD_BYTES: Final = 64 * 1024
TOPIC_PREFIX: Final = "loopline/v1/"
KINDS: Final = ("progress", "state")
STATES: Final = ("running", "idle", "down", "changeover")

# The machine-readable reasons a message is rejected with (dead-letter records keep them).
REASON_BAD_TOPIC: Final = "bad_topic"
REASON_UNKNOWN_KIND: Final = "unknown_kind"
REASON_TOO_LARGE: Final = "too_large"
REASON_NOT_UTF8: Final = "not_utf8"
REASON_INVALID_JSON: Final = "invalid_json"
REASON_NOT_OBJECT: Final = "not_object"
REASON_MISSING_FIELD: Final = "missing_field"
REASON_INVALID_FIELD: Final = "invalid_field"
REASON_NEGATIVE_COUNTER: Final = "negative_counter"
REASON_BAD_TS: Final = "bad_ts"
REASON_UNKNOWN_STATE: Final = "unknown_state"
REASON_IMPLAUSIBLE_COUNTER: Final = "implausible_counter"
REASON_IMPLAUSIBLE_SEQ: Final = "implausible_seq"
REASON_NUL_BYTE: Final = "nul_byte"
REASONS: Final = (
    REASON_BAD_TOPIC,
    REASON_UNKNOWN_KIND,
    REASON_TOO_LARGE,
    REASON_NOT_UTF8,
    REASON_INVALID_JSON,
    REASON_NOT_OBJECT,
    REASON_MISSING_FIELD,
    REASON_INVALID_FIELD,
    REASON_NEGATIVE_COUNTER,
    REASON_BAD_TS,
    REASON_UNKNOWN_STATE,
    REASON_IMPLAUSIBLE_COUNTER,
    REASON_IMPLAUSIBLE_SEQ,
    REASON_NUL_BYTE,
)

# Why 2^53: the largest integer every JSON reader (JavaScript screens too) holds exactly;
# far below what a BIGINT column holds. A counter or seq above it is no real sensor's.
MAX_SEQ: Final = 2**53
MAX_COUNTER: Final = 2**53
# The id columns a topic's names end up in (models/records.py: site.id, line.id, work_order.id).
MAX_NAME_CHARS: Final = 64
MAX_WORK_ORDER_CHARS: Final = 80
_MAX_EPOCH_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_MAX_TEXT: Final = 256
_DETAIL_INPUT_CHARS: Final = 80

_TOPIC_RE: Final = re.compile(r"loopline/v1/([A-Za-z0-9_-]+)/([A-Za-z0-9_-]+)/([A-Za-z0-9_-]+)")

State = Literal["running", "idle", "down", "changeover"]


class Rejected(Exception):
    """A message that cannot be accepted; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, detail: str = "", field: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.field = field


@dataclass(frozen=True, slots=True)
class ProgressMessage:
    """Cumulative good/scrap counters of one work order on one line."""

    kind: ClassVar[str] = "progress"
    site: str
    line: str
    seq: int
    ts: datetime
    work_order: str
    good: int
    scrap: int
    source: str = ""
    reason_code: str | None = None


@dataclass(frozen=True, slots=True)
class StateMessage:
    """A line's machine state, with an optional reason (``"jam"``)."""

    kind: ClassVar[str] = "state"
    site: str
    line: str
    seq: int
    ts: datetime
    state: State
    reason: str | None
    source: str = ""
    reason_code: str | None = None


Message = ProgressMessage | StateMessage

_Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]
_Count = Annotated[int, Field(ge=0, le=MAX_COUNTER)]
_Ts = StrictStr | StrictInt | StrictFloat
_Source = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
_ReasonCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
_STRICT = ConfigDict(strict=True, extra="ignore")


@with_config(_STRICT)
class _ProgressBody(TypedDict):
    seq: _Seq
    ts: _Ts
    work_order: Annotated[str, Field(min_length=1, max_length=MAX_WORK_ORDER_CHARS)]
    good: _Count
    scrap: _Count
    source: NotRequired[_Source]
    reason_code: NotRequired[_ReasonCode | None]


@with_config(_STRICT)
class _StateBody(TypedDict):
    seq: _Seq
    ts: _Ts
    state: State
    reason: NotRequired[Annotated[str, Field(max_length=_MAX_TEXT)] | None]
    source: NotRequired[_Source]
    reason_code: NotRequired[_ReasonCode | None]


_PROGRESS: Final = TypeAdapter(_ProgressBody)
_STATE: Final = TypeAdapter(_StateBody)


def parse(topic: str, payload: bytes) -> Message:
    """Parse one MQTT message; raise ``Rejected`` with the reason when it is malformed."""
    match = _TOPIC_RE.fullmatch(topic)
    if match is None:
        raise Rejected(REASON_BAD_TOPIC, f"topic {topic[:120]!r} is not loopline/v1/site/line/kind")
    site, line, kind = match.groups()
    if len(site) > MAX_NAME_CHARS or len(line) > MAX_NAME_CHARS:
        raise Rejected(
            REASON_BAD_TOPIC, f"topic {topic[:120]!r}: names are at most {MAX_NAME_CHARS} chars"
        )
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected(REASON_TOO_LARGE, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    # Why refuse NUL: PostgreSQL text cannot hold it, and no sensor means it (a C string bug).
    nul = payload.find(b"\x00")
    if nul >= 0:
        raise Rejected(REASON_NUL_BYTE, f"byte {nul} is NUL")
    if kind == "progress":
        try:
            p = _PROGRESS.validate_json(payload)
        except _ValidationError as exc:
            raise _explain(exc, payload) from None
        if "\x00" in p["work_order"]:
            raise Rejected(REASON_NUL_BYTE, "work_order contains U+0000", "work_order")
        return ProgressMessage(
            site,
            line,
            p["seq"],
            _timestamp(p["ts"]),
            p["work_order"],
            p["good"],
            p["scrap"],
            p.get("source", ""),
            p.get("reason_code"),
        )
    if kind == "state":
        try:
            s = _STATE.validate_json(payload)
        except _ValidationError as exc:
            raise _explain(exc, payload) from None
        reason = s.get("reason")
        if reason is not None and "\x00" in reason:
            raise Rejected(REASON_NUL_BYTE, "reason contains U+0000", "reason")
        return StateMessage(
            site,
            line,
            s["seq"],
            _timestamp(s["ts"]),
            s["state"],
            reason,
            s.get("source", ""),
            s.get("reason_code"),
        )
    raise Rejected(REASON_UNKNOWN_KIND, f"kind {kind!r} is not one of {', '.join(KINDS)}")


def _timestamp(value: str | int | float) -> datetime:
    """RFC 3339 text with an offset, or epoch milliseconds, as an aware UTC datetime."""
    if isinstance(value, str):
        # Why the shape check: fromisoformat also takes dates alone and ISO "basic" forms.
        if len(value) < 20 or value[4] != "-" or value[7] != "-" or value[10] not in "Tt ":
            raise Rejected(REASON_BAD_TS, f"ts {value[:40]!r} is not RFC 3339", "ts")
        try:
            # RFC 3339 allows lower-case "t" and "z"; fromisoformat does not.
            parsed = datetime.fromisoformat(value if value[-1] != "z" else value.upper())
        except ValueError:
            raise Rejected(REASON_BAD_TS, f"ts {value[:40]!r} is not RFC 3339", "ts") from None
        if parsed.tzinfo is None:
            raise Rejected(REASON_BAD_TS, f"ts {value[:40]!r} has no UTC offset", "ts")
        return parsed.astimezone(UTC)
    if not math.isfinite(value) or value < 0 or value > _MAX_EPOCH_MS:
        raise Rejected(REASON_BAD_TS, f"ts {value!r} is not epoch milliseconds", "ts")
    return datetime.fromtimestamp(value / 1000, UTC)


def _explain(exc: _ValidationError, payload: bytes) -> Rejected:
    """Turn pydantic's first error into one machine-readable reason (the slow path)."""
    errors = exc.errors(include_url=False, include_context=False)
    first = errors[0]
    kind = first["type"]
    loc = first["loc"]
    if kind == "json_invalid":
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as err:
            return Rejected(REASON_NOT_UTF8, f"byte {err.start} is not UTF-8")
        return Rejected(REASON_INVALID_JSON, first["msg"])
    if not loc:
        return Rejected(REASON_NOT_OBJECT, "payload is not a JSON object")
    # Why missing first: "ts is missing" is more useful than a type error elsewhere.
    for error in errors:
        if error["type"] == "missing":
            name = str(error["loc"][0])
            return Rejected(REASON_MISSING_FIELD, f"{name} is required", name)
    name = str(loc[0])
    got = _cut(first.get("input"))
    if name == "ts":
        return Rejected(REASON_BAD_TS, f"ts {got} is neither RFC 3339 text nor epoch ms", name)
    if name == "state":
        return Rejected(
            REASON_UNKNOWN_STATE, f"state {got} is not one of {', '.join(STATES)}", name
        )
    if name in ("good", "scrap") and kind == "greater_than_equal":
        return Rejected(REASON_NEGATIVE_COUNTER, f"{name} {got} is negative", name)
    if name in ("good", "scrap") and kind == "less_than_equal":
        return Rejected(REASON_IMPLAUSIBLE_COUNTER, f"{name} {got} exceeds {MAX_COUNTER}", name)
    if name == "seq" and kind == "less_than_equal":
        return Rejected(REASON_IMPLAUSIBLE_SEQ, f"seq {got} exceeds {MAX_SEQ}", name)
    return Rejected(REASON_INVALID_FIELD, f"{name} {got}: {first['msg']}", name)


def _cut(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _DETAIL_INPUT_CHARS else text[:_DETAIL_INPUT_CHARS] + "…"
