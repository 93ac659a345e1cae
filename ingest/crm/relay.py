"""The outbox relay, per connector: an order's feedback goes back to the CRM it came from.

Each outbox row is written back through the connector of the order's newest inbox event
(its ``writeback`` API, addressed by the CRM's record id kept as ``ref``); orders from a
connector without one go to ``LOOPLINE_CRM_URL`` as a signed Standard Webhook, as before.
Retries, backoff, dead letters and the unreachable alert are the outbox's own.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from loopline.ingest.crm.connector import Connector, Registry
from loopline.ingest.crm.crm_api import FetchError, write_back
from loopline.models.outbox import OutboxRelay, _Claimed
from loopline.models.records import InboxEvent

log = logging.getLogger("loopline.ingest.crm.relay")

NO_URL = "http://crm-url-not-set.invalid/"


class ConnectorRelay(OutboxRelay):
    """An ``OutboxRelay`` that writes each order's feedback through its connector."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        registry: Registry,
        url: str | None,
        secret: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(sessions, url=url or NO_URL, secret=secret, **kwargs)
        self.registry = registry
        self.default_url = url
        if not url:
            self.host = "the CRM connectors"
        # The chunk being posted: each order's newest inbox (source, event), or None.
        self._newest: dict[str, tuple[str, dict[str, Any]] | None] = {}

    def _prepare(self, claimed: list[_Claimed]) -> None:
        # Why in one query: a burst of promises is a chunk of rows, each needing its order's
        # newest inbox event; one query each was a sixth of the worker's CPU in a burst.
        wanted = {r.order_id for r in claimed if r.order_id is not None}
        self._newest = dict.fromkeys(wanted)
        if not wanted:
            return
        newest = (
            select(func.max(InboxEvent.id))
            .where(InboxEvent.order_id.in_(wanted), InboxEvent.event.is_not(None))
            .group_by(InboxEvent.order_id)
        )
        with self._sessions() as session:
            rows = session.execute(
                select(InboxEvent.order_id, InboxEvent.source, InboxEvent.event).where(
                    InboxEvent.id.in_(newest)
                )
            )
            for order_id, source, event in rows:
                self._newest[str(order_id)] = (source, dict(event or {}))

    def _post(self, row: _Claimed) -> str | None:
        target = self._target(row)
        if target is None:
            if self.default_url:
                return super()._post(row)
            # Why delivered: no destination is configured for this order's CRM; retrying
            # cannot change that, and an alert per order would drown the real ones.
            log.debug("outbox %s: no write-back for order %s", row.webhook_id, row.order_id)
            return None
        connector, ref = target
        assert connector.writeback is not None
        try:
            write_back(
                connector.writeback,
                ref=ref,
                order_id=row.order_id or "",
                payload=row.payload,
                client=self._client,
            )
        except FetchError as exc:
            return f"{connector.name}: {exc}"
        return None

    def _target(self, row: _Claimed) -> tuple[Connector, str] | None:
        """The connector that writes this row back and the CRM record it addresses."""
        if row.order_id is None:
            return None
        if row.order_id in self._newest:
            newest = self._newest[row.order_id]
        else:  # a row posted outside ``deliver_due``'s chunks
            self._prepare([row])
            newest = self._newest.get(row.order_id)
        if newest is None:
            return None
        source, event = newest
        connector = self.registry.connectors.get(source.removeprefix("crm:"))
        if connector is None or connector.writeback is None:
            return None
        if connector.writeback.kind == "standard_webhooks":
            return None
        return connector, str(event.get("ref") or row.order_id)


def configured(connector: Connector) -> bool:
    """Whether a connector's write-back API has its URL and token (environment) set."""
    api = connector.writeback
    if api is None or api.kind == "standard_webhooks":
        return False
    has_url = bool(api.base_url or (api.base_url_env and os.environ.get(api.base_url_env)))
    return has_url and bool(api.token_env and os.environ.get(api.token_env))


def needs_relay(registry: Registry) -> bool:
    """Whether any connector is set up to write back through its CRM's API."""
    return any(configured(c) for c in registry.connectors.values())
