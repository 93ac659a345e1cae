"""Authenticating a CRM delivery the way each CRM signs (or does not sign) its webhooks.

``verify`` raises ``BadSignature`` naming what is wrong, and returns the verified delivery id
when the scheme has one (Standard Webhooks' ``webhook-id``). Salesforce's OrganizationId is in
the body, so that check is ``check_organization`` after parsing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from loopline.ingest.crm.connector import AuthSpec


class BadSignature(Exception):
    """A delivery whose authenticity could not be established."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Incoming:
    """One HTTP delivery as the route saw it (headers lower-cased)."""

    body: bytes
    headers: Mapping[str, str]
    method: str = "POST"
    url: str = ""  # the full URL, with the query
    query: Mapping[str, str] = field(default_factory=dict)
    client_ip: str | None = None

    @staticmethod
    def of(
        body: bytes,
        headers: Mapping[str, str],
        *,
        method: str = "POST",
        url: str = "",
        query: Mapping[str, str] | None = None,
        client_ip: str | None = None,
    ) -> Incoming:
        lowered = {k.lower(): v for k, v in headers.items()}
        return Incoming(body, lowered, method, url, dict(query or {}), client_ip)


def secret_of(auth: AuthSpec, default: str) -> str:
    """The connector's secret from its environment variable, or ``default`` (Loopline's)."""
    if auth.secret_env is None:
        return default
    value = os.environ.get(auth.secret_env)
    if not value:
        raise BadSignature(f"the secret is not configured (set {auth.secret_env})")
    return value


def verify(auth: AuthSpec, incoming: Incoming, default_secret: str) -> str | None:
    """Check one delivery; the verified delivery id, if the scheme signs one."""
    _check_ip(auth, incoming.client_ip)
    secret = secret_of(auth, default_secret)
    check = _CHECKS[auth.kind]
    return check(auth, incoming, secret)


def _text(body: bytes) -> str:
    try:
        return body.decode()
    except UnicodeDecodeError:
        raise BadSignature("body is not UTF-8, so its signature cannot be checked") from None


def _standard(auth: AuthSpec, incoming: Incoming, secret: str) -> str | None:
    text = _text(incoming.body)
    try:
        Webhook(secret).verify(text, dict(incoming.headers), json_parse=False)
    except WebhookVerificationError as exc:
        raise BadSignature(str(exc)) from None
    except ValueError:  # a malformed webhook-signature header (no "v1,<base64>")
        raise BadSignature("Malformed webhook-signature header") from None
    return incoming.headers["webhook-id"]


def _jiandaoyun(auth: AuthSpec, incoming: Incoming, secret: str) -> str | None:
    """Jiandaoyun: ``X-JDY-Signature`` = sha1(``nonce:body:secret:timestamp``), nonce and
    timestamp in the query string."""
    nonce, stamp = incoming.query.get("nonce"), incoming.query.get("timestamp")
    given = incoming.headers.get("x-jdy-signature")
    if not (nonce and stamp and given):
        raise BadSignature("missing X-JDY-Signature header or nonce/timestamp query parameters")
    text = _text(incoming.body)
    expected = hashlib.sha1(f"{nonce}:{text}:{secret}:{stamp}".encode()).hexdigest()
    if not hmac.compare_digest(expected, given.strip().lower()):
        raise BadSignature("X-JDY-Signature does not match")
    _fresh(stamp, auth.window_s, scale=1)
    return None


def _hubspot(auth: AuthSpec, incoming: Incoming, secret: str) -> str | None:
    """HubSpot v3: base64 HMAC-SHA256 of method + URI + body + timestamp, within 5 minutes."""
    given = incoming.headers.get("x-hubspot-signature-v3")
    stamp = incoming.headers.get("x-hubspot-request-timestamp")
    if not (given and stamp):
        raise BadSignature("missing X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp")
    _fresh(stamp, auth.window_s, scale=1000)
    uri = incoming.url
    if auth.public_url:  # what HubSpot called, before a proxy rewrote host or scheme
        path_and_query = uri.split("/", 3)[3] if uri.count("/") >= 3 else ""
        uri = auth.public_url.rstrip("/") + "/" + path_and_query
    message = f"{incoming.method}{uri}{_text(incoming.body)}{stamp}"
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), given.strip()):
        raise BadSignature("X-HubSpot-Signature-v3 does not match")
    return None


def _url_token(auth: AuthSpec, incoming: Incoming, secret: str) -> str | None:
    """A secret in the URL (``?token=...``), for CRMs that do not sign (Odoo, Salesforce)."""
    given = incoming.query.get("token", "")
    if not given or not hmac.compare_digest(given.encode(), secret.encode()):
        raise BadSignature("missing or wrong token in the URL")
    return None


def _shared_token(auth: AuthSpec, incoming: Incoming, secret: str) -> str | None:
    given = incoming.headers.get(auth.header.lower(), "")
    if given.lower().startswith("bearer "):
        given = given[7:]
    if not given or not hmac.compare_digest(given.strip().encode(), secret.encode()):
        raise BadSignature(f"missing or wrong token in the {auth.header} header")
    return None


def _salesforce(auth: AuthSpec, incoming: Incoming, secret: str) -> str | None:
    # The OrganizationId (in the body) is checked after parsing; a URL token is optional.
    return _url_token(auth, incoming, secret) if auth.secret_env else None


def check_organization(auth: AuthSpec, doc: Any) -> None:
    """Salesforce: the notifications' OrganizationId must be the configured org's."""
    expected = auth.organization_id
    if auth.organization_id_env:
        expected = os.environ.get(auth.organization_id_env) or expected
    if not expected:
        raise BadSignature("no organization_id is configured for this connector")
    notifications = _find(doc, "notifications")
    given = notifications.get("OrganizationId") if isinstance(notifications, dict) else None
    # Salesforce shows 15- and 18-character ids; the first 15 are the id itself.
    if not isinstance(given, str) or given[:15] != expected[:15]:
        raise BadSignature(f"OrganizationId '{given}' is not this connector's organization")


def _find(doc: Any, key: str) -> Any:
    if isinstance(doc, dict):
        if key in doc:
            return doc[key]
        for value in doc.values():
            if (found := _find(value, key)) is not None:
                return found
    return None


def _fresh(stamp: str, window_s: int, *, scale: int) -> None:
    try:
        at = int(stamp) / scale
    except ValueError:
        raise BadSignature("timestamp is not a number") from None
    if abs(time.time() - at) > window_s:
        raise BadSignature(f"timestamp is more than {window_s} s away from now")


def _check_ip(auth: AuthSpec, client_ip: str | None) -> None:
    if not auth.ip_allowlist:
        return
    try:
        address = ipaddress.ip_address(client_ip or "")
    except ValueError:
        raise BadSignature("the sender's address is unknown and an allowlist is set") from None
    if not any(address in ipaddress.ip_network(net, strict=False) for net in auth.ip_allowlist):
        raise BadSignature(f"address {address} is not in the connector's allowlist")


def _import_only(auth: AuthSpec, incoming: Incoming, secret: str) -> str | None:
    raise BadSignature("this connector is for file imports (loopline import-orders) only")


_CHECKS = {
    "import": _import_only,
    "standard_webhooks": _standard,
    "jiandaoyun": _jiandaoyun,
    "hubspot_v3": _hubspot,
    "url_token": _url_token,
    "shared_token": _shared_token,
    "salesforce": _salesforce,
}
