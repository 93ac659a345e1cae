"""Channels: how a batch of notifications becomes one message on each kind of channel.

Formats and signatures follow each vendor's documentation:
- DingTalk group robot: ``sign = urlencode(base64(HMAC-SHA256(key=secret,
  msg="{timestamp_ms}\\n{secret}")))`` added to the URL with ``timestamp``; body
  ``{"msgtype": "markdown", "markdown": {"title", "text"}, "at": {"atMobiles"}}``; answers
  ``{"errcode": 0}``; 20 messages per minute per robot.
- WeCom group robot: body ``{"msgtype": "markdown", "markdown": {"content"}}`` (content at
  most 4096 bytes); answers ``{"errcode": 0}``; 20 messages per minute per robot.
- Feishu/Lark custom bot: ``sign = base64(HMAC-SHA256(key="{timestamp_s}\\n{secret}",
  msg=""))`` in the body beside ``timestamp``; body ``{"msg_type": "post", "content":
  {"post": {"zh_cn": {"title", "content"}}}}``; answers ``{"code": 0}``; 5 per second and
  100 per minute per bot.
- Generic webhook: a JSON body signed with Standard Webhooks (``webhook-id``,
  ``webhook-timestamp``, ``webhook-signature``), the same id on every retry of a message.
- E-mail over SMTP (smtplib, STARTTLS or TLS), one message per address and batch.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import smtplib
import ssl
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
from standardwebhooks import Webhook

from loopline.models.notify_rules import (
    Channel,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    WebhookChannel,
    WeComChannel,
)

# (messages, per seconds) a channel type accepts; more waits and is batched.
RATE_LIMITS: dict[str, tuple[tuple[int, float], ...]] = {
    "dingtalk": ((20, 60.0),),
    "wecom": ((20, 60.0),),
    "feishu": ((5, 1.0), (100, 60.0)),
}
# Bytes of one message's text a channel takes (WeCom refuses markdown over 4096 bytes).
TEXT_LIMIT_BYTES = {"dingtalk": 18000, "wecom": 4000, "feishu": 18000, "webhook": 200_000}
ITEM_BODY_MAX_CHARS = 600
# The vendors' "too many requests" answers: wait, do not count a failed attempt.
RATE_LIMITED_CODES = {"dingtalk": {130101}, "wecom": {45009}, "feishu": {9499, 11232, 11233}}
SEVERITY_MARK = {"critical": "🔴", "warning": "🟠", "info": "🔵"}


@dataclass(frozen=True)
class Mention:
    id: str
    name: str
    mobile: str | None = None


@dataclass(frozen=True)
class Item:
    """One notification as a message shows it."""

    id: int
    title: str
    body: str
    severity: str
    event: str
    created_at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    mentions: tuple[Mention, ...] = ()


class SendError(Exception):
    """A message the channel did not take; ``rate_limited``: try again later, no attempt
    counted; ``permanent``: retrying cannot help (a bad signature or key)."""

    def __init__(self, message: str, *, rate_limited: bool = False, permanent: bool = False):
        super().__init__(message)
        self.rate_limited = rate_limited
        self.permanent = permanent


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    """The robot URL with ``timestamp`` and ``sign`` (DingTalk "加签")."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(digest))
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}timestamp={timestamp_ms}&sign={sign}"


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's signature: HMAC-SHA256 keyed by ``"{timestamp}\\n{secret}"`` over nothing."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def _summary(items: Sequence[Item]) -> str:
    if len(items) == 1:
        return items[0].title
    worst = max(items, key=lambda i: ("info", "warning", "critical").index(i.severity))
    return f"{len(items)} notifications: {worst.title}"


def _cut(text: str) -> str:
    return text if len(text) <= ITEM_BODY_MAX_CHARS else text[: ITEM_BODY_MAX_CHARS - 1] + "…"


def _mobiles(items: Sequence[Item]) -> list[str]:
    return sorted({m.mobile for i in items for m in i.mentions if m.mobile})


def _markdown(items: Sequence[Item], *, heading: str, mention: str) -> str:
    parts = [f"{heading} {_summary(items)}"] if len(items) > 1 else []
    for item in items:
        mark = SEVERITY_MARK.get(item.severity, "")
        parts.append(f"**{mark} {item.title}**\n\n{_cut(item.body)}")
    mobiles = _mobiles(items)
    if mobiles:
        parts.append(" ".join(mention.format(m) for m in mobiles))
    return "\n\n".join(parts)


def dingtalk_body(items: Sequence[Item]) -> dict[str, Any]:
    """A DingTalk markdown message; mentioned mobiles appear as ``@mobile`` in the text, as
    DingTalk requires for markdown mentions."""
    return {
        "msgtype": "markdown",
        "markdown": {
            "title": _summary(items)[:100],
            "text": _markdown(items, heading="####", mention="@{}"),
        },
        "at": {"atMobiles": _mobiles(items), "isAtAll": False},
    }


def wecom_body(items: Sequence[Item]) -> dict[str, Any]:
    """A WeCom markdown message (mentions by mobile are only in text messages: named)."""
    parts = [f"### {_summary(items)}"] if len(items) > 1 else []
    for item in items:
        colour = {"critical": "warning", "warning": "comment"}.get(item.severity, "info")
        parts.append(f'<font color="{colour}">**{item.title}**</font>\n{_cut(item.body)}')
    names = sorted({m.name for i in items for m in i.mentions})
    if names:
        parts.append("For: " + ", ".join(names))
    return {"msgtype": "markdown", "markdown": {"content": "\n\n".join(parts)}}


def feishu_body(items: Sequence[Item], *, secret: str | None, timestamp_s: int) -> dict[str, Any]:
    """A Feishu rich-text ("post") message, signed when the bot has a secret."""
    content: list[list[dict[str, str]]] = []
    for item in items:
        mark = SEVERITY_MARK.get(item.severity, "")
        content.append([{"tag": "text", "text": f"{mark} {item.title}"}])
        content.append([{"tag": "text", "text": _cut(item.body)}])
    names = sorted({m.name for i in items for m in i.mentions})
    if names:
        content.append([{"tag": "text", "text": "For: " + ", ".join(names)}])
    body: dict[str, Any] = {
        "msg_type": "post",
        "content": {"post": {"zh_cn": {"title": _summary(items)[:100], "content": content}}},
    }
    if secret:
        body = {"timestamp": str(timestamp_s), "sign": feishu_sign(secret, timestamp_s), **body}
    return body


def webhook_body(items: Sequence[Item], message_id: str) -> dict[str, Any]:
    """The generic webhook's JSON: ``{"type": "notifications", "id", "data": [...]}``."""
    return {
        "type": "notifications",
        "id": message_id,
        "data": [
            {
                "id": item.id,
                "event": item.event,
                "severity": item.severity,
                "title": item.title,
                "body": item.body,
                "created_at": item.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "details": item.details,
                "recipients": [m.id for m in item.mentions],
            }
            for item in items
        ],
    }


def text_size(channel: Channel, items: Sequence[Item]) -> int:
    """Bytes of the part of the message the channel limits (to fit a batch)."""
    if isinstance(channel, DingTalkChannel):
        return len(dingtalk_body(items)["markdown"]["text"].encode())
    if isinstance(channel, WeComChannel):
        return len(wecom_body(items)["markdown"]["content"].encode())
    if isinstance(channel, FeishuChannel):
        return len(json.dumps(feishu_body(items, secret=None, timestamp_s=0)).encode())
    return 0


def fit(channel: Channel, items: Sequence[Item], cap: int | None = None) -> int:
    """How many of ``items`` (from the first) one message can carry: at most ``cap``
    (default the channel's ``max_batch``) and what the channel's text limit takes; at
    least one (its text is cut to fit)."""
    n = max(1, min(len(items), cap or channel.max_batch))
    limit = TEXT_LIMIT_BYTES.get(channel.type)
    if limit is None or text_size(channel, items[:n]) <= limit:
        return n
    low, high = 1, n - 1  # the largest count that fits, by bisection
    while low < high:
        mid = (low + high + 1) // 2
        if text_size(channel, items[:mid]) <= limit:
            low = mid
        else:
            high = mid - 1
    return low


def send(
    channel: Channel,
    items: Sequence[Item],
    *,
    message_id: str,
    address: str,
    client: httpx.Client,
    now: datetime,
) -> None:
    """Deliver one message carrying ``items``; SendError when the channel did not take it."""
    if isinstance(channel, EmailChannel):
        send_email(channel, items, to=address)
        return
    if isinstance(channel, WebhookChannel):
        body = json.dumps(webhook_body(items, message_id), ensure_ascii=False, default=str)
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(channel.secret).sign(message_id, now, body),
        }
        _post(channel, channel.url, body.encode(), headers, client, code_field=None)
        return
    url, payload, code_field = channel.url, {}, "errcode"
    if isinstance(channel, DingTalkChannel):
        payload = dingtalk_body(items)
        if channel.secret:
            url = dingtalk_signed_url(url, channel.secret, int(now.timestamp() * 1000))
    elif isinstance(channel, WeComChannel):
        payload = wecom_body(items)
    elif isinstance(channel, FeishuChannel):
        payload = feishu_body(items, secret=channel.secret, timestamp_s=int(now.timestamp()))
        code_field = "code"
    data = json.dumps(payload, ensure_ascii=False).encode()
    headers = {"content-type": "application/json; charset=utf-8"}
    _post(channel, url, data, headers, client, code_field=code_field)


def _post(
    channel: Channel,
    url: str,
    data: bytes,
    headers: dict[str, str],
    client: httpx.Client,
    *,
    code_field: str | None,
) -> None:
    headers = {"user-agent": "loopline-notify/1", **headers}
    try:
        response = client.post(url, content=data, headers=headers, timeout=channel.timeout_s)
    except httpx.HTTPError as exc:
        raise SendError(f"{type(exc).__name__}: {exc}") from exc
    if response.status_code == 429:
        raise SendError("HTTP 429", rate_limited=True)
    if not 200 <= response.status_code < 300:
        raise SendError(
            f"HTTP {response.status_code}: {response.text[:200]}",
            permanent=response.status_code in (400, 401, 403, 404),
        )
    if code_field is None:
        return
    # The robots answer 200 with an error code in the body.
    try:
        answer = response.json()
    except ValueError as exc:
        raise SendError(f"not JSON: {response.text[:200]}") from exc
    code = answer.get(code_field, answer.get("StatusCode", 0)) if isinstance(answer, dict) else 0
    if code in (0, None):
        return
    msg = answer.get("errmsg") or answer.get("msg") or ""
    raise SendError(
        f"{channel.type} {code_field} {code}: {msg}"[:300],
        rate_limited=code in RATE_LIMITED_CODES.get(channel.type, set()),
    )


def send_email(channel: EmailChannel, items: Sequence[Item], *, to: str) -> None:
    """One e-mail to ``to`` carrying ``items`` (plain text)."""
    smtp = channel.smtp
    msg = EmailMessage()
    msg["From"] = smtp.sender
    msg["To"] = to
    msg["Subject"] = f"[Loopline] {_summary(items)}"[:200]
    lines = []
    for item in items:
        stamp = item.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines += [f"{item.title} ({item.severity}, {stamp})", "", item.body, "", "-" * 40]
    msg.set_content("\n".join(lines))
    try:
        if smtp.security == "ssl":
            server: smtplib.SMTP = smtplib.SMTP_SSL(
                smtp.host, smtp.port, timeout=smtp.timeout_s, context=ssl.create_default_context()
            )
        else:
            server = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s)
        with server:
            if smtp.security == "starttls":
                server.starttls(context=ssl.create_default_context())
            if smtp.username:
                server.login(smtp.username, smtp.password or "")
            server.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        raise SendError(f"SMTP refused {to}: {exc.recipients}", permanent=True) from exc
    except smtplib.SMTPAuthenticationError as exc:
        raise SendError(f"SMTP login refused: {exc.smtp_code}", permanent=True) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise SendError(f"SMTP {type(exc).__name__}: {exc}") from exc
