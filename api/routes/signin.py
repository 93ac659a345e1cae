"""Sign-in for people: the form at ``/signin`` (username and password), and sign-out.

A wrong name or password gets the same answer in about the same time
(``models.users.authenticate``). The post must come from the form this server gave out
(its anti-forgery cookie), so another site cannot sign a browser into an account of its
choosing.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse

from loopline.api.auth import COOKIE, BrowserSessions
from loopline.api.oidc import CALLBACK_PATH, STATE_COOKIE, STATE_MAX_AGE_S, OidcClient, OidcError
from loopline.api.pages import CSRF_COOKIE, CSRF_FIELD, safe_next, signin_page
from loopline.models.db import transaction
from loopline.models.users import User, authenticate, user_for_oidc

router = APIRouter(include_in_schema=False)
MAX_FORM_BYTES = 4096
# Guessing passwords: after this many failures for one user name within the window, its
# sign-in is refused until the window has passed (counted in Redis, shared by servers).
MAX_FAILURES = 10
FAILURE_WINDOW_S = 15 * 60
FAILURES_KEY = "loopline:signin-failures:"


def _failures(request: Request, username: str, *, add: bool = False, clear: bool = False) -> int:
    """The recent failed sign-ins of ``username`` (0 when Redis cannot say: an outage
    does not lock people out)."""
    redis = request.app.state.context.live.redis
    key = FAILURES_KEY + username.strip().casefold()
    try:
        if clear:
            redis.delete(key)
            return 0
        if add:
            pipe = redis.pipeline()
            pipe.set(key, 0, ex=FAILURE_WINDOW_S, nx=True)  # the window opens at the first
            pipe.incr(key)
            return int(pipe.execute()[1])
        return int(redis.get(key) or 0)
    except Exception:  # noqa: BLE001 - any store error: do not block sign-in
        return 0


def _sessions(request: Request) -> BrowserSessions:
    return request.app.state.browser_sessions  # type: ignore[no-any-return]


def _sso(request: Request) -> bool:
    return getattr(request.app.state, "oidc", None) is not None


def foreign_post(request: Request) -> bool:
    """Whether a form post comes from a page of another site (its Origin names another)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":  # our own pages' posts say null (no-referrer)
        return False
    return urlsplit(origin).netloc != request.headers.get("host")


def signed_in_response(request: Request, user: User, next_url: str | None) -> Response:
    """Start ``user``'s session and send the browser on to ``next_url`` with its cookie."""
    sessions = _sessions(request)
    old = request.cookies.get(COOKIE)
    if old:
        sessions.forget(old)
    value = sessions.sign_in_user(user, user_agent=request.headers.get("user-agent"))
    response = RedirectResponse(safe_next(next_url), status_code=303)
    response.set_cookie(
        COOKIE,
        value,
        max_age=sessions.max_age_s(str(user.roles[0])),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/signin")
def signin_form(request: Request, next: str = "/") -> Response:
    return signin_page(next, sso=_sso(request))


@router.post("/signin")
async def signin(request: Request) -> Response:
    if foreign_post(request):
        return PlainTextResponse("sign-in from another site refused", status_code=403)
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        return PlainTextResponse("form too large", status_code=413)
    form = dict(parse_qsl(raw.decode("utf-8", "replace")))
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(form.get(CSRF_FIELD, ""), expected):
        # No cookie of our form: posted from elsewhere, or the form is an hour old.
        return signin_page(
            form.get("next"), error="Please sign in again.", status_code=403, sso=_sso(request)
        )
    username, password = form.get("username", ""), form.get("password", "")
    next_url = form.get("next")
    if not username or not password:
        return signin_page(
            next_url, error="Give your user name and password.", status_code=422, sso=_sso(request)
        )
    ctx = request.app.state.context
    if await run_in_threadpool(_failures, request, username) >= MAX_FAILURES:
        return signin_page(
            next_url,
            error="Too many failed sign-ins for this name; try again in 15 minutes.",
            status_code=429,
            sso=_sso(request),
        )

    def check() -> User | None:
        with transaction(ctx.sessions) as session:
            user = authenticate(session, username=username, password=password)
        _failures(request, username, add=user is None, clear=user is not None)
        return user

    try:
        user = await run_in_threadpool(check)
        if user is None:
            return signin_page(
                next_url,
                error="Wrong user name or password.",
                status_code=401,
                sso=_sso(request),
            )
        return await run_in_threadpool(signed_in_response, request, user, next_url)
    except SQLAlchemyError:
        return PlainTextResponse(
            "the session store is unavailable; retry shortly",
            status_code=503,
            headers={"Retry-After": "5"},
        )


def _redirect_uri(request: Request) -> str:
    base = request.app.state.context.public_url or str(request.base_url)
    return base.rstrip("/") + CALLBACK_PATH


@router.get("/signin/oidc")
async def oidc_start(request: Request, next: str = "/") -> Response:
    """Send the browser to the company's sign-in service (404 when SSO is not set up)."""
    oidc: OidcClient | None = getattr(request.app.state, "oidc", None)
    if oidc is None:
        return PlainTextResponse("single sign-on is not configured", status_code=404)
    try:
        url, cookie = await run_in_threadpool(
            oidc.start, redirect_uri=_redirect_uri(request), next_url=safe_next(next)
        )
    except OidcError as exc:
        return signin_page(next, error=str(exc), status_code=502, sso=True)
    response = RedirectResponse(url, status_code=302)
    # Lax: the IdP sends the browser back with a top-level GET, which carries it.
    response.set_cookie(
        STATE_COOKIE,
        cookie,
        max_age=STATE_MAX_AGE_S,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.get(CALLBACK_PATH)
async def oidc_callback(request: Request, code: str = "", state: str = "") -> Response:
    """Finish an SSO sign-in: check the ID token, find the user, start their session."""
    oidc: OidcClient | None = getattr(request.app.state, "oidc", None)
    if oidc is None:
        return PlainTextResponse("single sign-on is not configured", status_code=404)
    error = request.query_params.get("error")
    if error or not code or not state:
        return signin_page(
            "/", error=f"Single sign-on failed: {error or 'no code'}.", status_code=401, sso=True
        )
    ctx = request.app.state.context

    def finish() -> tuple[User | None, str]:
        claims, next_url = oidc.finish(
            redirect_uri=_redirect_uri(request),
            code=code,
            state=state,
            cookie=request.cookies.get(STATE_COOKIE),
        )
        with transaction(ctx.sessions) as session:
            user = user_for_oidc(
                session,
                subject=f"{oidc.issuer}|{claims['sub']}",
                username=claims.get("preferred_username"),
                email=claims.get("email") if claims.get("email_verified", True) else None,
            )
        return user, next_url

    try:
        user, next_url = await run_in_threadpool(finish)
    except OidcError as exc:
        return signin_page("/", error=str(exc), status_code=401, sso=True)
    if user is None:
        return signin_page(
            "/",
            error="You signed in, but no Loopline user is set up for you. Ask an admin.",
            status_code=403,
            sso=True,
        )
    response = await run_in_threadpool(signed_in_response, request, user, next_url)
    response.delete_cookie(STATE_COOKIE)
    return response


@router.post("/signin/out")
async def signout(request: Request) -> Response:
    """End this browser's session and show the sign-in form."""
    if foreign_post(request):
        return PlainTextResponse("refused", status_code=403)
    cookie = request.cookies.get(COOKIE)
    if cookie:
        await run_in_threadpool(_sessions(request).forget, cookie)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE)
    return response
