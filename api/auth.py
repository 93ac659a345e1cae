"""Who is calling: bearer tokens for the API, a signed cookie for browsers and kiosks.

Roles: ``admin`` (the API token) may change things; ``display`` (the display token, for
wall screens) may only read; ``production_manager``, ``purchasing`` and ``sales`` (optional
tokens) read everything and may do what each route allows them (``api.deps.require_roles``).
A page opened with ``?token=<token>`` signs that browser in once: the token is traded for
a cookie and removed from the URL.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "loopline_session"
COOKIE_MAX_AGE_S = 90 * 24 * 3600
# Paths a browser may load before signing in: the API has its own auth, assets are public.
PUBLIC_PREFIXES = (
    "/api/",
    "/assets/",
    "/_dash-component-suites/",
    "/_favicon",
    "/docs",
    "/openapi.json",
    "/redoc",
)


ADMIN = "admin"
DISPLAY = "display"
PRODUCTION_MANAGER = "production_manager"
PURCHASING = "purchasing"
SALES = "sales"
ROLES = (ADMIN, DISPLAY, PRODUCTION_MANAGER, PURCHASING, SALES)


@dataclass(frozen=True)
class Principal:
    name: str
    role: str  # one of ROLES


class Tokens:
    """Checks tokens and signs the session cookie with a key derived from the API token."""

    def __init__(
        self,
        api_token: str,
        display_token: str | None,
        *,
        manager_token: str | None = None,
        purchasing_token: str | None = None,
        sales_token: str | None = None,
    ) -> None:
        self._by_role = [
            (role, token)
            for role, token in (
                (ADMIN, api_token),
                (DISPLAY, display_token),
                (PRODUCTION_MANAGER, manager_token),
                (PURCHASING, purchasing_token),
                (SALES, sales_token),
            )
            if token
        ]
        self._key = hashlib.sha256(b"loopline-cookie:" + api_token.encode()).digest()

    def principal(self, token: str | None) -> Principal | None:
        """The caller a bearer token stands for, or None."""
        if not token:
            return None
        for role, known in self._by_role:
            if hmac.compare_digest(token.encode(), known.encode()):
                return Principal(role, role)
        return None

    def cookie_for(self, principal: Principal) -> str:
        sig = hmac.new(self._key, principal.role.encode(), hashlib.sha256).hexdigest()
        return f"{principal.role}.{sig}"

    def from_cookie(self, value: str | None) -> Principal | None:
        if not value or "." not in value:
            return None
        role, sig = value.split(".", 1)
        good = hmac.new(self._key, role.encode(), hashlib.sha256).hexdigest()
        if role in ROLES and hmac.compare_digest(sig, good):
            return Principal(role, role)
        return None


def _cookie(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            jar.load(value.decode("latin-1"))
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


class PageAuthMiddleware:
    """Pages and Dash's own endpoints (HTTP and websocket) need a signed-in browser."""

    def __init__(self, app: ASGIApp, tokens: Tokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        token = query.pop("token", None)
        if scope["type"] == "http" and token is not None:
            principal = self.tokens.principal(token)
            if principal is None:
                await PlainTextResponse("invalid token", status_code=401)(scope, receive, send)
                return
            target = path + ("?" + urlencode(query) if query else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(
                COOKIE,
                self.tokens.cookie_for(principal),
                max_age=COOKIE_MAX_AGE_S,
                httponly=True,
                samesite="lax",
            )
            await response(scope, receive, send)
            return
        if self.tokens.from_cookie(_cookie(scope)) is None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4401})
                return
            await PlainTextResponse(
                "Sign in: open this page once with ?token=<your token> in its URL.",
                status_code=401,
            )(scope, receive, send)
            return
        await self.app(scope, receive, send)
