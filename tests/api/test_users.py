"""People (issue 11): users in SQL, password sign-in, personal API keys, the audit naming
the person, and the `loopline users` commands; on real PostgreSQL and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import closing

import httpx
import pytest
from sqlalchemy import select

from loopline.api.auth import COOKIE
from loopline.models.db import transaction
from loopline.models.records import AuditEntry
from loopline.models.users import add_user, authenticate
from tests.stack import API_TOKEN, wait_until

API_CALL = {"X-Requested-By": "loopline"}
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def people(api_stack):
    with transaction(api_stack.runtime.sessions) as s:
        add_user(
            s,
            username="li.na",
            name="Li Na",
            roles=["sales"],
            lang="zh-CN",
            customers=["C-1"],
            password=PASSWORD,
            actor="test",
        )
        add_user(
            s,
            username="boss",
            name="Wang Boss",
            roles=["admin"],
            password=PASSWORD,
            actor="test",
        )
        add_user(
            s,
            username="pm",
            name="Pat Manager",
            roles=["production_manager", "purchasing"],
            password=PASSWORD,
            actor="test",
        )
    return api_stack


def form_csrf(html: str) -> str:
    """The anti-forgery value of a sign-in form."""
    return html.split('name="csrf" value="')[1].split('"')[0]


def post_sign_in(url: str, **fields: str) -> httpx.Response:
    """Open the sign-in form in a fresh client and post it with ``fields``."""
    with httpx.Client(base_url=url, timeout=10) as c:
        csrf = form_csrf(c.get("/signin").text)
        return c.post("/signin", data={"csrf": csrf, **fields})


def browser_sign_in(url: str, username: str, password: str = PASSWORD) -> httpx.Client:
    browser = httpx.Client(base_url=url, timeout=10)
    form = browser.get("/board")
    assert form.status_code == 401 and 'action="/signin"' in form.text  # the form itself
    done = browser.post(
        "/signin",
        data={
            "username": username,
            "password": password,
            "next": "/board",
            "csrf": form_csrf(form.text),
        },
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/board"
    return browser


def test_a_person_signs_in_with_a_password(people):
    url = people.url
    with closing(browser_sign_in(url, "li.na")) as b:
        assert b.get("/board").status_code == 200
        me = b.get("/api/v1/me", headers=API_CALL).json()
        assert me["name"] == "li.na" and me["person"] == "Li Na"
        assert me["roles"] == ["sales"] and me["lang"] == "zh-CN"
        assert me["scope"] == {"customers": ["C-1"], "reps": []}
        listed = people.get("/api/v1/sessions").json()
        assert any(r["principal"] == "li.na" for r in listed)
        with people.runtime.sessions() as s:
            signed = s.scalars(
                select(AuditEntry.actor).where(AuditEntry.action == "user.signed_in")
            ).all()
        assert "li.na" in signed  # the audit names who signed in
        # Signing out ends the session.
        assert b.post("/signin/out", headers={"origin": url}).status_code == 303
        assert b.get("/board").status_code == 401


def test_wrong_passwords_and_foreign_posts_are_refused(people):
    url = people.url
    wrong = post_sign_in(url, username="li.na", password="nope-nope-nope")
    nobody = post_sign_in(url, username="ghost", password=PASSWORD)
    assert wrong.status_code == nobody.status_code == 401
    assert "Wrong user name or password" in wrong.text and COOKIE not in wrong.cookies
    assert "Wrong user name or password" in nobody.text
    # A post from another site has neither our Origin nor the form's cookie.
    foreign = httpx.post(
        f"{url}/signin",
        data={"username": "li.na", "password": PASSWORD},
        headers={"origin": "https://evil.example"},
    )
    assert foreign.status_code == 403 and COOKIE not in foreign.cookies
    forged = httpx.post(
        f"{url}/signin", data={"username": "li.na", "password": PASSWORD, "csrf": "guess"}
    )
    assert forged.status_code == 403 and COOKIE not in forged.cookies
    # A next= pointing off-site is not followed.
    off = post_sign_in(url, username="li.na", password=PASSWORD, next="//evil.example/x")
    assert off.status_code == 303 and off.headers["location"] == "/"
    with people.runtime.sessions() as s:
        stored = (
            s.execute(select(AuditEntry.actor).where(AuditEntry.entity == "user")).scalars().all()
        )
    assert stored  # user.added entries exist
    with transaction(people.runtime.sessions) as s:
        assert authenticate(s, username="li.na", password=PASSWORD) is not None
        from loopline.models.users import get_user

        user = get_user(s, username="li.na")
        assert user is not None and user.password_hash and PASSWORD not in user.password_hash
        assert user.password_hash.startswith("$argon2id$")


def test_guessing_a_password_locks_that_name_for_a_while(people):
    with transaction(people.runtime.sessions) as s:
        add_user(s, username="guess.me", name="G", roles=["sales"], password=PASSWORD, actor="t")
    for _ in range(10):
        assert (
            post_sign_in(people.url, username="guess.me", password="wrong-wrong").status_code == 401
        )
    locked = post_sign_in(people.url, username="guess.me", password=PASSWORD)
    assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text
    # Other names are not affected.
    assert post_sign_in(people.url, username="boss", password=PASSWORD).status_code == 303


def test_roles_of_a_person_with_two_roles(people):
    with closing(browser_sign_in(people.url, "pm")) as b:
        # purchasing's list and the manager's approvals both let this person in.
        assert b.get("/api/v1/purchase-requests", headers=API_CALL).status_code == 200
        assert b.get("/api/v1/changes", headers=API_CALL).status_code == 200
        assert b.get("/api/v1/users", headers=API_CALL).status_code == 403


def test_personal_api_keys_are_hashed_revocable_and_show_last_use(people):
    url = people.url
    with closing(browser_sign_in(url, "li.na")) as b:
        made = b.post("/api/v1/me/api-keys", json={"name": "excel"}, headers=API_CALL)
        assert made.status_code == 201, made.text
        key, key_id = made.json()["key"], made.json()["id"]
        assert key.startswith("ll_") and made.json()["last_used_at"] is None
        bearer = {"Authorization": f"Bearer {key}"}
        me = httpx.get(f"{url}/api/v1/me", headers=bearer)
        assert me.status_code == 200 and me.json()["person"] == "Li Na"
        listed = b.get("/api/v1/me/api-keys", headers=API_CALL).json()
        row = next(k for k in listed if k["id"] == key_id)
        assert row["last_used_at"] is not None and "key" not in row
        with people.runtime.sessions() as s:
            from loopline.models.users import ApiKey

            stored = s.get(ApiKey, key_id)
            assert stored is not None and key not in stored.key_hash
        # Another person cannot revoke it; its owner can.
        with closing(browser_sign_in(url, "pm")) as other:
            gone = other.delete(f"/api/v1/me/api-keys/{key_id}", headers=API_CALL)
            assert gone.status_code == 404
        assert httpx.get(f"{url}/api/v1/me", headers=bearer).status_code == 200
        assert b.delete(f"/api/v1/me/api-keys/{key_id}", headers=API_CALL).status_code == 204
        assert httpx.get(f"{url}/api/v1/me", headers=bearer).status_code == 401
        # A role token is no person: it has no keys.
        assert people.get("/api/v1/me/api-keys").status_code == 403


def test_admin_adds_and_disables_users_and_the_audit_names_them(people):
    url = people.url
    with closing(browser_sign_in(url, "boss")) as b:
        bad = b.post(
            "/api/v1/users",
            json={"username": "x y", "name": "X", "roles": ["sales"]},
            headers=API_CALL,
        )
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "username"
        bad_role = b.post(
            "/api/v1/users",
            json={"username": "xy", "name": "X", "roles": ["chef"]},
            headers=API_CALL,
        )
        assert bad_role.status_code == 422 and bad_role.json()["detail"][0]["field"] == "roles"
        made = b.post(
            "/api/v1/users",
            json={
                "username": "temp",
                "name": "Temp Worker",
                "roles": ["sales"],
                "customers": ["C-1"],
                "password": PASSWORD,
            },
            headers=API_CALL,
        )
        assert made.status_code == 201, made.text
        assert "password_hash" not in made.json() and made.json()["password"] is True
        patched = b.patch(
            "/api/v1/users/temp", json={"customers": ["C-1", "C-9"]}, headers=API_CALL
        )
        assert patched.status_code == 200 and patched.json()["customers"] == ["C-1", "C-9"]
        bad_patch = b.patch("/api/v1/users/temp", json={"lang": "fr"}, headers=API_CALL)
        assert bad_patch.status_code == 422 and bad_patch.json()["detail"][0]["field"] == "lang"
        with closing(browser_sign_in(url, "temp")) as temp:
            key = temp.post("/api/v1/me/api-keys", json={"name": "k"}, headers=API_CALL)
            bearer = {"Authorization": f"Bearer {key.json()['key']}"}
            assert b.post("/api/v1/users/temp/disable", headers=API_CALL).status_code == 200
            # Its key stops at once (same process); its session within the cache time.
            assert httpx.get(f"{url}/api/v1/me", headers=bearer).status_code == 401
            wait_until(lambda: temp.get("/board").status_code == 401, timeout=12, step=0.5)
        assert b.post("/api/v1/users/ghost/disable", headers=API_CALL).status_code == 404
    with people.runtime.sessions() as s:
        actors = dict(
            s.execute(
                select(AuditEntry.action, AuditEntry.actor).where(
                    AuditEntry.entity == "user", AuditEntry.entity_id == "temp"
                )
            ).all()
        )
    assert actors["user.added"] == "boss" and actors["user.disabled"] == "boss"
    assert actors["api_key.created"] == "temp"
    listed = httpx.get(
        f"{url}/api/v1/users", headers={"Authorization": f"Bearer {API_TOKEN}"}
    ).json()
    assert next(u for u in listed if u["username"] == "temp")["disabled_at"] is not None


def test_users_command_line(tmp_path):
    env = {**os.environ, "LOOPLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'u.db'}"}

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "loopline.cli", "users", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    added = cli(
        "add",
        "li.na",
        "--name",
        "Li Na",
        "--role",
        "sales",
        "--customer",
        "C-1",
        "--rep",
        "zhang.wei",
        "--lang",
        "zh-CN",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    refused = cli("add", "x", "--name", "X", "--role", "chef")
    assert refused.returncode == 2 and "roles: unknown role 'chef'" in refused.stderr
    key = cli("keys", "add", "li.na", "--name", "excel")
    assert key.returncode == 0 and key.stdout.startswith("ll_")
    keys = cli("keys", "list", "li.na").stdout
    assert "excel" in keys and "never" in keys and key.stdout.strip() not in keys
    key_id = keys.split()[0]
    assert cli("keys", "revoke", key_id).returncode == 0
    assert "revoked" in cli("keys", "list").stdout
    assert cli("disable", "li.na").returncode == 0
    listed = cli("list").stdout
    assert "li.na" in listed and "C-1,rep:zhang.wei" in listed and "disabled" in listed
    assert cli("disable", "ghost").returncode == 2
    from sqlalchemy import create_engine

    engine = create_engine(env["LOOPLINE_DATABASE_URL"])
    with engine.connect() as conn:
        actors = set(conn.execute(select(AuditEntry.actor)).scalars())
    engine.dispose()
    assert actors and all(a.startswith("cli:") for a in actors), actors  # the OS account
