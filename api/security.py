"""HTTP hardening: security headers on every response, CORS closed unless configured, and
no token in any log line.

The pages' Content-Security-Policy is the strictest the Dash screens work under (checked in
headless Chromium by tests/dashboard/test_screens_csp.py): scripts only from this server
plus Dash's own inline scripts by their SHA-256 (``Dash.csp_hashes``), no ``eval``, nothing
framed, no plugins. Scripts may only connect back here (Dash's websocket runs in a worker,
under the policy its script was served with); everything else may load nothing at all.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Styles must allow 'unsafe-inline': Dash's renderer and dcc inject <style> elements (and
# Plotly styles its SVG inline); without it the browser blocks 22 of them on these screens.
# Styles cannot run code: scripts are what the policy holds to hashes.
PAGE_CSP = (
    "default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self'; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# FastAPI's Swagger UI and ReDoc pages load their code from a CDN and start it inline.
DOCS_PREFIXES = ("/docs", "/redoc")
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    "https://cdn.redoc.ly; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# A script's own policy matters only when it runs as a worker: Dash's websocket lives in a
# SharedWorker (dash-ws-worker.js), which connects back to this server and nothing else.
SCRIPT_CSP = (
    "default-src 'none'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
NOTHING_CSP = (
    "default-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
FIXED_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # The sign-in URL carries a token: it must never leave as a Referer.
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
CORS_MAX_AGE_S = 600


class SecurityHeaders:
    """Adds the security headers to every HTTP response that does not set its own."""

    def __init__(self, app: ASGIApp, script_hashes: Callable[[], Iterable[str]] = tuple) -> None:
        self.app = app
        self.script_hashes = script_hashes

    def page_csp(self) -> str:
        """The policy of an HTML page: Dash's inline scripts are allowed by hash only."""
        return PAGE_CSP.format(hashes=" ".join(self.script_hashes()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in FIXED_HEADERS.items():
                    headers.setdefault(name, value)
                kind = headers.get("content-type", "")
                if "javascript" in kind:
                    csp = SCRIPT_CSP
                elif not kind.startswith("text/html"):
                    csp = NOTHING_CSP
                elif path.startswith(DOCS_PREFIXES):
                    csp = DOCS_CSP
                else:
                    csp = self.page_csp()
                headers.setdefault("Content-Security-Policy", csp)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security(
    app: FastAPI,
    *,
    cors_origins: Sequence[str] = (),
    script_hashes: Callable[[], Iterable[str]] = tuple,
) -> None:
    """Add the security headers and, for ``cors_origins`` only, CORS (bearer tokens only:
    no credentials, and not the screens' ``X-Requested-By`` header, so a foreign page can
    never use a signed-in browser's cookie)."""
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,
            max_age=CORS_MAX_AGE_S,
        )
    app.add_middleware(SecurityHeaders, script_hashes=script_hashes)


_TOKEN_IN_URL = re.compile(r"(?i)([?&;](?:token|access_token|api_key)=)[^&;\s\"'#]*")
# Every logger that writes request lines: uvicorn's access log ("GET /wall?token=… 303")
# and its error log ("WebSocket /api/v1/stream?token=… [accepted]").
URL_LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn")


def redact(text: str) -> str:
    """``/wall?token=abc&lang=en`` -> ``/wall?token=***&lang=en``."""
    return _TOKEN_IN_URL.sub(r"\1***", text)


class RedactTokens(logging.Filter):
    """Rewrites a record's message and arguments so no ``token=`` value is written.

    Arguments stay arguments (uvicorn's access formatter unpacks them), each redacted.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        return True


def _redact_arg(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


def redact_logs() -> None:
    """Install :class:`RedactTokens` on uvicorn's loggers (where request lines are made)
    and on the root logger's handlers (everything else that propagates); idempotent.

    Logger filters survive uvicorn's ``dictConfig``, so this may run before or after it.
    """
    targets: list[logging.Filterer] = [logging.getLogger(n) for n in URL_LOGGERS]
    targets += logging.getLogger().handlers
    for target in targets:
        if not any(isinstance(f, RedactTokens) for f in target.filters):
            target.addFilter(RedactTokens())
