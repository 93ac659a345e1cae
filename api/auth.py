"""Who is calling: bearer tokens for the API, a per-sign-in session for browsers and kiosks.

Roles: ``admin`` (the API token) may change things; ``display`` (the display token, for
wall screens) may only read; ``production_manager`` and ``purchasing`` (optional tokens)
read everything and may do what each route allows them (``api.deps.require_roles``).
The optional shared ``sales`` token names no person, so it owns no customers: it sees no
order (``NO_ORDERS``) and may only quote. A sales rep signs in as themself (password or
OIDC) or uses a personal API key, and sees their own customers' orders.

A page opened with ``?token=<token>`` signs that browser in: the token is traded for a new
session (a record in SQL, ``models.web_sessions``) whose random secret goes to the browser
in a cookie signed with itsdangerous, and the browser is sent to the URL without the token.
A session ends when it expires (``SessionPolicy``), when an admin revokes it, or when the
token of its role is rotated (the record keeps a keyed fingerprint of the token used).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, urlencode, urlsplit

from itsdangerous import BadSignature, TimestampSigner
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loopline.api.pages import signin_page
from loopline.models import audit, web_sessions
from loopline.models import users as people
from loopline.models.clock import utcnow
from loopline.models.db import transaction
from loopline.models.scope import Acting, act_as, stop_acting
from loopline.models.users import OrderScope, User, scope_of
from loopline.models.web_sessions import SessionPolicy

log = logging.getLogger("loopline.auth")

COOKIE = "loopline_session"
# Why cache: every page request, Dash callback and screen API call checks the session; a
# few seconds of memory spare the database, and bound how long a revocation made by
# another process takes to bite.
SESSION_CACHE_S = 5.0
# An open websocket signed in by cookie checks its session again this often.
SESSION_RECHECK_S = 10.0
WS_UNAUTHORIZED = 4401  # close code: 4000 + the HTTP status
# Paths a browser may load before signing in: the API has its own auth, assets are public.
PUBLIC_PREFIXES = (
    "/api/",
    "/assets/",
    "/_dash-component-suites/",
    "/_favicon",
    "/docs",
    "/openapi.json",
    "/redoc",
    "/signin",  # the sign-in form and its post (api/routes/signin.py)
    "/track/",  # a customer's tracking page: its signed link is the credential
)


ADMIN = "admin"
DISPLAY = "display"
PRODUCTION_MANAGER = "production_manager"
PURCHASING = "purchasing"
SALES = "sales"
ROLES = (ADMIN, DISPLAY, PRODUCTION_MANAGER, PURCHASING, SALES)
# The scope of a shared sales token: no customers and no reps, so no order, work order,
# plan row, alert, change, task or notification about an order (404 as for one that does
# not exist, on every route, stream and screen). Sales data is per person (issue 11).
NO_ORDERS = OrderScope()


@dataclass(frozen=True)
class Principal:
    """Who a request acts for; ``session`` is the browser session's record id, if any.

    A role token's caller is named after its role; a person (``user_id`` set) by their
    username, with their full name in ``person``. ``roles`` are every role held (``role``
    is the first); ``scope`` limits which orders they see (None: every order).
    """

    name: str
    role: str  # one of ROLES
    session: str | None = None
    user_id: int | None = None
    person: str | None = None
    roles: tuple[str, ...] = ()
    scope: OrderScope | None = None
    lang: str | None = None

    def __post_init__(self) -> None:
        if not self.roles:
            object.__setattr__(self, "roles", (self.role,))

    def holds(self, roles: Iterable[str]) -> bool:
        """Whether the caller holds one of ``roles``."""
        return not set(self.roles).isdisjoint(roles)

    def sees(self, *, customer_id: str | None, sales_rep: str | None) -> bool:
        """Whether an order of this customer and rep is the caller's to see."""
        return self.scope is None or self.scope.allows(customer_id=customer_id, sales_rep=sales_rep)


def role_principal(role: str, *, name: str | None = None, session: str | None = None) -> Principal:
    """The principal a shared role token (or a browser signed in with one) acts as: every
    order for the factory's roles, none for ``sales`` (``NO_ORDERS``)."""
    return Principal(
        name or role, role, session=session, scope=NO_ORDERS if role == SALES else None
    )


def user_principal(user: User, *, session: str | None = None) -> Principal:
    """The principal a signed-in person or their API key acts as."""
    roles = tuple(str(r) for r in user.roles)
    return Principal(
        user.username,
        roles[0],
        session=session,
        user_id=user.id,
        person=user.name,
        roles=roles,
        scope=scope_of(user),
        lang=user.lang,
    )


class Tokens:
    """The configured role tokens, and the key that signs sessions and fingerprints tokens.

    ``secret`` (``LOOPLINE_SESSION_SECRET``) is the signing key; unset, it is derived from
    the API token, so rotating the API token then also ends every browser session.
    """

    def __init__(
        self,
        api_token: str,
        display_token: str | None,
        *,
        manager_token: str | None = None,
        purchasing_token: str | None = None,
        sales_token: str | None = None,
        secret: str | None = None,
    ) -> None:
        self._by_role = {
            role: token
            for role, token in (
                (ADMIN, api_token),
                (DISPLAY, display_token),
                (PRODUCTION_MANAGER, manager_token),
                (PURCHASING, purchasing_token),
                (SALES, sales_token),
            )
            if token
        }
        self.key = hashlib.sha256(
            b"loopline-session:" + (secret or "api-token:" + api_token).encode()
        ).digest()

    def principal(self, token: str | None) -> Principal | None:
        """The caller a bearer token stands for, or None."""
        if not token:
            return None
        for role, known in self._by_role.items():
            if hmac.compare_digest(token.encode(), known.encode()):
                return role_principal(role)
        return None

    def fingerprint(self, token: str) -> str:
        """A keyed hash of ``token``: equal for equal tokens, useless to whoever reads it."""
        return hmac.new(self.key, b"token:" + token.encode(), hashlib.sha256).hexdigest()

    def user_fingerprint(self, user: User) -> str:
        """What a person's session must match: changes when the user's stamp does."""
        return self.fingerprint(f"user:{user.id}:{user.stamp}")

    def current_fingerprint(self, role: str) -> str | None:
        """The fingerprint of ``role``'s configured token (None: the role has no token)."""
        token = self._by_role.get(role)
        return self.fingerprint(token) if token else None


class SessionStoreDown(Exception):
    """The session records cannot be read (the database is down) and nothing is cached."""


class BrowserSessions:
    """Sign-ins and their checks: the signed cookie, the record behind it, a short cache."""

    def __init__(
        self,
        tokens: Tokens,
        db: sessionmaker[Session],
        policy: SessionPolicy,
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.tokens = tokens
        self.policy = policy
        self._db = db
        self._now = now
        self._signer = TimestampSigner(tokens.key, salt="loopline.session")
        # sid -> (principal or None, when it ends, monotonic time of the check)
        self._cache: dict[str, tuple[Principal | None, datetime | None, float]] = {}

    def sign_in(self, principal: Principal, token: str, *, user_agent: str | None) -> str:
        """Start a session for ``principal`` (who showed ``token``); return the cookie value."""
        with transaction(self._db) as session:
            secret, record = web_sessions.start(
                session,
                principal=principal.name,
                role=principal.role,
                token_fingerprint=self.tokens.fingerprint(token),
                policy=self.policy,
                now=self._now(),
                user_agent=user_agent,
            )
        log.info("session %s… started for %s", record.id[:8], principal.name)
        return self._signer.sign(secret).decode()

    def sign_in_user(self, user: User, *, user_agent: str | None) -> str:
        """Start a session for a person who proved who they are; return the cookie value."""
        with transaction(self._db) as session:
            secret, record = web_sessions.start(
                session,
                principal=user.username,
                role=str(user.roles[0]),
                token_fingerprint=self.tokens.user_fingerprint(user),
                policy=self.policy,
                now=self._now(),
                user_agent=user_agent,
                user_id=user.id,
            )
            audit.record(
                session,
                actor=user.username,
                action="user.signed_in",
                entity="user",
                entity_id=user.username,
                details={"session": record.id[:16]},
            )
        log.info("session %s… started for user %s", record.id[:8], user.username)
        return self._signer.sign(secret).decode()

    def max_age_s(self, role: str) -> int:
        """The cookie's lifetime for a sign-in of ``role``."""
        return int(self.policy.max_age_for(role))

    def sid_of(self, cookie: str | None) -> str | None:
        """The record id a cookie names, if its signature is ours and it is not too old."""
        if not cookie:
            return None
        longest = int(max(self.policy.max_age_s, self.policy.kiosk_max_age_s)) + 1
        try:
            secret = self._signer.unsign(cookie, max_age=longest).decode()
        except (BadSignature, UnicodeDecodeError):
            return None
        return web_sessions.session_id(secret)

    def cached(self, cookie: str | None) -> tuple[bool, Principal | None]:
        """``(True, who)`` when the cookie was checked less than the cache time ago."""
        sid = self.sid_of(cookie)
        if sid is None:
            return True, None
        hit = self._cache.get(sid)
        if hit is None:
            return False, None
        principal, ends, checked = hit
        # Never cache past the touch interval, or a use that should slide a person's idle
        # expiry would never reach the record.
        ttl = SESSION_CACHE_S
        if principal is not None:
            ttl = min(ttl, self.policy.touch_every_s(principal.role))
        if time.monotonic() - checked > ttl:
            return False, None
        if principal is not None and ends is not None and ends <= self._now():
            return True, None
        return True, principal

    def check(self, cookie: str | None) -> Principal | None:
        """Who a session cookie stands for, or None (bad, expired, revoked or rotated)."""
        known, principal = self.cached(cookie)
        if known:
            return principal
        sid = self.sid_of(cookie)
        assert sid is not None  # cached() answers for unsigned cookies
        now = self._now()
        try:
            with transaction(self._db) as session:
                record = web_sessions.active(session, sid=sid, now=now)
                principal = self._principal_of(session, record, sid)
                ends: datetime | None = None
                if principal is not None and record is not None:
                    web_sessions.touch(session, record=record, policy=self.policy, now=now)
                    ends = record.expires_at
        except SQLAlchemyError as exc:
            # The database is down: a session seen valid lately stays valid until it ends,
            # so the screens keep showing (stale) data instead of a sign-in prompt.
            hit = self._cache.get(sid)
            if hit and hit[0] is not None and hit[1] is not None and hit[1] > now:
                return hit[0]
            raise SessionStoreDown(str(exc)) from exc
        if len(self._cache) > 10_000:  # a bound, not a policy: drop and re-read
            self._cache.clear()
        self._cache[sid] = (principal, ends, time.monotonic())
        return principal

    def _principal_of(
        self, session: Session, record: web_sessions.WebSession | None, sid: str
    ) -> Principal | None:
        """Who a valid session record stands for: a role whose token did not change since,
        or a person still enabled whose stamp did not change (password, roles, scope)."""
        if record is None:
            return None
        if record.user_id is None:
            current = self.tokens.current_fingerprint(record.role) or ""
            if hmac.compare_digest(record.token_fingerprint, current):
                return role_principal(record.role, name=record.principal, session=sid)
            return None
        user = session.get(User, record.user_id)
        if user is None or not user.active:
            return None
        if not hmac.compare_digest(record.token_fingerprint, self.tokens.user_fingerprint(user)):
            return None
        return user_principal(user, session=sid)

    async def acheck(self, cookie: str | None) -> Principal | None:
        """:meth:`check` for async code: the database read runs in a worker thread."""
        known, principal = self.cached(cookie)
        if known:
            return principal
        return await run_in_threadpool(self.check, cookie)

    def list(self) -> list[web_sessions.WebSession]:
        """The sessions still valid."""
        with self._db() as session:
            return web_sessions.listing(session, now=self._now())

    def revoke(self, sid: str, *, actor: str | None = None) -> bool:
        """End session ``sid`` now (other processes notice within the cache time); an
        ``actor`` (who ended it) is recorded in the audit."""
        with transaction(self._db) as session:
            done = web_sessions.revoke(session, sid=sid, now=self._now())
            if done and actor is not None:
                audit.record(
                    session,
                    actor=actor,
                    action="session.revoked",
                    entity="session",
                    entity_id=sid[:16],
                    details={},
                )
        self._cache.pop(sid, None)
        return done

    def forget(self, cookie: str | None) -> None:
        """End the session a cookie names, if any (a browser signing in again)."""
        sid = self.sid_of(cookie)
        if sid is not None:
            self.revoke(sid)


class ApiKeys:
    """Personal API keys as bearer tokens: the person behind a key, with a short cache."""

    def __init__(self, db: sessionmaker[Session], *, now: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._now = now
        # key hash -> (principal or None, monotonic time of the check)
        self._cache: dict[str, tuple[Principal | None, float]] = {}

    def check(self, key: str) -> Principal | None:
        """The person a personal key acts for, or None (unknown, revoked, user disabled)."""
        if people.key_id_of(key) is None:
            return None
        digest = people.key_hash(key)
        hit = self._cache.get(digest)
        if hit is not None and time.monotonic() - hit[1] <= SESSION_CACHE_S:
            return hit[0]
        try:
            with transaction(self._db) as session:
                row = people.check_key(session, key=key, now=self._now())
                principal = user_principal(row.user) if row is not None else None
        except SQLAlchemyError as exc:
            raise SessionStoreDown(str(exc)) from exc
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (principal, time.monotonic())
        return principal

    async def acheck(self, key: str) -> Principal | None:
        """:meth:`check` for async code."""
        return await run_in_threadpool(self.check, key)

    def forget(self) -> None:
        """Drop the cache (a key was revoked in this process)."""
        self._cache.clear()


def cookie_of(scope: Scope) -> str | None:
    """The session cookie of a request or websocket handshake."""
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:  # a malformed Cookie header is no session
                continue
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


def same_origin(scope: Scope) -> bool:
    """Whether a websocket handshake comes from a page of this server (its Origin names
    the Host it connects to). Browsers send cookies on cross-site websockets, and always
    send Origin, so a cookie counts on a websocket only when this holds."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
    origin, host = headers.get("origin"), headers.get("host")
    return bool(origin and host and urlsplit(origin).netloc == host)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class PageAuthMiddleware:
    """Pages and Dash's own endpoints (HTTP and websocket) need a signed-in browser."""

    def __init__(self, app: ASGIApp, sessions: BrowserSessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        token = next((v for k, v in query if k == "token"), None)
        if scope["type"] == "http" and token is not None:
            await self._sign_in(
                scope, receive, send, token, [(k, v) for k, v in query if k != "token"]
            )
            return
        cookie = cookie_of(scope)
        try:
            principal = await self.sessions.acheck(cookie)
        except SessionStoreDown:
            await _unavailable(scope, receive, send)
            return
        if scope["type"] == "websocket":
            if principal is None or not same_origin(scope):
                await send({"type": "websocket.close", "code": WS_UNAUTHORIZED})
                return
            send = self._rechecking(send, cookie)
        elif principal is None:
            # The sign-in form itself, so a person can sign in from wherever they landed
            # (a kiosk still signs in with ?token= in the URL).
            nxt = scope["path"] + ("?" + urlencode(query) if query else "")
            await signin_page(nxt, status_code=401)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        # The screens read the live state through this (models/scope.py ScopedLive).
        acting = act_as(Acting(principal.name, principal.roles, principal.scope))
        try:
            await self.app(scope, receive, send)
        finally:
            stop_acting(acting)

    async def _sign_in(
        self, scope: Scope, receive: Receive, send: Send, token: str, rest: list[tuple[str, str]]
    ) -> None:
        principal = self.sessions.tokens.principal(token)
        if principal is None:
            await PlainTextResponse("invalid token", status_code=401)(scope, receive, send)
            return
        old = cookie_of(scope)
        try:
            if old:
                await run_in_threadpool(self.sessions.forget, old)
            value = await run_in_threadpool(
                self.sessions.sign_in,
                principal,
                token,
                user_agent=_header(scope, b"user-agent"),
            )
        except SQLAlchemyError:
            await _unavailable(scope, receive, send)
            return
        target = scope["path"] + ("?" + urlencode(rest) if rest else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            value,
            max_age=self.sessions.max_age_s(principal.role),
            httponly=True,
            samesite="lax",
            secure=scope.get("scheme") == "https",
        )
        await response(scope, receive, send)

    def _rechecking(self, send: Send, cookie: str | None) -> Send:
        """``send`` that checks the session again every ``SESSION_RECHECK_S`` and closes the
        socket (4401) once it has ended: a revoked kiosk does not keep its open screen."""
        checked = time.monotonic()

        async def wrapped(message: Message) -> None:
            nonlocal checked
            if message["type"] == "websocket.send" and (
                time.monotonic() - checked > SESSION_RECHECK_S
            ):
                checked = time.monotonic()
                try:
                    valid = await self.sessions.acheck(cookie) is not None
                except SessionStoreDown:
                    valid = True  # an outage is not a sign-out
                if not valid:
                    await send({"type": "websocket.close", "code": WS_UNAUTHORIZED})
                    return
            await send(message)

        return wrapped


async def _unavailable(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1013})  # try again later
        return
    await PlainTextResponse(
        "the session store is unavailable; retry shortly",
        status_code=503,
        headers={"Retry-After": "5"},
    )(scope, receive, send)
