"""Notifications end to end on real local servers: rules -> rows -> robots, mail, inbox."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, time, timedelta
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from sqlalchemy import func, select

from loopline.models.alerts import open_alert
from loopline.models.audit import record
from loopline.models.db import transaction
from loopline.models.events import parse_crm_event
from loopline.models.notify import (
    alert_events,
    apply_rules,
    audit_events,
    inbox,
    mark_read,
)
from loopline.models.notify_records import Notification
from loopline.models.notify_relay import NotificationRelay
from loopline.models.notify_rules import (
    ConfigDirectory,
    QuietHours,
    RulesFileError,
    load_rules,
    parse_rules,
)
from loopline.models.orders import apply_crm_event
from loopline.models.records import Alert
from tests.factories import order_event
from tests.robots import Robot, RobotServer, SmtpServer

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)  # a Thursday, 17:00 in Shanghai

PEOPLE = [
    {"id": "li.ming", "name": "Li Ming", "roles": ["line_lead"], "email": "li@plant.test",
     "mobile": "13800000001", "lang": "zh-CN"},
    {"id": "wang.fang", "name": "Wang Fang", "roles": ["production_manager"],
     "email": "wang@plant.test", "mobile": "13800000002"},
    {"id": "chen.jie", "name": "Chen Jie", "roles": ["plant_manager"], "email": "chen@plant.test"},
    {"id": "it.desk", "roles": ["it"], "email": "it@plant.test"},
]  # fmt: skip


@pytest.fixture
def sessions(any_sessions):
    """Each test once on SQLite and once on PostgreSQL (claims, locks, JSON and times)."""
    return any_sessions


@pytest.fixture
def robots():
    server = RobotServer()
    bots = {
        "dingtalk": Robot("dingtalk", secret="SECtestsecret0001"),
        "wecom": Robot("wecom"),
        "feishu": Robot("feishu", secret="feishu-secret"),
        "webhook": Robot("webhook", secret="whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    }
    urls = {k: server.add(b) for k, b in bots.items()}
    server.start()
    yield bots, urls
    server.stop()


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


def _config(urls, smtp_port, **overrides):
    doc = {
        "channels": {
            "line-chat": {"type": "dingtalk", "url": urls["dingtalk"],
                          "secret": "SECtestsecret0001"},
            "wecom-prod": {"type": "wecom", "url": urls["wecom"]},
            "feishu-mgmt": {"type": "feishu", "url": urls["feishu"], "secret": "feishu-secret"},
            "ops-hook": {"type": "webhook", "url": urls["webhook"],
                         "secret": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
            "mail": {"type": "email", "smtp": {"host": "127.0.0.1", "port": smtp_port,
                     "security": "none", "from": "loopline@plant.test"}},
        },
        "people": PEOPLE,
        "rules": [
            {"name": "down-15", "event": "line_down", "after_min": 15,
             "to": ["role:line_lead"],
             "via": ["inbox", "mail", "line-chat", "wecom-prod", "feishu-mgmt", "ops-hook"]},
            {"name": "crm", "event": "crm_unreachable", "to": ["role:it"],
             "via": ["inbox", "mail"]},
        ],
    }  # fmt: skip
    doc.update(overrides)
    return parse_rules(doc)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _line_down(sessions, minutes: int, line: str = "L1", at: datetime = T0) -> int:
    with transaction(sessions) as s:
        alert = open_alert(
            s,
            key=f"line_down:{line}",
            kind="line_down",
            entity="line",
            entity_id=line,
            severity="critical",
            message=f"Line {line} down for {minutes} min: jam",
            details={"line": line, "minutes": minutes, "reason": "jam"},
            at=at,
        )
        return alert.id


def _down_lines(sessions, numbers, *, at: datetime) -> None:
    with transaction(sessions) as s:
        for i in numbers:
            open_alert(s, key=f"line_down:X{i}", kind="line_down", entity="line",
                       entity_id=f"X{i}", severity="critical", message=f"Line X{i} down",
                       at=at)  # fmt: skip


def _sweep(sessions, config, *, now: datetime) -> int:
    with transaction(sessions) as s:
        events = [*alert_events(s, now=now), *audit_events(s, wall_now=now)]
        return apply_rules(s, config, ConfigDirectory(config.people), events, now=now)


def _rows(sessions, **where):
    with sessions() as s:
        q = select(Notification).order_by(Notification.id)
        for k, v in where.items():
            q = q.where(getattr(Notification, k) == v)
        return list(s.scalars(q))


# -- the rules file ---------------------------------------------------------------------


def test_a_rules_file_lists_every_problem_by_field(tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        """
channels:
  chat: {type: dingtalk, url: "https://oapi.dingtalk.com/robot/send?access_token=x"}
  hook: {type: webhook, url: "https://x.example/h", secret: "plain"}
people:
  - {id: li, roles: [line_lead], email: "not-an-address"}
rules:
  - {name: a, event: line_down, to: [role:line_lead, person:nobody], via: [chat, sms]}
  - {name: b, event: lines_down, to: [role:line_lead]}
  - {name: c, event: line_down, to: ["bogus"], quiet_hours: {start: "22:00", end: "06:00", tz: "Mars/Base"}}
""",  # noqa: E501
        encoding="utf-8",
    )
    with pytest.raises(RulesFileError) as caught:
        load_rules(path)
    errors = caught.value.errors
    text = "\n".join(errors)
    assert "channels.hook.secret" in text
    assert "people[0].email" in text
    assert any(e.startswith("rules[1].event") for e in errors)
    assert any(e.startswith("rules[2].to[0]") for e in errors)
    assert any(e.startswith("rules[2].quiet_hours.tz") for e in errors)
    # The cross-reference check runs once the fields are valid: fix them and see it.
    path.write_text(
        """
channels:
  chat: {type: dingtalk, url: "https://oapi.dingtalk.com/robot/send?access_token=x"}
people:
  - {id: li, roles: [line_lead]}
rules:
  - {name: a, event: line_down, to: [role:line_lead, person:nobody, role:ghost], via: [chat, sms]}
""",
        encoding="utf-8",
    )
    with pytest.raises(RulesFileError) as caught:
        load_rules(path)
    assert caught.value.errors == [
        "rules[0].via[1]: no channel named 'sms' (known: chat, inbox)",
        "rules[0].to[1]: no person 'nobody' in people",
    ]
    # A role nobody in the file holds is allowed (the users table may), and warned about.
    path.write_text("rules:\n  - {name: a, event: line_down, to: [role:ghost]}\n", encoding="utf-8")
    assert load_rules(path).warnings() == ["rules[0].to: nobody in people holds role 'ghost'"]


def test_the_example_rules_file_is_valid():
    example = Path(__file__).resolve().parents[2] / "docs" / "notify-rules.example.yaml"
    config = load_rules(example)
    assert config.rules and config.escalation and config.channels


def test_quiet_hours_span_midnight_in_local_time():
    quiet = QuietHours(start=time(22), end=time(6, 30), tz="Asia/Shanghai")
    # 15:00 UTC = 23:00 Shanghai: held until 06:30 Shanghai = 22:30 UTC.
    at = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
    assert quiet.release_at(at, "warning") == datetime(2026, 12, 3, 22, 30, tzinfo=UTC)
    # 21:00 UTC = 05:00 Shanghai (the next morning, same window).
    assert quiet.release_at(at.replace(hour=21), "warning") == datetime(
        2026, 12, 3, 22, 30, tzinfo=UTC
    )
    assert quiet.release_at(at.replace(hour=9), "warning") is None  # 17:00 Shanghai
    assert quiet.release_at(at, "critical") is None  # critical is never held by default


# -- rules -> rows -> channels ------------------------------------------------------------


def test_line_down_past_its_minutes_reaches_every_channel_signed_and_shaped(sessions, robots, smtp):
    bots, urls = robots
    config = _config(urls, smtp.port)
    _line_down(sessions, minutes=6)
    assert _sweep(sessions, config, now=T0) == 0  # down 6 min: the rule waits for 15
    _line_down(sessions, minutes=16)  # the same alert, its details updated by the loop
    assert _sweep(sessions, config, now=T0 + timedelta(minutes=10)) == 6
    assert _sweep(sessions, config, now=T0 + timedelta(minutes=11)) == 0  # told once
    inbox_rows = _rows(sessions, channel="inbox")
    assert [(r.address, r.status) for r in inbox_rows] == [("li.ming", "sent")]

    relay = NotificationRelay(sessions, config, now=Clock(T0 + timedelta(minutes=10)))
    assert relay.deliver_due() == 5
    for kind in ("dingtalk", "wecom", "feishu", "webhook"):
        assert bots[kind].refused == [], kind
        assert len(bots[kind].accepted) == 1, kind
    ding = bots["dingtalk"].accepted[0]
    assert "Line L1 down for 16 min: jam" in ding["markdown"]["text"]
    assert ding["at"]["atMobiles"] == ["13800000001"]
    assert "@13800000001" in ding["markdown"]["text"]
    assert "Line L1 down" in bots["wecom"].accepted[0]["markdown"]["content"]
    feishu = bots["feishu"].accepted[0]["content"]["post"]["zh_cn"]
    assert "Line L1" in feishu["title"]
    hook = bots["webhook"].accepted[0]
    assert hook["type"] == "notifications" and hook["data"][0]["event"] == "line_down"
    assert hook["data"][0]["recipients"] == ["li.ming"]
    assert bots["webhook"].headers[0]["webhook-id"] == hook["id"]
    # Li Ming reads zh-CN: his mail and inbox entry are worded in Chinese.
    [mail] = smtp.messages
    subject = str(make_header(decode_header(mail["Subject"])))
    assert mail["To"] == "li@plant.test" and subject == "[Loopline] 产线 L1 停机 16 分钟"
    text = mail.get_payload(decode=True).decode()
    assert "产线 L1 已停机 16 分钟，原因：jam" in text
    assert inbox_rows[0].title == "产线 L1 停机 16 分钟"
    assert all(r.status == "sent" for r in _rows(sessions))
    assert all(r.message_id for r in _rows(sessions) if r.channel != "inbox")


def test_a_group_channel_speaks_its_own_language(sessions, robots, smtp):
    bots, urls = robots
    rules = [{"name": "w", "event": "material_short", "to": ["role:production_manager"],
              "via": ["wecom-prod", "inbox"]}]  # fmt: skip
    config = _config(urls, smtp.port, rules=rules)
    wx = config.channels["wecom-prod"].model_copy(update={"lang": "zh-CN"})
    config = config.model_copy(update={"channels": {**config.channels, "wecom-prod": wx}})
    now = datetime.now(UTC)
    _sweep(sessions, config, now=now)
    with transaction(sessions) as s:
        record(s, actor="planner", action="purchase_request.raised", entity="material",
               entity_id="STEEL", details={"qty": 40.0, "needed_by": "2026-12-05",
                                           "arrives_if_ordered_now": "2026-12-08",
                                           "jobs": ["WO-8-1"]})  # fmt: skip
    assert _sweep(sessions, config, now=now) == 2
    NotificationRelay(sessions, config).deliver_due()
    content = bots["wecom"].accepted[0]["markdown"]["content"]
    assert "物料 STEEL 短缺" in content and "等待的工单：WO-8-1" in content
    [entry] = _rows(sessions, channel="inbox")  # Wang Fang reads English
    assert entry.title == "Material STEEL short"


def test_a_wrong_secret_is_refused_by_the_robots(sessions, robots, smtp):
    bots, urls = robots
    config = _config(urls, smtp.port)
    bad = config.model_copy(
        update={
            "channels": {
                **config.channels,
                "line-chat": config.channels["line-chat"].model_copy(update={"secret": "SECwrong"}),
                "feishu-mgmt": config.channels["feishu-mgmt"].model_copy(
                    update={"secret": "wrong"}
                ),
            }
        }
    )
    _line_down(sessions, minutes=20)
    _sweep(sessions, bad, now=T0)
    NotificationRelay(sessions, bad, now=Clock(T0)).deliver_due()
    assert bots["dingtalk"].accepted == [] and "sign not match" in bots["dingtalk"].refused[0]
    assert bots["feishu"].accepted == [] and "sign match fail" in bots["feishu"].refused[0]
    failed = {r.channel: r for r in _rows(sessions) if r.status == "pending"}
    assert set(failed) == {"line-chat", "feishu-mgmt"}
    assert failed["line-chat"].attempts == 1 and "310000" in failed["line-chat"].last_error


def test_a_burst_reaches_dingtalk_batched_within_its_rate_limit(sessions, robots, smtp):
    bots, urls = robots
    rules = [{"name": "down", "event": "line_down", "to": ["role:line_lead"],
              "via": ["line-chat"], "dedupe_min": 0}]  # fmt: skip
    config = _config(urls, smtp.port, rules=rules)
    with transaction(sessions) as s:
        for i in range(100):
            open_alert(s, key=f"line_down:X{i}", kind="line_down", entity="line",
                       entity_id=f"X{i}", severity="critical", message=f"Line X{i} down",
                       at=T0)  # fmt: skip
    assert _sweep(sessions, config, now=T0) == 100
    relay = NotificationRelay(sessions, config, now=Clock(T0))
    assert relay.deliver_due() == 100
    assert bots["dingtalk"].refused == []
    assert len(bots["dingtalk"].accepted) == 5  # 20 a message


def test_over_the_budget_messages_wait_and_then_carry_everything_due(sessions, robots, smtp):
    bots, urls = robots
    rules = [{"name": "down", "event": "line_down", "to": ["role:line_lead"],
              "via": ["line-chat"], "dedupe_min": 0}]  # fmt: skip
    config = _config(urls, smtp.port, rules=rules)
    chat = config.channels["line-chat"].model_copy(update={"max_batch": 1})
    config = config.model_copy(update={"channels": {**config.channels, "line-chat": chat}})
    _down_lines(sessions, range(20), at=T0)
    _sweep(sessions, config, now=T0)
    clock = Clock(T0)
    relay = NotificationRelay(sessions, config, now=clock)
    assert relay.deliver_due() == 20  # 20 messages: DingTalk's minute is used up
    assert len(bots["dingtalk"].accepted) == 20
    clock.at = T0 + timedelta(seconds=10)
    _down_lines(sessions, range(20, 25), at=clock.at)
    _sweep(sessions, config, now=clock.at)
    assert relay.deliver_due() == 0
    waiting = _rows(sessions, status="pending")
    assert len(waiting) == 5
    assert {r.next_attempt_at for r in waiting} == {T0 + timedelta(seconds=60)}
    clock.at = T0 + timedelta(seconds=30)
    assert relay.deliver_due() == 0  # not due yet
    assert bots["dingtalk"].refused == []


def test_more_than_the_budget_carries_at_max_batch_goes_in_fuller_messages(sessions, robots, smtp):
    bots, urls = robots
    rules = [{"name": "down", "event": "line_down", "to": ["role:line_lead"],
              "via": ["line-chat"], "dedupe_min": 0}]  # fmt: skip
    config = _config(urls, smtp.port, rules=rules)
    chat = config.channels["line-chat"].model_copy(update={"max_batch": 5})
    config = config.model_copy(update={"channels": {**config.channels, "line-chat": chat}})
    _down_lines(sessions, range(200), at=T0)  # 20 messages of 5 would leave 100 waiting
    _sweep(sessions, config, now=T0)
    relay = NotificationRelay(sessions, config, now=Clock(T0))
    assert relay.deliver_due() == 200
    messages = bots["dingtalk"].accepted
    assert len(messages) <= 20 and bots["dingtalk"].refused == []
    told = {m for b in messages for m in re.findall(r"Line (X\d+) down", b["markdown"]["text"])}
    assert len(told) == 200


def test_feishu_gets_at_most_five_a_second(sessions, robots, smtp):
    bots, urls = robots
    rules = [{"name": "down", "event": "line_down", "to": ["role:line_lead"],
              "via": ["feishu-mgmt"], "dedupe_min": 0}]  # fmt: skip
    config = _config(urls, smtp.port, rules=rules)
    bot = config.channels["feishu-mgmt"].model_copy(update={"max_batch": 1})
    config = config.model_copy(update={"channels": {**config.channels, "feishu-mgmt": bot}})
    now = datetime.now(UTC)
    _down_lines(sessions, range(5), at=now)
    assert _sweep(sessions, config, now=now) == 5
    relay = NotificationRelay(sessions, config)  # real time, as the robot counts it
    assert relay.deliver_due() == 5  # five messages: the second is used up
    later = datetime.now(UTC)
    _down_lines(sessions, range(5, 8), at=later)
    _sweep(sessions, config, now=later)
    assert relay.deliver_due() == 0
    sent, deadline = 0, datetime.now(UTC) + timedelta(seconds=5)
    while sent < 3 and datetime.now(UTC) < deadline:
        sent += relay.deliver_due()
    assert sent == 3
    assert bots["feishu"].refused == []
    # As the one-second window frees one message at a time, waiting items share it.
    texts = [json.dumps(b, ensure_ascii=False) for b in bots["feishu"].accepted]
    assert {m for t in texts for m in re.findall(r"Line (X\d+) down", t)} == {
        f"X{i}" for i in range(8)
    }
    assert 6 <= len(texts) <= 8


def test_a_channel_that_is_down_loses_nothing_and_dies_with_an_alert(sessions, robots, smtp):
    bots, urls = robots
    rules = [{"name": "down", "event": "line_down", "to": ["role:line_lead"],
              "via": ["wecom-prod"]}]  # fmt: skip
    config = _config(urls, smtp.port, rules=rules)
    _line_down(sessions, minutes=20)
    _sweep(sessions, config, now=T0)
    bots["wecom"].down = True
    clock = Clock(T0)
    relay = NotificationRelay(sessions, config, now=clock, backoff_base_s=10, backoff_max_s=10)
    assert relay.deliver_due() == 0
    [row] = _rows(sessions, channel="wecom-prod")
    assert row.status == "pending" and row.attempts == 1 and "503" in row.last_error
    assert T0 + timedelta(seconds=5) <= row.next_attempt_at <= T0 + timedelta(seconds=10)
    bots["wecom"].down = False
    clock.at = T0 + timedelta(seconds=11)
    assert relay.deliver_due() == 1
    assert len(bots["wecom"].accepted) == 1

    # Down for good: dead after its attempts, and an alert for IT.
    _line_down(sessions, minutes=20, line="L2")
    _sweep(sessions, config, now=clock.at)
    bots["wecom"].down = True
    for _ in range(8):
        clock.at += timedelta(seconds=11)
        relay.deliver_due()
    dead = _rows(sessions, status="dead")
    assert len(dead) == 1 and dead[0].attempts == 8
    with sessions() as s:
        alert = s.scalar(select(Alert).where(Alert.kind == "notify_channel_down"))
        assert alert is not None and alert.status == "open" and alert.entity_id == "wecom-prod"


def test_quiet_hours_hold_chat_and_mail_but_not_the_inbox(sessions, robots, smtp):
    bots, urls = robots
    quiet = {"start": "22:00", "end": "07:00", "tz": "Asia/Shanghai"}
    rules = [{"name": "risk", "event": "order_at_risk", "to": ["role:production_manager"],
              "via": ["inbox", "mail", "line-chat"], "quiet_hours": quiet}]  # fmt: skip
    config = _config(urls, smtp.port, rules=rules)
    night = datetime(2026, 12, 3, 16, 0, tzinfo=UTC)  # 00:00 in Shanghai
    with transaction(sessions) as s:
        open_alert(s, key="order_at_risk:SO-1", kind="order_at_risk", entity="order",
                   entity_id="SO-1", severity="warning", message="Order SO-1 at risk",
                   role="sales", at=night)  # fmt: skip
    assert _sweep(sessions, config, now=night) == 3
    morning = datetime(2026, 12, 3, 23, 0, tzinfo=UTC)  # 07:00 in Shanghai
    held = [r for r in _rows(sessions) if r.channel != "inbox"]
    assert {r.next_attempt_at for r in held} == {morning}
    assert all(r.held_until == morning for r in held)
    assert [r.status for r in _rows(sessions, channel="inbox")] == ["sent"]
    relay = NotificationRelay(sessions, config, now=Clock(night + timedelta(hours=1)))
    assert relay.deliver_due() == 0 and smtp.messages == []
    relay = NotificationRelay(sessions, config, now=Clock(morning))
    assert relay.deliver_due() == 2 and len(smtp.messages) == 1


def test_a_flapping_condition_is_told_once_per_dedupe_window(sessions, robots, smtp):
    _, urls = robots
    config = _config(urls, smtp.port)
    with transaction(sessions) as s:
        open_alert(s, key="crm_unreachable", kind="crm_unreachable", entity="crm",
                   entity_id="crm", severity="critical", message="CRM down", at=T0)  # fmt: skip
    assert _sweep(sessions, config, now=T0) == 2
    with transaction(sessions) as s:  # it resolves and comes back 5 minutes later
        for a in s.scalars(select(Alert)):
            a.status = "resolved"
        s.flush()
        open_alert(s, key="crm_unreachable", kind="crm_unreachable", entity="crm",
                   entity_id="crm", severity="critical", message="CRM down",
                   at=T0 + timedelta(minutes=5))  # fmt: skip
    assert _sweep(sessions, config, now=T0 + timedelta(minutes=5)) == 0
    with transaction(sessions) as s:  # and again, past the 30-minute window
        for a in s.scalars(select(Alert)):
            a.status = "resolved"
        s.flush()
        open_alert(s, key="crm_unreachable", kind="crm_unreachable", entity="crm",
                   entity_id="crm", severity="critical", message="CRM down",
                   at=T0 + timedelta(minutes=40))  # fmt: skip
    assert _sweep(sessions, config, now=T0 + timedelta(minutes=40)) == 2


def test_a_later_threshold_tells_the_same_person_again_past_the_window(sessions, robots, smtp):
    _, urls = robots
    rules = [
        {"name": "down-15", "event": "line_down", "after_min": 15, "to": ["role:line_lead"]},
        {"name": "down-60", "event": "line_down", "after_min": 60,
         "to": ["role:line_lead", "role:plant_manager"]},
    ]  # fmt: skip
    config = _config(urls, smtp.port, rules=rules)
    _line_down(sessions, minutes=16)
    assert _sweep(sessions, config, now=T0) == 1
    _line_down(sessions, minutes=61)
    assert _sweep(sessions, config, now=T0 + timedelta(minutes=45)) == 2
    assert [(r.rule, r.address) for r in _rows(sessions)] == [
        ("down-15", "li.ming"),
        ("down-60", "li.ming"),
        ("down-60", "chen.jie"),
    ]
    assert _sweep(sessions, config, now=T0 + timedelta(minutes=50)) == 0


def test_two_relays_never_send_on_one_channel_at_once(sessions, robots, smtp):
    _, urls = robots
    rules = [{"name": "down", "event": "line_down", "to": ["role:line_lead"],
              "via": ["line-chat", "wecom-prod"]}]  # fmt: skip
    config = _config(urls, smtp.port, rules=rules)
    _line_down(sessions, minutes=20)
    _sweep(sessions, config, now=T0)
    first = NotificationRelay(sessions, config, now=Clock(T0))
    second = NotificationRelay(sessions, config, now=Clock(T0))
    claimed = first._claim()
    assert {r.channel for r in claimed} == {"line-chat", "wecom-prod"}
    assert second._claim() == []  # both channels are the first relay's while it sends
    first._release([r.id for r in claimed if r.channel == "wecom-prod"], None)
    assert [r.channel for r in second._claim()] == ["wecom-prod"]


def test_rules_match_by_kind_severity_line_and_age():
    from loopline.models.notify import Event, matches
    from loopline.models.notify_rules import Rule

    event = Event(kind="alert", key="k", dedupe_key="d", severity="warning", title="t",
                  body="b", alert_kind="mqtt_gap", line="L2", age_min=3)  # fmt: skip
    rule = Rule(name="r", event="alert", to=("role:it",))
    assert matches(rule, event)
    assert not matches(rule.model_copy(update={"kinds": ("line_unavailable",)}), event)
    assert matches(rule.model_copy(update={"kinds": ("mqtt_gap",)}), event)
    assert not matches(rule.model_copy(update={"min_severity": "critical"}), event)
    assert not matches(rule.model_copy(update={"lines": ("L1",)}), event)
    assert matches(rule.model_copy(update={"lines": ("L2",)}), event)
    assert not matches(rule.model_copy(update={"after_min": 5}), event)
    assert not matches(rule.model_copy(update={"event": "line_down"}), event)


# -- events from the audit log ------------------------------------------------------------


def test_audit_events_promise_broken_rush_change_waiting_material_short(sessions, robots, smtp):
    _, urls = robots
    rules = [
        {"name": n, "event": n, "to": ["role:production_manager"], "via": ["inbox"]}
        for n in ("promise_broken", "rush_accepted", "change_waiting", "material_short")
    ]
    config = _config(urls, smtp.port, rules=rules)
    now = datetime.now(UTC)
    _sweep(sessions, config, now=now)  # a new installation: the cursor starts at the end
    with transaction(sessions) as s:
        apply_crm_event(s, event=parse_crm_event(order_event("SO-9", priority="rush")),
                        source="canonical", webhook_id="w9", raw="{}", actor="crm")  # fmt: skip
        apply_crm_event(s, event=parse_crm_event(order_event("SO-8")),
                        source="canonical", webhook_id="w8", raw="{}", actor="crm")  # fmt: skip
        record(
            s,
            actor="planner",
            action="order.promised",
            entity="order",
            entity_id="SO-8",
            details={"version": 2, "old": "2026-12-10", "new": "2026-12-12", "rule": "x"},
        )
        record(
            s,
            actor="planner",
            action="order.promised",
            entity="order",
            entity_id="SO-8",
            details={"version": 3, "old": "2026-12-12", "new": "2026-12-11", "rule": "x"},
        )
        record(
            s,
            actor="crm",
            action="change.pending",
            entity="order",
            entity_id="SO-8",
            details={"change_id": 4, "version": 3, "impact": [{"order_id": "SO-1"}]},
        )
        record(s, actor="planner", action="purchase_request.raised", entity="material",
               entity_id="STEEL", details={"qty": 40.0, "needed_by": "2026-12-05T00:00:00Z",
                                           "arrives_if_ordered_now": "2026-12-08T00:00:00Z",
                                           "jobs": ["WO-8-1"]})  # fmt: skip
    assert _sweep(sessions, config, now=now) == 4
    rows = _rows(sessions)
    assert sorted(r.event for r in rows) == [
        "change_waiting",
        "material_short",
        "promise_broken",
        "rush_accepted",
    ]
    by = {r.event: r for r in rows}
    assert by["rush_accepted"].details["order"] == "SO-9"
    assert "2026-12-10 to 2026-12-12" in by["promise_broken"].title  # the earlier date: no
    assert _sweep(sessions, config, now=now) == 0  # read again (not settled): told once
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Notification)) == 4


# -- the inbox ----------------------------------------------------------------------------


def test_inbox_lists_and_marks_read_per_person(sessions, robots, smtp):
    _, urls = robots
    rules = [{"name": "down", "event": "line_down", "to": ["role:line_lead", "role:it"],
              "via": ["inbox"]}]  # fmt: skip
    config = _config(urls, smtp.port, rules=rules)
    _line_down(sessions, minutes=20)
    _sweep(sessions, config, now=T0)
    with transaction(sessions) as s:
        assert [r.address for r in inbox(s, addresses=["li.ming"])] == ["li.ming"]
        assert len(inbox(s, addresses=[], everyone=True)) == 2
        assert mark_read(s, addresses=["li.ming"]) == 1
        assert inbox(s, addresses=["li.ming"], unread_only=True) == []
        assert len(inbox(s, addresses=["it.desk"], unread_only=True)) == 1


def test_rules_json_file_loads(tmp_path: Path):
    path = tmp_path / "rules.json"
    rule = {"name": "a", "event": "alert", "kinds": ["mqtt_gap"], "to": ["ops@plant.test"]}
    path.write_text(json.dumps({"people": PEOPLE, "rules": [rule]}))
    config = load_rules(path)
    assert config.rules[0].to == ("ops@plant.test",)


def test_roles_and_people_reach_the_users_table(sessions):
    """A rule naming a role reaches every enabled user who holds it (the users table), and
    the rules file's own people too; a disabled user is told nothing."""
    from loopline.models.notify_rules import PeopleDirectory, Person
    from loopline.models.users import add_user, disable_user

    with transaction(sessions) as s:
        add_user(s, username="wang.fang", name="Wang Fang", roles=["production_manager"],
                 lang="zh-CN", email="wang@example.com", actor="t")  # fmt: skip
        add_user(s, username="old.lead", name="Old Lead", roles=["production_manager"], actor="t")
        disable_user(s, username="old.lead", actor="t")
    people = [Person(id="night.lead", name="Night Lead", roles=("production_manager",))]
    directory = PeopleDirectory(sessions, people)
    reached = {a.id: a for a in directory.resolve("role:production_manager")}
    assert set(reached) == {"wang.fang", "night.lead"}
    assert reached["wang.fang"].lang == "zh-CN" and reached["wang.fang"].email == "wang@example.com"
    assert [a.id for a in directory.resolve("person:wang.fang")] == ["wang.fang"]
    assert directory.resolve("person:old.lead") == []
    assert [a.id for a in directory.resolve("person:night.lead")] == ["night.lead"]
