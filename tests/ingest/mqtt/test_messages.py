"""Parsing shop-floor MQTT messages: the contract's happy paths and every rejection reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from loopline.ingest.mqtt.messages import (
    MAX_COUNTER,
    MAX_NAME_CHARS,
    MAX_PAYLOAD_BYTES,
    MAX_SEQ,
    REASONS,
    ProgressMessage,
    Rejected,
    StateMessage,
    parse,
)

PROGRESS = "loopline/v1/plant-1/L1/progress"
STATE = "loopline/v1/plant-1/L1/state"
T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def progress(**over: object) -> bytes:
    fields: dict[str, object] = {
        "seq": 41,
        "ts": "2026-11-28T08:00:00Z",
        "work_order": "WO-1001-1",
        "good": 1250,
        "scrap": 7,
    }
    fields.update(over)
    return body(**{k: v for k, v in fields.items() if v is not ...})


def state(**over: object) -> bytes:
    fields: dict[str, object] = {"seq": 42, "ts": "2026-11-28T08:00:00Z", "state": "down"}
    fields.update(over)
    return body(**{k: v for k, v in fields.items() if v is not ...})


def rejected(topic: str, payload: bytes) -> Rejected:
    with pytest.raises(Rejected) as info:
        parse(topic, payload)
    assert info.value.reason in REASONS
    return info.value


# -- happy paths ----------------------------------------------------------------------------


def test_progress_from_the_contract_example() -> None:
    msg = parse(PROGRESS, progress())
    assert msg == ProgressMessage(
        site="plant-1", line="L1", seq=41, ts=T0, work_order="WO-1001-1", good=1250, scrap=7
    )
    assert msg.kind == "progress"


def test_state_with_reason() -> None:
    msg = parse(STATE, state(reason="jam"))
    assert msg == StateMessage("plant-1", "L1", 42, T0, "down", "jam")
    assert msg.kind == "state"


@pytest.mark.parametrize("reason", [..., None])
def test_state_reason_is_optional(reason: object) -> None:
    msg = parse(STATE, state(state="running", reason=reason))
    assert isinstance(msg, StateMessage)
    assert msg.reason is None


@pytest.mark.parametrize("value", ["running", "idle", "down", "changeover"])
def test_every_state_is_accepted(value: str) -> None:
    assert parse(STATE, state(state=value)).state == value  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "ts",
    [
        "2026-11-28T08:00:00Z",
        "2026-11-28T09:00:00+01:00",
        "2026-11-28t08:00:00z",
        "2026-11-28 08:00:00.000Z",
        1795852800000,  # epoch milliseconds, int
        1795852800000.0,  # and float
    ],
)
def test_ts_forms_become_aware_utc(ts: object) -> None:
    msg = parse(PROGRESS, progress(ts=ts))
    assert msg.ts == T0
    assert msg.ts.tzinfo is UTC


def test_epoch_ms_keeps_milliseconds() -> None:
    msg = parse(PROGRESS, progress(ts=1795852800123))
    assert msg.ts == datetime(2026, 11, 28, 8, 0, 0, 123000, tzinfo=UTC)


def test_extra_fields_are_ignored() -> None:
    assert parse(PROGRESS, progress(operator="li.na", firmware=3)).good == 1250


def test_names_may_use_dash_and_underscore() -> None:
    msg = parse("loopline/v1/site_2/line-A9/state", state())
    assert (msg.site, msg.line) == ("site_2", "line-A9")


def test_zero_counters_and_payload_at_the_limit() -> None:
    pad = " " * (MAX_PAYLOAD_BYTES - len(progress(good=0, scrap=0)))
    msg = parse(PROGRESS, progress(good=0, scrap=0) + pad.encode())
    assert (msg.good, msg.scrap) == (0, 0)


def test_messages_are_frozen() -> None:
    msg = parse(PROGRESS, progress())
    with pytest.raises(AttributeError):
        msg.good = 1  # type: ignore[misc]


# -- rejections -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic",
    [
        "loopline/v1/plant-1/L1",
        "loopline/v1/plant-1/L1/progress/extra",
        "loopline/v2/plant-1/L1/progress",
        "other/v1/plant-1/L1/progress",
        "loopline/v1/plant 1/L1/progress",
        "loopline/v1/plant.1/L1/progress",
        "loopline/v1//L1/progress",
        "loopline/v1/plänt/L1/progress",
    ],
)
def test_bad_topic(topic: str) -> None:
    assert rejected(topic, progress()).reason == "bad_topic"


def test_unknown_kind() -> None:
    err = rejected("loopline/v1/plant-1/L1/temperature", progress())
    assert err.reason == "unknown_kind"
    assert "temperature" in err.detail


def test_too_large() -> None:
    payload = progress() + b" " * MAX_PAYLOAD_BYTES
    assert rejected(PROGRESS, payload).reason == "too_large"


@pytest.mark.parametrize("payload", [b"\xff\xfe{}", b'{"work_order": "\xc3("}'])
def test_not_utf8(payload: bytes) -> None:
    assert rejected(PROGRESS, payload).reason == "not_utf8"


@pytest.mark.parametrize("payload", [b"", b"{", b'{"seq": 1,}', b"{'seq': 1}"])
def test_invalid_json(payload: bytes) -> None:
    assert rejected(PROGRESS, payload).reason == "invalid_json"


@pytest.mark.parametrize("payload", [b"[]", b"42", b'"progress"', b"null", b"NaN"])
def test_not_object(payload: bytes) -> None:
    assert rejected(STATE, payload).reason == "not_object"


@pytest.mark.parametrize("field", ["seq", "ts", "work_order", "good", "scrap"])
def test_missing_progress_field(field: str) -> None:
    err = rejected(PROGRESS, progress(**{field: ...}))
    assert (err.reason, err.field) == ("missing_field", field)
    assert field in str(err)


@pytest.mark.parametrize("field", ["seq", "ts", "state"])
def test_missing_state_field(field: str) -> None:
    err = rejected(STATE, state(**{field: ...}))
    assert (err.reason, err.field) == ("missing_field", field)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", "41"),
        ("seq", 41.0),
        ("seq", True),
        ("seq", -1),
        ("work_order", ""),
        ("work_order", 1001),
        ("work_order", "W" * 81),  # work_order.id is 80 characters
        ("good", "1250"),
        ("good", 12.5),
        ("scrap", None),
    ],
)
def test_invalid_progress_field(field: str, value: object) -> None:
    err = rejected(PROGRESS, progress(**{field: value}))
    assert (err.reason, err.field) == ("invalid_field", field)


def test_invalid_state_reason_field() -> None:
    err = rejected(STATE, state(reason=["jam"]))
    assert (err.reason, err.field) == ("invalid_field", "reason")


@pytest.mark.parametrize("field", ["good", "scrap"])
def test_negative_counter(field: str) -> None:
    err = rejected(PROGRESS, progress(**{field: -3}))
    assert (err.reason, err.field) == ("negative_counter", field)


@pytest.mark.parametrize("field", ["good", "scrap"])
@pytest.mark.parametrize("value", [MAX_COUNTER + 1, 10**30])
def test_implausible_counter(field: str, value: int) -> None:
    err = rejected(PROGRESS, progress(**{field: value}))
    assert (err.reason, err.field) == ("implausible_counter", field)
    assert field in err.detail and str(MAX_COUNTER) in err.detail


@pytest.mark.parametrize("value", [MAX_SEQ + 1, 2**62, 2**63, 10**40])
@pytest.mark.parametrize("make", [progress, state])
def test_implausible_seq(make: object, value: int) -> None:
    topic = PROGRESS if make is progress else STATE
    err = rejected(topic, make(seq=value))  # type: ignore[operator]
    assert (err.reason, err.field) == ("implausible_seq", "seq")
    assert str(MAX_SEQ) in err.detail


def test_counters_and_seq_at_their_bounds_are_accepted() -> None:
    msg = parse(PROGRESS, progress(seq=MAX_SEQ, good=MAX_COUNTER, scrap=MAX_COUNTER))
    assert (msg.seq, msg.good, msg.scrap) == (MAX_SEQ, MAX_COUNTER, MAX_COUNTER)


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (PROGRESS, progress()[:-1] + b"\x00}"),
        (PROGRESS, b"\x00" + progress()),
        (STATE, state().replace(b'"down"', b'"do\x00wn"')),
    ],
)
def test_raw_nul_byte(topic: str, payload: bytes) -> None:
    assert rejected(topic, payload).reason == "nul_byte"


@pytest.mark.parametrize(
    ("topic", "payload", "field"),
    [
        (PROGRESS, progress(work_order="WO-1\u0000"), "work_order"),
        (STATE, state(reason="jam\u0000; DROP"), "reason"),
    ],
)
def test_escaped_nul_in_a_string_field(topic: str, payload: bytes, field: str) -> None:
    assert b"\\u0000" in payload  # JSON's escape, not a raw byte
    err = rejected(topic, payload)
    assert (err.reason, err.field) == ("nul_byte", field)


@pytest.mark.parametrize("name", ["site", "line"])
def test_names_longer_than_their_columns(name: str) -> None:
    long = "x" * (MAX_NAME_CHARS + 1)
    topic = f"loopline/v1/{long}/L1/state" if name == "site" else f"loopline/v1/p/{long}/state"
    assert rejected(topic, state()).reason == "bad_topic"
    ok = "x" * MAX_NAME_CHARS
    assert parse(f"loopline/v1/{ok}/{ok}/state", state()).line == ok


@pytest.mark.parametrize(
    "ts",
    [
        "yesterday",
        "2026-11-28",  # a date is not a timestamp
        "2026-11-28T08:00:00",  # no offset
        "20261128T080000Z",  # ISO basic form, not RFC 3339
        "2026-13-28T08:00:00Z",
        -1,
        10**20,
        True,
        None,
        {"ms": 1},
        float("nan"),
    ],
)
def test_bad_ts(ts: object) -> None:
    err = rejected(PROGRESS, progress(ts=ts))
    assert (err.reason, err.field) == ("bad_ts", "ts")


@pytest.mark.parametrize("value", ["broken", "RUNNING", "", 3, None])
def test_unknown_state(value: object) -> None:
    err = rejected(STATE, state(state=value))
    assert (err.reason, err.field) == ("unknown_state", "state")


def test_every_reason_is_exercised() -> None:
    # Keeps this file honest when a reason is added to messages.py.
    seen = {
        "bad_topic",
        "unknown_kind",
        "too_large",
        "not_utf8",
        "invalid_json",
        "not_object",
        "missing_field",
        "invalid_field",
        "negative_counter",
        "bad_ts",
        "unknown_state",
        "implausible_counter",
        "implausible_seq",
        "nul_byte",
    }
    assert seen == set(REASONS)


def test_reason_code_is_optional_on_both_kinds() -> None:
    assert parse(PROGRESS, progress()).reason_code is None
    assert parse(PROGRESS, progress(reason_code="SR-WARMUP")).reason_code == "SR-WARMUP"
    assert parse(STATE, body(seq=1, ts=1, state="down", reason_code="BD.7")).reason_code == "BD.7"
    assert parse(STATE, body(seq=1, ts=1, state="down", reason_code=None)).reason_code is None


@pytest.mark.parametrize("code", ["", "with space", "x" * 65, 7, "ü"])
def test_a_malformed_reason_code_is_refused_naming_it(code: object) -> None:
    with pytest.raises(Rejected) as exc:
        parse(STATE, body(seq=1, ts=1, state="down", reason_code=code))
    assert exc.value.reason == "invalid_field" and exc.value.field == "reason_code"
