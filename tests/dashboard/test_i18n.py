"""Every label exists in both languages, with the same placeholders; formats follow the language."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest

from loopline.dashboard.i18n import (
    LANGS,
    MESSAGES,
    NONE,
    fmt_age,
    fmt_date,
    fmt_duration,
    fmt_eta,
    fmt_pct,
    fmt_today,
    label,
    normalize_lang,
    t,
    t_count,
)
from loopline.models.clock import parse_time

NOW = datetime(2026, 11, 28, 8, 30, tzinfo=UTC)


def placeholders(text: str) -> set[str]:
    return set(re.findall(r"{(\w+)}", text))


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_every_key_has_every_language_with_the_same_placeholders(key):
    entry = MESSAGES[key]
    assert set(entry) == set(LANGS), key
    assert all(entry[lang].strip() for lang in LANGS), key
    assert placeholders(entry["en"]) == placeholders(entry["zh-CN"]), key


def test_chinese_labels_are_really_chinese():
    cjk = re.compile(r"[\u4e00-\u9fff]")
    same = {k for k, v in MESSAGES.items() if v["en"] == v["zh-CN"]}
    assert same <= {"app.name"}, same
    translated = [k for k, v in MESSAGES.items() if cjk.search(v["zh-CN"])]
    assert len(translated) >= len(MESSAGES) - 3


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "en"),
        ("zh-CN", "zh-CN"),
        ("zh", "zh-CN"),
        ("zh_cn", "zh-CN"),
        ("en-GB", "en"),
        ("fr", "en"),
    ],
)
def test_normalize_lang(given, expected):
    assert normalize_lang(given) == expected


def test_unknown_key_shows_itself_and_labels_of_enumerations():
    assert t("no.such.key", "en") == "no.such.key"
    assert label("state", "down", "zh-CN") == "停机"
    assert label("risk", "at_risk", "en") == "At risk"
    assert label("state", "exploded", "en") == "exploded"
    assert label("state", None, "en") == NONE


def test_counts_have_a_singular():
    assert t_count("orders.count", "en", 1) == "1 order"
    assert t_count("orders.count", "en", 3) == "3 orders"
    assert t_count("orders.count", "zh-CN", 3) == "共 3 个订单"


def test_eta_is_a_clock_today_and_names_the_day_otherwise():
    assert fmt_eta("2026-11-28T14:05:00Z", "en", tz=UTC, now=NOW) == "14:05"
    assert fmt_eta("2026-11-29T06:10:00Z", "en", tz=UTC, now=NOW) == "tomorrow 06:10"
    assert fmt_eta("2026-11-29T06:10:00Z", "zh-CN", tz=UTC, now=NOW) == "明天 06:10"
    assert fmt_eta("2026-12-03T06:10:00+00:00", "en", tz=UTC, now=NOW) == "3 Dec 06:10"
    assert fmt_eta("2026-12-03T06:10:00Z", "zh-CN", tz=UTC, now=NOW) == "12月3日 06:10"
    assert fmt_eta("2027-01-03T06:10:00Z", "en", tz=UTC, now=NOW) == "3 Jan 2027 06:10"
    assert fmt_eta(None, "en", tz=UTC, now=NOW) == NONE
    assert fmt_eta("not a time", "en", tz=UTC, now=NOW) == NONE


def test_eta_uses_the_site_time_zone():
    from datetime import timezone

    shanghai = timezone(timedelta(hours=8))
    # 20:00 UTC is 04:00 the next morning in Shanghai.
    assert fmt_eta("2026-11-28T20:00:00Z", "zh-CN", tz=shanghai, now=NOW) == "明天 04:00"


def test_durations_dates_and_percentages():
    assert fmt_duration(20, "en") == "just now"
    assert fmt_duration(25 * 60, "en") == "25 min"
    assert fmt_duration(125 * 60, "zh-CN") == "2 小时 5 分钟"
    assert fmt_duration(3 * 86400 + 4 * 3600, "en") == "3 d 4 h"
    assert fmt_age((NOW - timedelta(minutes=14)).isoformat(), "en", now=NOW) == "14 min"
    assert fmt_date("2026-12-01", "en", today=date(2026, 11, 28)) == "1 Dec"
    assert fmt_date("2026-12-01", "zh-CN", today=date(2026, 11, 28)) == "12月1日"
    assert fmt_date(None, "en") == NONE
    assert fmt_pct(0.624) == "62 %"
    assert fmt_pct(1.7) == "100 %"
    assert fmt_today(NOW, "zh-CN", UTC) == "11月28日周六"
    assert fmt_today(NOW, "en", UTC) == "Sat 28 Nov"


def test_parse_time_needs_an_offset():
    assert parse_time("2026-11-28T08:00:00Z") == datetime(2026, 11, 28, 8, tzinfo=UTC)
    assert parse_time("2026-11-28T08:00:00") is None


def test_alert_and_risk_texts_are_worded_from_details():
    from loopline.dashboard.i18n import alert_text, risk_text

    down = {
        "kind": "line_down",
        "message": "Line L2 down for 12 min: jam",
        "details": {"line": "L2", "minutes": 12, "reason": "jam"},
    }
    assert alert_text(down, "en") == "Line L2 down for 12 min: jam"
    assert alert_text(down, "zh-CN") == "产线 L2 已停机 12 分钟：jam"
    order = {
        "kind": "order_at_risk",
        "message": "stored",
        "details": {
            "order": "SO-1",
            "customer": "Acme",
            "eta": "2026-12-02T08:00:00Z",
            "promised": "2026-12-01",
            "cause": {"code": "line_down", "line": "L2", "reason": "jam"},
        },
    }
    assert alert_text(order, "zh-CN") == (
        "订单 SO-1（Acme）有延期风险：预计 2026-12-02 08:00 完成，晚于承诺的 2026-12-01："
        "产线 L2 停机（jam）"
    )
    # Unknown kinds and malformed details fall back to the stored text.
    assert alert_text({"kind": "new_kind", "message": "as stored"}, "zh-CN") == "as stored"
    assert alert_text({"kind": "line_down", "message": "m", "details": {}}, "zh-CN") == "m"
    live_order = {
        "eta": "2026-12-02T08:00:00Z",
        "promised_date": "2026-12-01",
        "risk_reason": "english",
        "risk_cause": {"code": "capacity", "line": "L3"},
    }
    assert risk_text(live_order, "zh-CN") == (
        "预计 2026-12-02 08:00 完成，晚于承诺的 2026-12-01：产线 L3 产能不足"
    )
    assert risk_text({"risk_reason": "english"}, "zh-CN") == "english"
