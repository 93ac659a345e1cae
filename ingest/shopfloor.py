"""The MQTT consumer's handler: parse shop-floor messages, apply them, dead-letter the rest."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from ingest.mqtt.consumer import Inbound
from ingest.mqtt.messages import ProgressMessage, Rejected, StateMessage, parse
from models.alerts import open_alert, resolve_alert
from models.clock import Clock, utcnow
from models.db import transaction
from models.live import LiveState
from models.records import DeadLetter
from models.shopfloor import apply_reports
from models.watch import mirror_alerts

log = logging.getLogger("loopline.ingest")

PAYLOAD_KEEP = 64 * 1024


class ShopfloorHandler:
    """Called by the consumer with each batch; returns only when the batch is stored."""

    def __init__(self, sessions: sessionmaker[Session], live: LiveState, clock: Clock) -> None:
        self.sessions = sessions
        self.live = live
        self.clock = clock
        self.applied = 0
        self.rejected = 0

    def __call__(self, batch: Sequence[Inbound]) -> None:
        reports: list[ProgressMessage | StateMessage] = []
        dead: list[DeadLetter] = []
        topics: dict[int, Inbound] = {}
        for msg in batch:
            try:
                report = parse(msg.topic, msg.payload)
            except Rejected as exc:
                dead.append(_dead(msg.topic, msg.payload, exc.reason, str(exc)))
                continue
            topics[id(report)] = msg
            reports.append(report)
        outcome = (
            apply_reports(
                self.live, reports, now=self.clock.now(), received_at=batch[-1].received_at
            )
            if reports
            else None
        )
        if outcome is not None:
            for refused in outcome.refused:
                src = topics[id(refused.report)]
                dead.append(_dead(src.topic, src.payload, refused.reason, refused.detail))
        self.applied += len(reports) - (len(outcome.refused) if outcome else 0)
        self.rejected += len(dead)
        gaps = outcome.gaps if outcome else []
        if dead or gaps:
            with transaction(self.sessions) as session:
                session.add_all(dead)
                for gap in gaps:
                    open_alert(
                        session,
                        key=f"mqtt_gap:{gap.line}",
                        kind="mqtt_gap",
                        entity="line",
                        entity_id=gap.line,
                        severity="info",
                        role="it",
                        message=f"Line {gap.line}: messages {gap.expected}–{gap.got - 1} "
                        f"never arrived",
                        details={"line": gap.line, "expected": gap.expected, "last": gap.got - 1},
                    )
                if gaps:
                    session.flush()
                    mirror_alerts(session, self.live)
            for d in dead:
                log.warning("dead letter from %s: %s (%s)", d.topic, d.reason, d.detail)

    def connection_changed(self, connected: bool, reason: str) -> None:
        """Broker connection state is an alert people can see."""
        with transaction(self.sessions) as session:
            if connected:
                resolve_alert(session, key="mqtt_disconnected")
            else:
                open_alert(
                    session,
                    key="mqtt_disconnected",
                    kind="mqtt_disconnected",
                    entity="ingest",
                    entity_id="mqtt",
                    severity="critical",
                    role="it",
                    message=f"Shop-floor feed disconnected from the broker: {reason}",
                    details={"reason": reason},
                )
            session.flush()
            mirror_alerts(session, self.live)


def _dead(topic: str, payload: bytes, reason: str, detail: str) -> DeadLetter:
    return DeadLetter(
        at=utcnow(),
        source="mqtt",
        topic=topic[:300],
        reason=reason[:200],
        detail=detail[:2000],
        payload=payload[:PAYLOAD_KEEP].decode("utf-8", errors="replace"),
    )
