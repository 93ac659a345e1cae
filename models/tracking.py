"""Customer tracking links: a signed, expiring link per order that opens a public,
read-only page with that order's status, promise, ETA and milestones, nothing else.

The link carries the order id signed with itsdangerous (HMAC-SHA256, with the time it
was made); it is good for ``max_age_s`` after that. Each feedback to the CRM carries a
fresh link, so a customer who follows the latest one is never long expired.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from loopline.models.audit import history
from loopline.models.estimate import iso
from loopline.models.live import LiveState
from loopline.models.orders import OPEN_STATUSES
from loopline.models.records import Order

TRACK_PATH = "/track/"
SALT = "loopline.tracking"
DEFAULT_MAX_AGE_S = 60 * 24 * 3600.0
# The order's history entries a customer is shown, as milestones (all else is internal).
MILESTONES = {
    "order.created": "received",
    "order.promised": "promised",
    "order.in_progress": "started",
    "order.completed": "completed",
    "order.delivered": "delivered",
    "order.cancelled": "cancelled",
}


class LinkExpired(Exception):
    """The link was genuine but is older than its lifetime."""


def tracking_key(secret: str) -> bytes:
    """The signing key for links, derived from a server secret (never the secret itself)."""
    return hashlib.sha256(b"loopline-tracking:" + secret.encode()).digest()


@dataclass(frozen=True)
class TrackingLinks:
    """Makes and checks tracking links; ``base_url`` is where customers reach Loopline."""

    key: bytes
    base_url: str = ""
    max_age_s: float = DEFAULT_MAX_AGE_S

    def _serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.key, salt=SALT)

    def token_for(self, order_id: str) -> str:
        """A signed token naming ``order_id``, made now."""
        return str(self._serializer().dumps({"o": order_id}))

    def url_for(self, order_id: str) -> str:
        """The tracking link of ``order_id`` (absolute when ``base_url`` is set)."""
        return f"{self.base_url.rstrip('/')}{TRACK_PATH}{self.token_for(order_id)}"

    def order_of(self, token: str) -> str | None:
        """The order a token names; None if it is not ours; ``LinkExpired`` when too old."""
        try:
            data = self._serializer().loads(token, max_age=int(self.max_age_s))
        except SignatureExpired as exc:
            raise LinkExpired(str(exc)) from exc
        except BadSignature:
            return None
        order_id = data.get("o") if isinstance(data, dict) else None
        return order_id if isinstance(order_id, str) else None


def tracking_view(session: Session, live: LiveState, *, order_id: str) -> dict[str, Any] | None:
    """What the tracking page shows of one order: status, promise, ETA, progress and
    milestones; None when there is no such order. Nothing else (no customer, lines,
    risk reasons or other orders) is read into it."""
    order = session.get(Order, order_id)
    if order is None:
        return None
    lv = live.get("order", order_id) or {}
    open_ = order.status in OPEN_STATUSES
    status = str(lv.get("status", order.status)) if open_ else order.status
    entries = history(session, entity="order", entity_ids=[order_id], limit=200).get(order_id, [])
    milestones: list[dict[str, Any]] = []
    for entry in entries:
        kind = MILESTONES.get(entry.action)
        if kind is None:
            continue
        item: dict[str, Any] = {"kind": kind, "at": iso(entry.at)}
        if kind == "promised":
            item["date"] = (entry.details or {}).get("new")
            # Only the latest promise counts; earlier ones are replaced, not stacked.
            milestones = [m for m in milestones if m["kind"] != "promised"]
        milestones.append(item)
    progress = float(lv.get("progress", 1.0 if order.status == "completed" else 0.0) or 0.0)
    return {
        "order_id": order.id,
        "status": status,
        "requested_date": order.requested_date.isoformat(),
        "promised_date": order.promised_date.isoformat() if order.promised_date else None,
        "eta": lv.get("eta") if open_ else None,
        "progress": max(0.0, min(1.0, progress)),
        "milestones": milestones,
    }


def promised_on_time(view: dict[str, Any]) -> bool | None:
    """Whether the ETA is on or before the promise (None: either is unknown)."""
    eta, promised = view.get("eta"), view.get("promised_date")
    if not eta or not promised:
        return None
    return date.fromisoformat(str(eta)[:10]) <= date.fromisoformat(str(promised))
