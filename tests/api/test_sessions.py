"""Browser sessions and the HTTP hardening around them (issue 8, item 10), on real servers.

Each sign-in gets its own server-side session; sessions expire, can be revoked, and end
when the token that signed them in is rotated. Tokens never reach a log line, the stream
takes no token in its URL, every response carries security headers, CORS is closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import uvicorn
import websockets

from loopline.api.app import create_app
from loopline.api.auth import COOKIE
from loopline.runtime import api_context, build_app
from tests.factories import order_event
from tests.stack import API_TOKEN, DISPLAY_TOKEN, free_port, run_async, wait_until

ROOT = Path(__file__).resolve().parents[2]
API_CALL = {"X-Requested-By": "loopline"}  # what the screens send with their cookie


@contextmanager
def served(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Serve ``app`` with uvicorn on a free port (as `loopline serve` does); yield its URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=20)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def sign_in(url: str, token: str) -> httpx.Client:
    """A browser that opened a page once with ``?token=`` (the kiosk sign-in)."""
    browser = httpx.Client(base_url=url, timeout=10)
    first = browser.get(f"/wall?token={token}")
    assert first.status_code == 303, first.text
    return browser


def signed_in(browser: httpx.Client) -> bool:
    """Whether the browser's session still opens a page and reads the API."""
    page = browser.get("/board").status_code
    api = browser.get("/api/v1/lines", headers=API_CALL).status_code
    assert (page == 200) == (api == 200), (page, api)
    return page == 200


def test_each_sign_in_gets_its_own_expiring_session(api_stack):
    a, b = sign_in(api_stack.url, DISPLAY_TOKEN), sign_in(api_stack.url, DISPLAY_TOKEN)
    with closing(a), closing(b):
        assert a.cookies[COOKIE] != b.cookies[COOKIE]
        assert "display" not in a.cookies[COOKIE]  # a random id, not the role
        assert signed_in(a) and signed_in(b)
        raw = httpx.get(f"{api_stack.url}/wall?token={API_TOKEN}").headers["set-cookie"].lower()
        assert "httponly" in raw and "samesite=lax" in raw
        max_age = int(raw.split("max-age=")[1].split(";")[0])
        assert max_age <= 7 * 24 * 3600  # a person's sign-in lasts days, not 90 of them
        # A forged or altered cookie is nobody.
        forged = httpx.Client(base_url=api_stack.url, cookies={COOKIE: a.cookies[COOKIE] + "x"})
        assert forged.get("/wall").status_code == 401
        assert (
            httpx.get(f"{api_stack.url}/wall", cookies={COOKIE: "display.abc"}).status_code == 401
        )


def test_admin_lists_and_revokes_sessions(api_stack):
    with (
        closing(sign_in(api_stack.url, DISPLAY_TOKEN)) as kiosk,
        closing(sign_in(api_stack.url, API_TOKEN)) as me,
    ):
        kiosk.headers["user-agent"] = "wall-kiosk/1"
        assert signed_in(kiosk)
        listed = api_stack.get("/api/v1/sessions")
        assert listed.status_code == 200, listed.text
        rows = listed.json()
        assert {r["role"] for r in rows} >= {"display", "admin"}
        row = next(r for r in rows if r["role"] == "display")
        assert row["principal"] == "display" and row["expires_at"] and row["last_seen_at"]
        assert not any(
            DISPLAY_TOKEN in str(v) or API_TOKEN in str(v) for r in rows for v in r.values()
        )
        display = {"Authorization": f"Bearer {DISPLAY_TOKEN}"}
        assert httpx.get(f"{api_stack.url}/api/v1/sessions", headers=display).status_code == 403
        # The admin's own browser may list them too (cookie plus the screens' header).
        assert me.get("/api/v1/sessions", headers=API_CALL).status_code == 200

        mine = {r["id"] for r in me.get("/api/v1/sessions", headers=API_CALL).json()}
        for r in rows:
            if r["role"] == "display":
                gone = httpx.delete(
                    f"{api_stack.url}/api/v1/sessions/{r['id']}", headers=api_stack.auth
                )
                assert gone.status_code == 204
        assert not signed_in(kiosk)
        assert signed_in(me)
        assert all(r["role"] != "display" for r in api_stack.get("/api/v1/sessions").json())
        missing = httpx.delete(f"{api_stack.url}/api/v1/sessions/nope", headers=api_stack.auth)
        assert missing.status_code == 404
        assert mine  # the admin's session was listed with an id


def test_rotating_a_token_ends_the_sessions_it_signed_in(api_stack):
    rt = api_stack.runtime
    with (
        closing(sign_in(api_stack.url, DISPLAY_TOKEN)) as kiosk,
        closing(sign_in(api_stack.url, API_TOKEN)) as me,
    ):
        assert signed_in(kiosk) and signed_in(me)
        # The same database, served again with a new display token (a restart after rotation).
        rotated = dataclasses.replace(
            rt, resolved=dataclasses.replace(rt.resolved, display_token="rotated-display")
        )
        with served(build_app(rotated)) as url:
            kiosk.base_url = httpx.URL(url)
            me.base_url = httpx.URL(url)
            assert not signed_in(kiosk)  # signed in with the old display token
            assert signed_in(me)  # the API token did not change
            again = sign_in(url, "rotated-display")
            assert signed_in(again)
            again.close()


def test_sessions_expire_when_unused(api_stack):
    from loopline.models.web_sessions import SessionPolicy

    ctx = dataclasses.replace(
        api_context(api_stack.runtime),
        session_policy=SessionPolicy(idle_s=2.0, max_age_s=3600, kiosk_max_age_s=8.0),
    )
    ok = {"X-Requested-By": "loopline"}
    with served(create_app(ctx, with_dashboard=False)) as url:
        t0 = time.monotonic()
        person, kiosk = sign_in(url, API_TOKEN), sign_in(url, DISPLAY_TOKEN)

        def at(t: float) -> None:
            time.sleep(max(0.0, t0 + t - time.monotonic()))

        assert person.get("/api/v1/lines", headers=ok).status_code == 200
        at(1.4)
        assert person.get("/api/v1/lines", headers=ok).status_code == 200
        at(2.8)  # past 2 s after sign-in, but used 1.4 s ago: each use slides the expiry
        assert person.get("/api/v1/lines", headers=ok).status_code == 200
        at(5.3)
        assert person.get("/api/v1/lines", headers=ok).status_code == 401  # idle too long
        assert kiosk.get("/api/v1/lines", headers=ok).status_code == 200  # kiosks: no idle limit
        at(8.5)
        assert kiosk.get("/api/v1/lines", headers=ok).status_code == 401  # past its max age
        person.close()
        kiosk.close()


def test_sessions_revoke_all_from_the_command_line(api_stack):
    kiosk = sign_in(api_stack.url, DISPLAY_TOKEN)
    assert signed_in(kiosk)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LOOPLINE_DATABASE_URL": api_stack.runtime.resolved.database_url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "loopline.cli", "sessions", "revoke", "--all"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "revoked" in done.stdout + done.stderr
    # Another process revoked it: this one notices within its few seconds of cache.
    wait_until(lambda: not signed_in(kiosk), timeout=10, step=0.5)
    kiosk.close()


def _ws_url(stack, query: str = "entity=order") -> str:  # type: ignore[no-untyped-def]
    return stack.url.replace("http", "ws") + f"/api/v1/stream?{query}"


async def _outcome(url: str, **kw) -> str:  # type: ignore[no-untyped-def]
    """``open`` when the stream accepted and stays open, else how it refused."""
    try:
        async with websockets.connect(url, open_timeout=5, **kw) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                return "open"
            return "open"
    except websockets.ConnectionClosed as exc:
        return f"closed {exc.rcvd.code if exc.rcvd else None}"
    except websockets.InvalidStatus as exc:
        return f"status {exc.response.status_code}"


def test_stream_takes_a_header_or_a_same_origin_session_never_a_query_token(api_stack):
    bearer = {"Authorization": f"Bearer {API_TOKEN}"}
    assert run_async(_outcome(_ws_url(api_stack, f"token={API_TOKEN}"))) != "open"
    assert run_async(_outcome(_ws_url(api_stack), additional_headers=bearer)) == "open"
    host = api_stack.url.removeprefix("http://")
    with closing(sign_in(api_stack.url, DISPLAY_TOKEN)) as kiosk:
        cookie = {"Cookie": f"{COOKIE}={kiosk.cookies[COOKIE]}"}
        own = {**cookie, "Origin": f"http://{host}"}
        assert run_async(_outcome(_ws_url(api_stack), additional_headers=own)) == "open"
        evil = {**cookie, "Origin": "https://evil.example"}
        assert run_async(_outcome(_ws_url(api_stack), additional_headers=evil)) != "open"
        assert run_async(_outcome(_ws_url(api_stack), additional_headers=cookie)) != "open"

        async def follows_with_the_cookie() -> dict:
            async with websockets.connect(_ws_url(api_stack), additional_headers=own) as ws:
                await asyncio.sleep(0.3)
                await asyncio.to_thread(api_stack.send_crm, order_event("SO-7300"), "h-7300")
                while True:
                    import json

                    change = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if change["id"] == "SO-7300":
                        return change

        assert run_async(follows_with_the_cookie())["entity"] == "order"


def test_stream_closes_when_its_session_is_revoked(api_stack):
    host = api_stack.url.removeprefix("http://")
    kiosk = sign_in(api_stack.url, DISPLAY_TOKEN)
    headers = {"Cookie": f"{COOKIE}={kiosk.cookies[COOKIE]}", "Origin": f"http://{host}"}

    async def scenario() -> int | None:
        async with websockets.connect(
            _ws_url(api_stack, "entity=line"), additional_headers=headers
        ) as ws:
            await asyncio.sleep(0.3)
            for row in await asyncio.to_thread(lambda: api_stack.get("/api/v1/sessions").json()):
                if row["role"] == "display":
                    await asyncio.to_thread(
                        httpx.delete,
                        f"{api_stack.url}/api/v1/sessions/{row['id']}",
                        headers=api_stack.auth,
                    )
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 40)
            except websockets.ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None

    assert run_async(scenario()) == 4401
    kiosk.close()


SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def _assert_hardened(resp: httpx.Response) -> str:
    for name, value in SECURITY_HEADERS.items():
        assert resp.headers.get(name) == value, (resp.request.url, name, resp.headers)
    csp = resp.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp, csp
    assert "unsafe-inline" not in csp.split("script-src")[-1].split(";")[0], csp
    return csp


def test_security_headers_on_pages_and_api(api_stack):
    signin = httpx.get(f"{api_stack.url}/wall?token={DISPLAY_TOKEN}")
    assert signin.status_code == 303
    _assert_hardened(signin)  # no-referrer: the token URL never leaks as a Referer
    with closing(sign_in(api_stack.url, DISPLAY_TOKEN)) as browser:
        for path in ("/wall", "/board", "/orders", "/alerts", "/approvals"):
            page = browser.get(path)
            assert page.status_code == 200
            csp = _assert_hardened(page)
            assert "script-src 'self' 'sha256-" in csp  # Dash's inline scripts, by hash only
    for resp in (
        api_stack.get("/api/v1/orders"),
        httpx.get(f"{api_stack.url}/api/v1/healthz"),
        httpx.get(f"{api_stack.url}/api/v1/orders"),  # a 401
        httpx.get(f"{api_stack.url}/wall"),  # the sign-in page
    ):
        csp = _assert_hardened(resp)
        assert "default-src 'none'" in csp  # nothing but HTML pages may load anything


def test_cors_is_closed_by_default(api_stack):
    preflight = httpx.options(
        f"{api_stack.url}/api/v1/orders",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    plain = httpx.get(
        f"{api_stack.url}/api/v1/orders",
        headers={**api_stack.auth, "Origin": "https://evil.example"},
    )
    assert "access-control-allow-origin" not in plain.headers


def test_cors_lets_in_only_the_configured_origins(api_stack):
    ctx = dataclasses.replace(api_context(api_stack.runtime), cors_origins=("https://crm.example",))
    ask = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    with served(create_app(ctx, with_dashboard=False)) as url:
        ok = httpx.options(f"{url}/api/v1/orders", headers={"Origin": "https://crm.example", **ask})
        assert ok.headers.get("access-control-allow-origin") == "https://crm.example"
        # Bearer tokens only: a foreign page never gets to use a browser's cookie.
        assert "access-control-allow-credentials" not in ok.headers
        evil = httpx.options(
            f"{url}/api/v1/orders", headers={"Origin": "https://evil.example", **ask}
        )
        assert "access-control-allow-origin" not in evil.headers
        cookie_header = httpx.options(
            f"{url}/api/v1/orders",
            headers={
                "Origin": "https://crm.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-requested-by",
            },
        )
        assert cookie_header.status_code >= 400  # the screens' header is ours alone


def test_no_token_in_the_access_log(tmp_path, postgres_url, redis_server):
    """`loopline serve` as users run it (uvicorn's own access log); grep its output."""
    port = free_port()
    secret_a, secret_d = "log-admin-token-QQQ", "log-display-token-ZZZ"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LOOPLINE_DATABASE_URL": postgres_url,
        "LOOPLINE_REDIS_URL": redis_server,
        "LOOPLINE_CRM_SECRET": "whsec_" + "QUJD" * 8,
        "LOOPLINE_API_TOKEN": secret_a,
        "LOOPLINE_DISPLAY_TOKEN": secret_d,
    }
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopline.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(url), timeout=60, step=0.2)
        assert httpx.get(f"{url}/wall?token={secret_d}&lang=en").status_code == 303
        assert httpx.get(f"{url}/board?lang=zh-CN&token={secret_a}").status_code == 303
        assert httpx.get(f"{url}/wall?token=wrong-{secret_d}").status_code == 401
        httpx.get(f"{url}/api/v1/orders?token={secret_a}")
        httpx.get(f"{url}/api/v1/orders?x=1&token={secret_a}&y=2")
        ws = url.replace("http", "ws") + f"/api/v1/stream?token={secret_a}"
        run_async(_outcome(ws))  # refused after the fix; logged either way
        wait_until(lambda: log.read_text().count("GET /") >= 5, timeout=10)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert '"GET /wall?token=***&lang=en HTTP/1.1" 303' in text, text  # the line is there
    assert "lang=zh-CN&token=***" in text and "x=1&token=***&y=2" in text, text
    assert secret_a not in text and secret_d not in text, text


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v1/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_screens_websocket_needs_a_live_session_from_its_own_origin(api_stack):
    """Dash's own websocket (every screen's push) goes through the same session check."""
    url = api_stack.url.replace("http", "ws") + "/_dash-ws-callback"
    own = {"Origin": api_stack.url}
    kiosk = sign_in(api_stack.url, DISPLAY_TOKEN)
    cookie = {"Cookie": f"{COOKIE}={kiosk.cookies[COOKIE]}"}
    assert run_async(_outcome(url, additional_headers={**cookie, **own})) == "open"
    assert run_async(_outcome(url, additional_headers=own)) != "open"  # no session
    evil = {**cookie, "Origin": "https://evil.example"}
    assert run_async(_outcome(url, additional_headers=evil)) != "open"
    for row in api_stack.get("/api/v1/sessions").json():
        if row["role"] == "display":
            httpx.delete(f"{api_stack.url}/api/v1/sessions/{row['id']}", headers=api_stack.auth)
    assert run_async(_outcome(url, additional_headers={**cookie, **own})) != "open"
    kiosk.close()
