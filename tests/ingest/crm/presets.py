"""Helpers for the preset tests: recorded samples, signing as each CRM signs, receiving."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from loopline.ingest.crm.auth import Incoming
from loopline.ingest.crm.connector import Connector, default_registry
from loopline.ingest.crm.receive import Delivery, receive_all

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def sample_json(name: str) -> Any:
    return json.loads(sample(name))


def preset(name: str) -> Connector:
    return default_registry().get(name)


# The recorded batch answers (samples/hubspot_api.json) by the endpoint a delivery of several
# deals reads (CRM API v3 objects, v4 associations).
HUBSPOT_BATCH_ANSWERS = {
    "/crm/v3/objects/deals/batch/read": "deals_batch",
    "/crm/v4/associations/deals/line_items/batch/read": "deal_line_items",
    "/crm/v4/associations/deals/companies/batch/read": "deal_companies",
    "/crm/v3/objects/companies/batch/read": "companies_batch",
}


def hubspot_batch_routes(api: Any) -> Any:
    """``api`` (a FakeApi) also answering HubSpot's batch reads with the recorded answers."""
    answers = sample_json("hubspot_api.json")
    for path, name in HUBSPOT_BATCH_ANSWERS.items():
        api.route("POST", path, lambda c, m, name=name: (200, answers[name]))
    return api


def jdy_incoming(body: bytes, secret: str, deliver_id: str | None = None) -> Incoming:
    """A Jiandaoyun push as it arrives: nonce and timestamp in the query, the sha1 header."""
    nonce, stamp = uuid.uuid4().hex[:12], str(int(time.time()))
    signature = hashlib.sha1(f"{nonce}:{body.decode()}:{secret}:{stamp}".encode()).hexdigest()
    return Incoming.of(
        body,
        {
            "content-type": "application/json",
            "x-jdy-signature": signature,
            "x-jdy-deliverid": deliver_id or uuid.uuid4().hex,
        },
        query={"nonce": nonce, "timestamp": stamp},
        url=f"https://loopline.example/api/v1/crm/jiandaoyun/events?nonce={nonce}&timestamp={stamp}",
    )


def deliver(
    sessions: sessionmaker[Session], connector: Connector, incoming: Incoming, **kw: Any
) -> Delivery:
    return receive_all(
        sessions,
        connector=connector,
        incoming=incoming,
        secret="unused-loopline-secret",
        max_body_bytes=1 << 20,
        **kw,
    )


def hubspot_incoming(
    body: bytes, secret: str, url: str, *, method: str = "POST", at_ms: int | None = None
) -> Incoming:
    """A HubSpot v3-signed delivery: base64 HMAC-SHA256 of method + URL + body + timestamp."""
    import base64
    import hmac

    stamp = str(at_ms if at_ms is not None else int(time.time() * 1000))
    message = f"{method}{url}{body.decode()}{stamp}".encode()
    signature = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest())
    return Incoming.of(
        body,
        {
            "content-type": "application/json",
            "x-hubspot-signature-v3": signature.decode(),
            "x-hubspot-request-timestamp": stamp,
        },
        method=method,
        url=url,
    )
