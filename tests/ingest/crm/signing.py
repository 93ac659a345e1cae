"""Signing CRM webhooks in tests, as a CRM would."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook


def sign(
    body: bytes | str, secret: str, webhook_id: str = "evt_1", at: datetime | None = None
) -> dict[str, str]:
    """Standard Webhooks headers for ``body`` as a CRM would send them."""
    text = body if isinstance(body, str) else body.decode()
    stamp = at or datetime.now(UTC)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, stamp, text),
        "content-type": "application/json",
    }


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()
