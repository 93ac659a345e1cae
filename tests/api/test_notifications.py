"""The inbox and alert follow-up over HTTP: list, mark read, snooze, resolve with reason."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from loopline.models.alerts import open_alert
from loopline.models.db import transaction
from loopline.runtime import build_notifier
from tests.stack import start_stack

SALES_TOKEN = "test-sales-token"
RULES = {
    "people": [
        {"id": "li", "roles": ["line_lead"]},
        {"id": "wang", "roles": ["production_manager"]},
    ],
    "rules": [
        {
            "name": "risk",
            "event": "alert",
            "kinds": ["quote_overdue"],
            "to": ["role:sales"],
            "via": ["inbox"],
        },  # fmt: skip
    ],
    "escalation": [
        {
            "severity": "critical",
            "ack_within_min": 10,
            "levels": [["role:line_lead"], ["role:production_manager"]],
        }
    ],
}


@pytest.fixture(scope="module")
def stack(postgres_server, postgres_cluster, redis_server, tmp_path_factory):
    rules = Path(tmp_path_factory.mktemp("rules")) / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES), encoding="utf-8")
    stack = start_stack(
        database_url=postgres_cluster.url_for(postgres_cluster.create_database()),
        redis_url=redis_server,
        mqtt_url=None,
        crm_url=None,
        sales_token=SALES_TOKEN,
        notify_rules=rules,
    )
    yield stack
    stack.stop()


def _alert(stack, key: str, kind: str, severity: str, role: str = "production") -> int:
    # Kinds the worker's alert rules do not own: its running loop would resolve a
    # line_down whose line is not down in the live state.
    rt = stack.runtime
    with transaction(rt.sessions) as s:
        return open_alert(
            s,
            key=key,
            kind=kind,
            entity="line",
            entity_id="L1",
            severity=severity,
            message=f"{kind} on L1",
            role=role,
            at=rt.clock.now(),
        ).id


def test_inbox_per_caller_and_mark_read(stack):
    notifier = build_notifier(stack.runtime)
    assert notifier is not None
    crm = _alert(stack, "crm_unreachable", "crm_unreachable", "critical")
    quote = _alert(stack, "quote_overdue:Q-1", "quote_overdue", "warning", role="sales")
    result = notifier.sweep()
    assert result is not None and result.escalation_steps == 1
    every = stack.get("/api/v1/notifications").json()
    assert {(n["address"], n["event"]) for n in every} == {
        ("li", "crm_unreachable"),
        ("role:sales", "alert"),
    }
    li = stack.get("/api/v1/notifications", params={"person": "li"}).json()
    assert [n["rule"] for n in li] == ["escalation:0"] and li[0]["read_at"] is None
    sales = {"Authorization": f"Bearer {SALES_TOKEN}"}
    mine = httpx.get(f"{stack.url}/api/v1/notifications", headers=sales).json()
    assert [n["event"] for n in mine] == ["alert"]
    # Someone else's entry is not there for the sales token: 404, not a hint it exists.
    answer = httpx.post(f"{stack.url}/api/v1/notifications/{li[0]['id']}/read", headers=sales)
    assert answer.status_code == 404
    assert stack.post(f"/api/v1/notifications/{li[0]['id']}/read").json() == {"marked": 1}
    assert stack.get("/api/v1/notifications", params={"person": "li", "unread": True}).json() == []
    answer = httpx.post(f"{stack.url}/api/v1/notifications/read-all", headers=sales)
    assert answer.json() == {"marked": 1}
    # Whoever was told of an alert may acknowledge it; not one they were not told of.
    answer = httpx.post(f"{stack.url}/api/v1/alerts/{crm}/ack", headers=sales)
    assert answer.status_code == 403 and "told" in answer.json()["detail"]
    answer = httpx.post(f"{stack.url}/api/v1/alerts/{quote}/ack", headers=sales)
    assert answer.status_code == 200 and answer.json()["status"] == "acked"
    assert answer.json()["acked_by"] == "sales"


def test_snooze_resolve_with_reason_and_ack_over_http(stack):
    alert_id = _alert(stack, "ingest_offline", "ingest_offline", "critical")
    bad = stack.post(f"/api/v1/alerts/{alert_id}/snooze", json={"minutes": 0})
    assert bad.status_code == 422 and "minutes" in bad.text
    snoozed = stack.post(f"/api/v1/alerts/{alert_id}/snooze", json={"minutes": 30}).json()
    assert snoozed["snoozed_until"] is not None
    no_reason = stack.post(f"/api/v1/alerts/{alert_id}/resolve", json={"reason": ""})
    assert no_reason.status_code == 422 and "reason" in no_reason.text
    done = stack.post(f"/api/v1/alerts/{alert_id}/resolve", json={"reason": "jam cleared"})
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["resolve_reason"]) == ("resolved", "jam cleared")
    assert done.json()["resolved_by"] == "admin"
    again = stack.post(f"/api/v1/alerts/{alert_id}/resolve", json={"reason": "again"})
    assert again.status_code == 409
    listed = {a["id"]: a for a in stack.get("/api/v1/alerts", params={"all": True}).json()}
    assert listed[str(alert_id)]["resolve_reason"] == "jam cleared"
    assert stack.post("/api/v1/alerts/999999/resolve", json={"reason": "x"}).status_code == 404
    display = {"Authorization": "Bearer test-display-token"}
    answer = httpx.post(
        f"{stack.url}/api/v1/alerts/{alert_id}/snooze", json={"minutes": 5}, headers=display
    )
    assert answer.status_code == 403

    notifier = build_notifier(stack.runtime)
    assert notifier is not None
    other = _alert(stack, "mqtt_disconnected", "mqtt_disconnected", "critical")
    notifier.sweep()
    acked = stack.post(f"/api/v1/alerts/{other}/ack").json()
    assert acked["status"] == "acked" and acked["escalate_at"] is None
    assert acked["escalation_level"] == 0
