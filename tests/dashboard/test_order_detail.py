"""The order detail's wording, without a browser."""

from __future__ import annotations

from loopline.dashboard.pages.order_detail import action_text, rule_text
from loopline.models.replan import promise_for
from tests.factories import plan_window


def test_the_planners_promise_rules_are_worded_in_both_languages():
    from datetime import UTC, date, datetime

    met = promise_for(
        date(2026, 12, 9),
        datetime(2026, 12, 5, tzinfo=UTC),
        plan_window(promise_policy="requested"),
    )[1]
    late = promise_for(
        date(2026, 12, 9),
        datetime(2026, 12, 12, tzinfo=UTC),
        plan_window(promise_policy="requested"),
    )[1]
    assert rule_text(met, "zh-CN") == "按要求交期承诺（余量 24 小时）"
    assert rule_text(late, "en") == "earliest safe date (requested date not met with margin)"
    assert rule_text(late, "zh-CN").startswith("最早可保证日期")
    assert rule_text("something new", "zh-CN") == "something new"
    assert rule_text(None, "en") == ""


def test_audit_actions_are_worded_and_unknown_ones_show_themselves():
    assert action_text("order.delivered", "zh-CN") == "已交付"
    assert action_text("order.promised", "en") == "Delivery date promised"
    assert action_text("quote.made", "en") == "quote.made"
