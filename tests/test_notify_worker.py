"""`loopline worker` delivers notifications and escalates, as a process users run, on real
PostgreSQL and Redis, to local robots and a real SMTP server; a bad rules file stops it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis
import yaml
from sqlalchemy import select

from loopline.models.alerts import open_alert
from loopline.models.clock import utcnow
from loopline.models.db import make_engine, make_sessions, migrate, transaction
from loopline.models.notify_records import Notification
from loopline.models.records import AuditEntry
from loopline.settings import new_webhook_secret
from tests.robots import Robot, RobotServer, SmtpServer
from tests.stack import wait_until
from tests.test_processes import LOOPLINE, ROOT, _spawn, _stop


def _env(postgres_url: str, redis_server: str, rules: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LOOPLINE_DATABASE_URL": postgres_url,
        "LOOPLINE_REDIS_URL": redis_server,
        "LOOPLINE_CRM_SECRET": new_webhook_secret(),
        "LOOPLINE_API_TOKEN": "proc-token",
        "LOOPLINE_NOTIFY_RULES": str(rules),
        "LOOPLINE_NOTIFY_BACKOFF_BASE_S": "0.2",
        "LOOPLINE_NOTIFY_BACKOFF_MAX_S": "0.5",
    }


def test_worker_tells_robots_and_mail_and_escalates(tmp_path, postgres_url, redis_server):
    server = RobotServer()
    ding = Robot("dingtalk", secret="SECproc")
    wecom = Robot("wecom", down=True)  # down when the alert opens: nothing may be lost
    urls = {"ding": server.add(ding), "wecom": server.add(wecom)}
    server.start()
    smtp = SmtpServer().start()
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            {
                "channels": {
                    "chat": {"type": "dingtalk", "url": urls["ding"], "secret": "SECproc"},
                    "wx": {"type": "wecom", "url": urls["wecom"]},
                    "mail": {
                        "type": "email",
                        "smtp": {
                            "host": "127.0.0.1",
                            "port": smtp.port,
                            "security": "none",
                            "from": "loopline@plant.test",
                        },
                    },  # fmt: skip
                },
                "people": [
                    {"id": "it.desk", "roles": ["it"], "email": "it@plant.test"},
                    {"id": "boss", "roles": ["plant_manager"], "email": "boss@plant.test"},
                ],
                "rules": [
                    {
                        "name": "crm",
                        "event": "crm_unreachable",
                        "to": ["role:it"],
                        "via": ["inbox", "chat", "wx", "mail"],
                    },
                ],  # fmt: skip
                "escalation": [
                    {
                        "severity": "critical",
                        "ack_within_min": 0.05,
                        "levels": [["role:it"], ["role:plant_manager"]],
                        "via": ["mail"],
                    },
                ],  # fmt: skip
            }
        ),
        encoding="utf-8",
    )
    redis.Redis.from_url(redis_server).flushdb()
    engine = make_engine(postgres_url)
    migrate(engine)
    sessions = make_sessions(engine)
    worker = _spawn(["worker"], _env(postgres_url, redis_server, rules), tmp_path / "worker.log")
    try:
        with transaction(sessions) as s:
            open_alert(
                s,
                key="crm_unreachable",
                kind="crm_unreachable",
                entity="crm",
                entity_id="crm.test",
                severity="critical",
                role="it",
                message="The CRM at crm.test did not accept updates",
                at=utcnow(),
            )
        wait_until(lambda: ding.accepted, timeout=60)
        assert "did not accept updates" in ding.accepted[0]["markdown"]["text"]
        # Level 0 (IT) by the rule and the escalation: one mail; then the plant manager.
        wait_until(lambda: {m["To"] for m in smtp.messages} >= {"boss@plant.test"}, timeout=30)
        wecom.down = False
        wait_until(lambda: wecom.accepted, timeout=30)
        assert ding.refused == [] and len(ding.accepted) == 1

        def all_sent() -> list[Notification]:
            with sessions() as s:
                rows = list(s.scalars(select(Notification)))
            return rows if {r.status for r in rows} == {"sent"} else []

        rows = wait_until(all_sent, timeout=10)
        # IT heard by the rule; the escalation's first level added no second mail.
        assert sorted(m["To"] for m in smtp.messages) == ["boss@plant.test", "it@plant.test"]
        with sessions() as s:
            assert any(r.channel == "wx" and r.attempts >= 1 for r in rows)
            steps = s.scalars(select(AuditEntry).where(AuditEntry.action == "alert.escalated"))
            assert [e.details["level"] for e in steps] == [0, 1]
    finally:
        code = _stop(worker)
        server.stop()
        smtp.stop()
        engine.dispose()
    assert code == 0, (tmp_path / "worker.log").read_text()


def test_worker_refuses_a_bad_rules_file_naming_the_field(tmp_path, postgres_url, redis_server):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: a, event: line_down, to: [role:x], via: [sms]}\n")
    done = subprocess.run(
        LOOPLINE + ["worker"],
        env=_env(postgres_url, redis_server, rules),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "rules[0].via[0]: no channel named 'sms'" in done.stderr + done.stdout
    check = subprocess.run(
        [sys.executable, "-m", "loopline.cli", "notify", "check", str(rules)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert check.returncode == 2 and "rules[0].via[0]" in check.stderr
