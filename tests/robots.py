"""Local servers that play the chat robots, a webhook receiver and an SMTP server.

Each robot checks what its vendor checks (written from the vendors' documentation, not
from our client): the signature, the message shape and size, and its rate limit, and
answers the way the vendor answers, so a client that gets any of it wrong fails here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from standardwebhooks import Webhook, WebhookVerificationError

from tests.stack import free_port


@dataclass
class Robot:
    """What one robot was sent and how it answered."""

    kind: str
    secret: str = ""
    token: str = "tok123"
    down: bool = False  # answer 503 to everything (a channel that is down)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    _sent_at: deque[float] = field(default_factory=deque)

    def over_limit(self, count: int, per_s: float) -> bool:
        now = time.monotonic()
        recent = [t for t in self._sent_at if now - t < per_s]
        return len(recent) >= count


class _Handler(BaseHTTPRequestHandler):
    server: RobotServer

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        robot = self.server.route(parts.path)
        if robot is None:
            return self._answer(404, {"error": "no such robot"})
        if robot.down:
            return self._answer(503, {"error": "down"})
        with self.server.lock:
            status, answer = getattr(self, f"_{robot.kind}")(robot, raw, query, parts.path)
            if answer.get("errcode", answer.get("code", 0)) == 0 and status == 200:
                robot._sent_at.append(time.monotonic())
            else:
                robot.refused.append(json.dumps(answer))
        self._answer(status, answer)

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # DingTalk: POST /robot/send?access_token=..&timestamp=<ms>&sign=<urlencoded base64>
    def _dingtalk(self, robot: Robot, raw: bytes, q: dict[str, str], path: str) -> Any:
        if q.get("access_token") != robot.token:
            return 200, {"errcode": 300001, "errmsg": "token is not exist"}
        if robot.secret:
            ts = q.get("timestamp", "")
            if not ts.isdigit() or abs(time.time() * 1000 - int(ts)) > 3600_000:
                return 200, {"errcode": 310000, "errmsg": "invalid timestamp"}
            want = base64.b64encode(
                hmac.new(
                    robot.secret.encode(), f"{ts}\n{robot.secret}".encode(), hashlib.sha256
                ).digest()
            ).decode()
            # parse_qs already url-decoded "sign"
            if q.get("sign") != want:
                return 200, {"errcode": 310000, "errmsg": "sign not match"}
        body = json.loads(raw)
        if body.get("msgtype") != "markdown":
            return 200, {"errcode": 40035, "errmsg": "msgtype"}
        md = body.get("markdown") or {}
        if not isinstance(md.get("title"), str) or not isinstance(md.get("text"), str):
            return 200, {"errcode": 40035, "errmsg": "markdown needs title and text"}
        if robot.over_limit(20, 60.0):
            return 200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
        robot.accepted.append(body)
        return 200, {"errcode": 0, "errmsg": "ok"}

    # WeCom: POST /cgi-bin/webhook/send?key=...
    def _wecom(self, robot: Robot, raw: bytes, q: dict[str, str], path: str) -> Any:
        if q.get("key") != robot.token:
            return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
        body = json.loads(raw)
        if body.get("msgtype") != "markdown":
            return 200, {"errcode": 40008, "errmsg": "invalid message type"}
        content = (body.get("markdown") or {}).get("content")
        if not isinstance(content, str) or not content:
            return 200, {"errcode": 41009, "errmsg": "missing content"}
        if len(content.encode()) > 4096:
            return 200, {"errcode": 40058, "errmsg": "content exceed max length 4096"}
        if robot.over_limit(20, 60.0):
            return 200, {"errcode": 45009, "errmsg": "api freq out of limit"}
        robot.accepted.append(body)
        return 200, {"errcode": 0, "errmsg": "ok"}

    # Feishu: POST /open-apis/bot/v2/hook/<token>, {"timestamp", "sign", "msg_type", ...}
    def _feishu(self, robot: Robot, raw: bytes, q: dict[str, str], path: str) -> Any:
        body = json.loads(raw)
        if robot.secret:
            ts = str(body.get("timestamp", ""))
            if not ts.isdigit() or abs(time.time() - int(ts)) > 3600:
                return 200, {
                    "code": 19021,
                    "msg": "sign match fail or timestamp is not within one hour from current time",
                }  # noqa: E501
            key = f"{ts}\n{robot.secret}".encode()
            want = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
            if body.get("sign") != want:
                return 200, {"code": 19021, "msg": "sign match fail"}
        if body.get("msg_type") != "post":
            return 200, {"code": 19002, "msg": "params error, msg_type need"}
        post = ((body.get("content") or {}).get("post") or {}).get("zh_cn") or {}
        content = post.get("content")
        if not isinstance(content, list) or not all(
            isinstance(p, list) and all(e.get("tag") == "text" for e in p) for p in content
        ):
            return 200, {"code": 9499, "msg": "Bad Request"}
        if robot.over_limit(5, 1.0):
            return 200, {"code": 11232, "msg": "frequency limited psm"}
        robot.accepted.append(body)
        return 200, {"code": 0, "msg": "success", "data": {}}

    # A generic receiver of Standard-Webhooks-signed POSTs.
    def _webhook(self, robot: Robot, raw: bytes, q: dict[str, str], path: str) -> Any:
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            Webhook(robot.secret).verify(raw, headers)
        except WebhookVerificationError as exc:
            return 401, {"error": str(exc)}
        robot.accepted.append(json.loads(raw))
        robot.headers.append(headers)
        return 200, {"ok": True}


class RobotServer(ThreadingHTTPServer):
    """One HTTP server hosting any number of robots, each on its own path."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.robots: dict[str, Robot] = {}
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def route(self, path: str) -> Robot | None:
        return self.robots.get(path)

    def add(self, robot: Robot) -> str:
        """Host a robot; returns its URL as the vendor would give it."""
        if robot.kind == "dingtalk":
            path, url = "/robot/send", f"/robot/send?access_token={robot.token}"
        elif robot.kind == "wecom":
            path, url = "/cgi-bin/webhook/send", f"/cgi-bin/webhook/send?key={robot.token}"
        elif robot.kind == "feishu":
            path = url = f"/open-apis/bot/v2/hook/{robot.token}"
        else:
            path = url = f"/hooks/{robot.token}"
        assert path not in self.robots, "one robot of a kind per server"
        self.robots[path] = robot
        return self.base + url

    def start(self) -> RobotServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


class SmtpServer:
    """A real SMTP server (aiosmtpd) on a free port, keeping what it receives."""

    def __init__(self) -> None:
        self.mailbox = _Mailbox()
        self.port = free_port()
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[Message]:
        return self.mailbox.messages

    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
