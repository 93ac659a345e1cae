"""Single sign-on (issue 11): OpenID Connect through Authlib against a real local HTTP
server playing the company's IdP (tests/oidc_idp.py), on a whole stack."""

from __future__ import annotations

import httpx
import pytest

from loopline.models.db import transaction
from loopline.models.users import add_user, get_user
from tests.oidc_idp import FakeIdP
from tests.stack import start_stack

API_CALL = {"X-Requested-By": "loopline"}


@pytest.fixture(scope="module")
def sso(postgres_server, postgres_cluster, redis_server):
    with FakeIdP("loopline", "idp-secret") as idp:
        stack = start_stack(
            database_url=postgres_cluster.url_for(postgres_cluster.create_database()),
            redis_url=redis_server,
            mqtt_url=None,
            crm_url=None,
            oidc_issuer=idp.url,
            oidc_client_id="loopline",
            oidc_client_secret="idp-secret",
        )
        with transaction(stack.runtime.sessions) as s:
            add_user(
                s,
                username="li.na",
                name="Li Na",
                roles=["sales"],
                customers=["C-1"],
                email="Li.Na@example.com",
                actor="test",
            )
        try:
            yield stack, idp
        finally:
            stack.stop()


def sso_sign_in(url: str) -> tuple[httpx.Client, httpx.Response]:
    """Walk the redirects a browser would: Loopline -> IdP -> Loopline's callback."""
    browser = httpx.Client(base_url=url, timeout=10)
    start = browser.get("/signin/oidc", params={"next": "/orders"})
    assert start.status_code == 302, start.text
    at_idp = httpx.get(start.headers["location"], timeout=10)
    assert at_idp.status_code == 302, at_idp.text
    back = at_idp.headers["location"]
    assert back.startswith(url + "/signin/oidc/callback?")
    return browser, browser.get(back)


def test_a_person_signs_in_through_the_companys_sso(sso):
    stack, idp = sso
    assert "Sign in with SSO" in httpx.get(f"{stack.url}/signin").text
    idp.misbehave = None
    idp.person = {"sub": "u-17", "email": "li.na@example.com", "email_verified": True}
    browser, done = sso_sign_in(stack.url)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/orders"
    me = browser.get("/api/v1/me", headers=API_CALL).json()
    assert me["person"] == "Li Na" and me["scope"]["customers"] == ["C-1"]
    with stack.runtime.sessions() as s:
        user = get_user(s, username="li.na")
        assert user is not None and user.oidc_subject == f"{idp.url}|u-17"
    # Linked now: the same subject signs in even if the IdP's e-mail changes.
    idp.person = {"sub": "u-17", "email": "new@example.com"}
    _, again = sso_sign_in(stack.url)
    assert again.status_code == 303


@pytest.mark.parametrize("bad", ["wrong_key", "wrong_nonce", "wrong_aud"])
def test_bad_id_tokens_are_refused(sso, bad):
    stack, idp = sso
    idp.person = {"sub": "u-17"}
    idp.misbehave = bad
    try:
        browser, done = sso_sign_in(stack.url)
        assert done.status_code == 401, (bad, done.text)
        assert "ID token is not acceptable" in done.text
        assert browser.get("/board").status_code == 401
    finally:
        idp.misbehave = None


def test_sso_is_no_role_and_state_must_match(sso):
    stack, idp = sso
    idp.person = {"sub": "u-99", "email": "stranger@example.com"}
    _, done = sso_sign_in(stack.url)
    assert done.status_code == 403 and "no Loopline user is set up" in done.text
    # A callback this browser did not start (another state, or no cookie) is refused
    # before any code is exchanged.
    asked = idp.token_requests
    foreign = httpx.get(f"{stack.url}/signin/oidc/callback?code=x&state=y", timeout=10)
    assert foreign.status_code == 401 and idp.token_requests == asked
    with transaction(stack.runtime.sessions) as s:
        from loopline.models.users import disable_user

        disable_user(s, username="li.na", actor="test")
    idp.person = {"sub": "u-17"}
    _, disabled = sso_sign_in(stack.url)
    assert disabled.status_code == 403
