"""A real local HTTP server playing a CRM's API: routes answer JSON, every request is kept."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


Handler = Callable[[Call, re.Match[str]], tuple[int, Any]]


class FakeApi:
    """``route(method, path_regex, handler)``; ``fail(n, status)`` answers the next n calls
    with ``status``; ``calls`` holds what was asked."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.calls: list[Call] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, method: str, pattern: str, handler: Handler) -> FakeApi:
        self.routes.append((method, re.compile(pattern), handler))
        return self

    def fail(self, n: int, status: int = 503) -> None:
        with self._lock:
            self._failures += [status] * n

    def written(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def __enter__(self) -> FakeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, call: Call) -> tuple[int, Any]:
        with self._lock:
            self.calls.append(call)
            if self._failures:
                return self._failures.pop(0), {"message": "injected failure"}
        for method, pattern, handler in self.routes:
            if method == call.method and (m := pattern.fullmatch(call.path)):
                return handler(call, m)
        return 404, {"message": f"no route {call.method} {call.path}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class H(BaseHTTPRequestHandler):
            # Keep-alive, as the CRMs' APIs do (HTTP/1.0 closed each connection after one
            # answer: a benchmark then measured TCP setup, not the connector).
            protocol_version = "HTTP/1.1"
            # An answer in one write, sent at once (headers and body as two small writes
            # on a kept-alive connection met the client's delayed ACK: 40 ms a call).
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def _any(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                call = Call(
                    self.command,
                    parts.path,
                    {k: v[0] for k, v in parse_qs(parts.query).items()},
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                status, answer = api._answer(call)
                data = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = _any  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return H
