"""The Sparkplug consumer's handler: decode, map to line reports, store as the Loopline
topics' handler does (``ShopfloorHandler._store``), mark dead nodes' lines ``unavailable``.

Decoding is stateful (sessions, aliases, seq), so each message is decoded once: a batch
the consumer hands back after a store outage finds its decoding in ``_decoded``.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Sequence
from typing import Final

from sqlalchemy.orm import Session, sessionmaker

from loopline.ingest.mqtt.consumer import Inbound
from loopline.ingest.mqtt.messages import ProgressMessage, StateMessage
from loopline.ingest.shopfloor import PAYLOAD_KEEP, REASON_HANDLER_ERROR, ShopfloorHandler, _stores
from loopline.ingest.sparkplug.adapter import SOURCE, Decoded, Gap, SparkplugAdapter
from loopline.ingest.sparkplug.mapping import SparkplugMapping
from loopline.models.alerts import open_alert, resolve_alert
from loopline.models.clock import Clock, utcnow
from loopline.models.db import transaction
from loopline.models.live import LiveState, Update
from loopline.models.records import DeadLetter
from loopline.models.shopfloor import seq_fields
from loopline.models.watch import mirror_alerts

log = logging.getLogger("loopline.ingest.sparkplug")

REASON_NO_WORK_ORDER: Final = "sparkplug_no_work_order"
DISCONNECTED: Final = "sparkplug_disconnected"
Rebirth = Callable[[str, str], None]


class SparkplugHandler(ShopfloorHandler):
    """Called by an ``MqttConsumer`` subscribed to ``mapping.subscriptions()``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        live: LiveState,
        clock: Clock,
        mapping: SparkplugMapping,
        *,
        rebirth: Rebirth | None = None,
        serialize: bool = False,
    ) -> None:
        super().__init__(sessions, live, clock, serialize=serialize)
        self.mapping = mapping
        self.adapter = SparkplugAdapter(mapping, seq_start=self._seq_start)
        self._rebirth = rebirth
        self._decoded: dict[Inbound, Decoded] = {}

    def _seq_start(self, line: str) -> int:
        """Go on from the live model's last Sparkplug seq of the line (0 if none)."""
        found = self.live.get("line", line) or {}
        last = found.get(seq_fields(SOURCE)[0])
        return int(last) + 1 if isinstance(last, int) else 0

    def _decode(self, msg: Inbound) -> Decoded:
        got = self._decoded.get(msg)
        if got is None:
            got = self._decoded[msg] = self.adapter.decode(msg.topic, msg.payload, msg.received_at)
            if got.rebirth is not None and self._rebirth is not None:
                self._rebirth(*got.rebirth)
        return got

    def _handle(self, batch: Sequence[Inbound]) -> None:
        decoded = [(msg, self._decode(msg)) for msg in batch]
        self._fill_work_orders(decoded)
        # A death ends a segment: what came before it is stored before the line goes
        # unavailable, what comes after (a new birth) after.
        reports: list[ProgressMessage | StateMessage] = []
        dead: list[DeadLetter] = []
        topics: dict[int, Inbound] = {}
        gaps: list[Gap] = []
        for msg, d in decoded:
            dead += [_dead(msg, p.reason, p.detail) for p in d.problems]
            for report in d.reports:
                if isinstance(report, ProgressMessage) and not report.work_order:
                    if report.good == report.scrap == 0:
                        continue  # nothing counted yet: nothing to keep either
                    dead.append(_dead(msg, REASON_NO_WORK_ORDER, f"line {report.line} has none"))
                    continue
                topics[id(report)] = msg
                reports.append(report)
            if d.gap is not None:
                gaps.append(d.gap)
            if d.deaths:
                self._flush(reports, dead, topics, gaps, msg)
                reports, dead, topics, gaps = [], [], {}, []
                self._die(d.deaths)
        self._flush(reports, dead, topics, gaps, batch[-1])
        for msg in batch:
            self._decoded.pop(msg, None)

    def _flush(
        self,
        reports: list[ProgressMessage | StateMessage],
        dead: list[DeadLetter],
        topics: dict[int, Inbound],
        gaps: list[Gap],
        last: Inbound,
    ) -> None:
        if gaps:
            with transaction(self.sessions) as session:
                for gap in {(g.group, g.edge): g for g in gaps}.values():
                    _gap_alert(session, gap)
                session.flush()
                mirror_alerts(session, self.live)
        if reports or dead:
            self._store(reports, dead, topics, last)

    def _die(self, deaths: list[tuple[str, str]]) -> None:
        lines = sorted({line for line, _ in deaths})
        found = self.live.get_many("line", lines)
        why = dict(deaths)
        self.live.apply(
            [
                Update("line", line, {"state": "unavailable", "reason": why[line]})
                for line, lv in zip(lines, found, strict=True)
                if lv is not None and lv.get("state") != "unavailable"
            ]
        )

    def _fill_work_orders(self, decoded: list[tuple[Inbound, Decoded]]) -> None:
        """A progress report without a work order metric counts for the line's current one
        (the last reported on it, else the first in its queue)."""
        lines = sorted(
            {
                r.line
                for _, d in decoded
                for r in d.reports
                if isinstance(r, ProgressMessage) and not r.work_order
            }
        )
        if not lines:
            return
        current: dict[str, str] = {}
        for line, lv in zip(lines, self.live.get_many("line", lines), strict=True):
            wo = (lv or {}).get("work_order") or next(iter((lv or {}).get("queue") or []), None)
            if wo:
                current[line] = str(wo)
        for _, d in decoded:
            d.reports = [
                _with_work_order(r, current.get(r.line, ""))
                if isinstance(r, ProgressMessage) and not r.work_order
                else r
                for r in d.reports
            ]

    def _refused(self, src: Inbound, reason: str, detail: str) -> DeadLetter:
        return _dead(src, reason, detail)

    def poison(self, msg: Inbound, exc: BaseException) -> None:
        """Dead-letter a message the handler raised on (a bug, not bad input)."""
        self._decoded.pop(msg, None)
        with _stores(), transaction(self.sessions) as session:
            session.add(_dead(msg, REASON_HANDLER_ERROR, f"{type(exc).__name__}: {exc}"))
        self.rejected += 1
        log.error("dead letter from %s: %s (%s)", msg.topic, REASON_HANDLER_ERROR, exc)

    def connection_changed(self, connected: bool, reason: str) -> None:
        """The Sparkplug feed's broker connection is an alert of its own."""
        with transaction(self.sessions) as session:
            if connected:
                resolve_alert(session, key=DISCONNECTED)
            else:
                open_alert(
                    session,
                    key=DISCONNECTED,
                    kind=DISCONNECTED,
                    entity="ingest",
                    entity_id="sparkplug",
                    severity="critical",
                    role="it",
                    message=f"Sparkplug feed disconnected from the broker: {reason}",
                    details={"reason": reason},
                )
            session.flush()
            mirror_alerts(session, self.live)


def _with_work_order(report: ProgressMessage, work_order: str) -> ProgressMessage:
    return ProgressMessage(
        report.site,
        report.line,
        report.seq,
        report.ts,
        work_order,
        report.good,
        report.scrap,
        report.source,
        report.reason_code,
    )


def _gap_alert(session: Session, gap: Gap) -> None:
    node = f"{gap.group}/{gap.edge}"
    open_alert(
        session,
        key=f"sparkplug_gap:{node}",
        kind="sparkplug_gap",
        entity="ingest",
        entity_id=node,
        severity="info",
        role="it",
        message=f"Sparkplug node {node}: seq {gap.got} where {gap.expected} was due; "
        "rebirth requested",
        details={"node": node, "expected": gap.expected, "got": gap.got},
    )


def _dead(msg: Inbound, reason: str, detail: str) -> DeadLetter:
    """A dead letter keeping the binary payload whole (base64: protobuf is not text)."""
    return DeadLetter(
        at=utcnow(),
        source="sparkplug",
        topic=msg.topic.replace("\x00", "\\u0000")[:300],
        reason=reason[:200],
        detail=detail.replace("\x00", "\\u0000")[:2000],
        payload="base64:" + base64.b64encode(msg.payload[:PAYLOAD_KEEP]).decode(),
    )
