"""Small server-rendered pages outside the Dash screens: the sign-in form.

Plain HTML with no script at all (the pages' Content-Security-Policy allows none inline),
styled inline (the policy allows inline styles), readable on a phone.
"""

from __future__ import annotations

import secrets
from html import escape
from urllib.parse import urlencode

from starlette.responses import HTMLResponse

PAGE_STYLE = """
body{font-family:system-ui,-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;margin:0;
background:#f4f5f7;color:#1d2430}
main{max-width:22rem;margin:12vh auto;padding:1.5rem;background:#fff;border-radius:10px;
box-shadow:0 1px 4px rgba(0,0,0,.12)}
h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;margin:.8rem 0 .3rem;font-size:.9rem}
input{width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;border:1px solid #b9c0cc;
border-radius:6px}button,.button{display:block;width:100%;margin-top:1.2rem;padding:.7rem;
font-size:1rem;border:0;border-radius:6px;background:#1f6feb;color:#fff;text-align:center;
text-decoration:none}.error{color:#b42318;margin:.5rem 0}.hint{color:#5b6472;font-size:.85rem;
margin-top:1rem}
"""


# These pages run no script and load nothing: only their inline style and a form post home.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
    "object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


# The sign-in form's anti-forgery value, also set as a SameSite=Strict cookie: a form posted
# from another site carries no such cookie. (The Origin header cannot serve: under the
# pages' no-referrer policy a browser sends "Origin: null" for its own form posts too.)
CSRF_COOKIE = "loopline_signin"
CSRF_FIELD = "csrf"


def safe_next(target: str | None) -> str:
    """A local path to go to after signing in (never another site: ``//x`` or a scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\\\" in target:
        return "/"
    return target


def signin_page(
    next_url: str | None,
    *,
    error: str | None = None,
    status_code: int = 200,
    sso: bool = False,
) -> HTMLResponse:
    """The sign-in form (username and password; a link to SSO when it is configured)."""
    nxt = escape(safe_next(next_url))
    csrf = secrets.token_urlsafe(18)
    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    sso_link = (
        f'<a class="button" href="/signin/oidc?{escape(urlencode({"next": safe_next(next_url)}))}">'
        "Sign in with SSO</a>"
        if sso
        else ""
    )
    body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>Sign in · Loopline</title>
<style>{PAGE_STYLE}</style></head><body><main>
<h1>Loopline · 登录</h1>{problem}
<form method="post" action="/signin">
<input type="hidden" name="next" value="{nxt}">
<input type="hidden" name="{CSRF_FIELD}" value="{csrf}">
<label for="username">User name · 用户名</label>
<input id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password · 密码</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in · 登录</button></form>{sso_link}
<p class="hint">Wall screens sign in once with <code>?token=</code> in their URL.</p>
</main></body></html>"""
    response = HTMLResponse(
        body, status_code=status_code, headers={"Content-Security-Policy": PAGE_CSP}
    )
    response.set_cookie(CSRF_COOKIE, csrf, max_age=3600, httponly=True, samesite="strict")
    return response
