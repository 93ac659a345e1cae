"""Escalation: up the chain while nobody acknowledges; recorded; stops on ack or resolve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from loopline.models.alerts import ack_alert, open_alert, resolve_alert
from loopline.models.audit import history
from loopline.models.db import transaction
from loopline.models.escalation import AlertClosed, escalate, resolve, snooze
from loopline.models.notify_records import AlertEscalation, Notification
from loopline.models.notify_rules import ConfigDirectory, parse_rules

T0 = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)

CONFIG = parse_rules(
    {
        "people": [
            {"id": "li", "roles": ["line_lead"]},
            {"id": "zhou", "roles": ["plant_manager"], "lang": "zh-CN"},
            {"id": "wang", "roles": ["production_manager"]},
            {"id": "chen", "roles": ["plant_manager"]},
        ],
        "escalation": [
            {
                "severity": "critical",
                "ack_within_min": 10,
                "levels": [
                    ["role:line_lead"],
                    ["role:production_manager"],
                    ["person:zhou", "person:chen"],
                ],
            },
            {"severity": "warning", "kinds": ["order_at_risk"], "ack_within_min": 60,
             "levels": [["role:production_manager"]]},
        ],
    }
)  # fmt: skip


def _open(sessions, key="line_down:L1", severity="critical", kind="line_down") -> int:
    with transaction(sessions) as s:
        return open_alert(
            s,
            key=key,
            kind=kind,
            entity="line",
            entity_id="L1",
            severity=severity,
            message="Line L1 down for 5 min: jam",
            at=T0,
        ).id


def _round(sessions, minutes: float) -> int:
    now = T0 + timedelta(minutes=minutes)
    with transaction(sessions) as s:
        return escalate(s, CONFIG, ConfigDirectory(CONFIG.people), now=now, wall_now=now)


def _told(sessions) -> list[tuple[str, str]]:
    with sessions() as s:
        rows = s.scalars(select(Notification).order_by(Notification.id))
        return [(r.rule, r.address) for r in rows]


def _actions(sessions, alert_id: int) -> list[str]:
    with sessions() as s:
        entries = history(s, entity="alert", entity_ids=[str(alert_id)]).get(str(alert_id), [])
        return [e.action for e in entries]


def test_unacknowledged_alert_climbs_the_chain_and_stops_at_the_top(sessions):
    alert_id = _open(sessions)
    assert _round(sessions, 0) == 1
    assert _told(sessions) == [("escalation:0", "li")]
    assert _round(sessions, 9) == 0
    assert _round(sessions, 10) == 1
    assert _told(sessions)[-1] == ("escalation:1", "wang")
    assert _round(sessions, 15) == 0  # the new level has its own 10 minutes
    assert _round(sessions, 20) == 1
    assert _told(sessions)[-1] == ("escalation:2", "chen")
    assert _told(sessions)[-2:] == [("escalation:2", "zhou"), ("escalation:2", "chen")]
    assert _round(sessions, 90) == 0  # the top: nobody further
    assert len(_told(sessions)) == 4
    assert _actions(sessions, alert_id) == ["alert.escalated"] * 3
    with sessions() as s:
        rows = {
            r.address: r
            for r in s.scalars(select(Notification).where(Notification.rule == "escalation:2"))
        }
        assert rows["chen"].title.startswith("Escalated (level 2)")
        assert "Not acknowledged after 20 min" in rows["chen"].body
        assert rows["zhou"].title.startswith("已升级（第 2 级）：产线 L1 停机")
        assert rows["zhou"].body.startswith("20 分钟无人确认。")


def test_ack_stops_the_escalation_and_it_is_recorded(sessions):
    alert_id = _open(sessions)
    _round(sessions, 0)
    with transaction(sessions) as s:
        ack_alert(s, alert_id=alert_id, actor="li")
    _round(sessions, 5)
    assert _round(sessions, 30) == 0
    assert _told(sessions) == [("escalation:0", "li")]
    with sessions() as s:
        esc = s.get(AlertEscalation, alert_id)
        assert esc.stop_reason == "acknowledged by li" and esc.next_at is None
    assert _actions(sessions, alert_id) == [
        "alert.escalated",
        "alert.acked",
        "alert.escalation_stopped",
    ]


def test_a_condition_that_clears_stops_its_escalation(sessions):
    alert_id = _open(sessions)
    _round(sessions, 0)
    with transaction(sessions) as s:
        resolve_alert(s, key="line_down:L1", now=T0 + timedelta(minutes=3))
    _round(sessions, 4)
    assert _round(sessions, 30) == 0
    with sessions() as s:
        assert s.get(AlertEscalation, alert_id).stop_reason == "resolved"


def test_snooze_holds_the_next_level_until_it_ends(sessions):
    alert_id = _open(sessions)
    _round(sessions, 0)
    with transaction(sessions) as s:
        snooze(s, alert_id=alert_id, minutes=30, actor="li", now=T0 + timedelta(minutes=5))
    assert _round(sessions, 10) == 0
    assert _round(sessions, 34) == 0
    assert _round(sessions, 35) == 1
    assert _told(sessions)[-1] == ("escalation:1", "wang")
    assert "alert.snoozed" in _actions(sessions, alert_id)


def test_resolve_by_hand_needs_the_alert_open_and_keeps_the_reason(sessions):
    alert_id = _open(sessions)
    _round(sessions, 0)
    with transaction(sessions) as s:
        alert = resolve(s, alert_id=alert_id, reason="sensor cable replaced", actor="li", now=T0)
        assert alert is not None and alert.status == "resolved"
    with sessions() as s:
        esc = s.get(AlertEscalation, alert_id)
        assert (esc.resolved_by, esc.resolve_reason) == ("li", "sensor cable replaced")
        assert esc.stopped_at is not None
    with transaction(sessions) as s, pytest.raises(AlertClosed):
        resolve(s, alert_id=alert_id, reason="again", actor="li", now=T0)
    with transaction(sessions) as s:
        assert resolve(s, alert_id=999, reason="x", actor="li", now=T0) is None
    assert _actions(sessions, alert_id)[-2:] == ["alert.resolved", "alert.escalation_stopped"]


def test_alerts_without_a_policy_do_not_escalate(sessions):
    _open(sessions, key="mqtt_gap:L1", severity="info", kind="mqtt_gap")
    _open(sessions, key="order_at_risk:SO-1", severity="warning", kind="order_at_risk")
    assert _round(sessions, 0) == 1  # only the order, by the warning policy's kinds
    assert _told(sessions) == [("escalation:0", "wang")]


def test_the_worker_sweep_escalates_and_announces_new_inbox_entries(sessions, live):
    import json

    from loopline.models.clock import Clock
    from loopline.models.live import STREAM
    from loopline.models.notify_relay import NotificationRelay
    from loopline.models.notify_worker import Notifier

    notifier = Notifier(
        sessions,
        live,
        Clock(),
        CONFIG,
        ConfigDirectory(CONFIG.people),
        NotificationRelay(sessions, CONFIG),
    )
    with transaction(sessions) as s:
        open_alert(s, key="line_down:L9", kind="line_down", entity="line", entity_id="L9",
                   severity="critical", message="Line L9 down")  # fmt: skip
    result = notifier.sweep()
    assert result is not None and result.escalation_steps == 1
    changes = [json.loads(f["change"]) for _, f in live.redis.xrange(STREAM)]
    told = [c for c in changes if c["entity"] == "notification"]
    assert [c["new"] for c in told] == [{"address": "li", "severity": "critical"}]
    assert notifier.sweep() == type(result)(0, 0)  # nothing new: nothing told twice
    # Another worker sweeping holds the lock: this one skips the round.
    lock = live.redis.lock("ll:lock:notify", timeout=5)
    assert lock.acquire(blocking=False)
    try:
        assert notifier.sweep() is None
    finally:
        lock.release()
