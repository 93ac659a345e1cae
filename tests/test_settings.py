"""Settings: embedded defaults only in the demo, unsafe defaults refused elsewhere."""

from __future__ import annotations

import pytest

from loopline.api.auth import Tokens
from loopline.settings import Settings, resolve


def test_demo_fills_every_default_and_says_so(tmp_path):
    r = resolve(Settings(data_dir=tmp_path), demo=True)
    assert r.database_url.startswith("sqlite:///") and r.redis_url is None
    assert r.crm_secret.startswith("whsec_") and r.api_token and r.display_token
    assert any("in-process" in c for c in r.choices)


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("redis_url", "LOOPLINE_REDIS_URL"),
        ("crm_secret", "LOOPLINE_CRM_SECRET"),
        ("api_token", "LOOPLINE_API_TOKEN"),
    ],
)
def test_outside_the_demo_unsafe_defaults_are_refused(tmp_path, missing, message):
    values = {"redis_url": "redis://r:6379/0", "crm_secret": "whsec_QUJD", "api_token": "t"}
    del values[missing]
    with pytest.raises(SystemExit, match=message):
        resolve(Settings(data_dir=tmp_path, **values), demo=False)


def test_no_display_token_means_no_read_only_sign_in(tmp_path):
    r = resolve(
        Settings(
            data_dir=tmp_path,
            redis_url="redis://u:secret@r:6379/0",
            crm_secret="whsec_QUJD",
            api_token="t",
        ),
        demo=False,
    )
    assert r.display_token is None
    assert not any("secret" in c for c in r.choices)  # passwords never reach the log
    tokens = Tokens("t", r.display_token)
    assert tokens.principal("t").role == "admin" and tokens.principal("display-x") is None


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LOOPLINE_API_TOKEN", "from-env")
    monkeypatch.setenv("LOOPLINE_REPLAN_DEBOUNCE_MS", "42")
    s = Settings(data_dir=tmp_path)
    assert s.api_token.get_secret_value() == "from-env" and s.replan_debounce_ms == 42


def test_planning_windows_come_from_the_environment(monkeypatch, tmp_path):
    from pydantic import ValidationError

    assert (Settings().frozen_window_h, Settings().line_down_assume_h) == (1.0, 1.0)
    monkeypatch.setenv("LOOPLINE_FROZEN_WINDOW_H", "2.5")
    monkeypatch.setenv("LOOPLINE_LINE_DOWN_ASSUME_H", "0.5")
    s = Settings(data_dir=tmp_path)
    assert (s.frozen_window_h, s.line_down_assume_h) == (2.5, 0.5)
    monkeypatch.setenv("LOOPLINE_FROZEN_WINDOW_H", "-1")
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path)


def test_role_tokens_and_auto_approve_rules(tmp_path):
    r = resolve(
        Settings(
            data_dir=tmp_path,
            redis_url="redis://r:6379/0",
            crm_secret="whsec_QUJD",
            api_token="t",
            manager_token="m",
            sales_token="s",
            auto_approve_max_slip_h=2.5,
            auto_approve_priorities="rush, high",
        ),
        demo=False,
    )
    assert r.auto_approve_priorities == ("rush", "high") and r.auto_approve_max_slip_h == 2.5
    tokens = Tokens("t", None, manager_token=r.manager_token, sales_token=r.sales_token)
    assert tokens.principal("m").role == "production_manager"
    assert tokens.principal("s").role == "sales" and tokens.principal("p") is None
    # A session remembers the fingerprint of the token it signed in with (api/auth.py).
    assert tokens.current_fingerprint("production_manager") == tokens.fingerprint("m")
    assert tokens.current_fingerprint("purchasing") is None
    assert "m" not in tokens.fingerprint("m")
    assert resolve(Settings(data_dir=tmp_path), demo=True).manager_token
    with pytest.raises(ValueError, match="asap"):
        Settings(data_dir=tmp_path, auto_approve_priorities="asap")


def test_session_lifetimes_and_cors_origins_come_from_the_environment(monkeypatch, tmp_path):
    from pydantic import ValidationError

    s = Settings(data_dir=tmp_path)
    assert (s.session_idle_h, s.session_max_age_h, s.kiosk_session_max_age_h) == (12, 168, 720)
    assert resolve(s, demo=True).cors_origins == ()  # closed by default
    monkeypatch.setenv("LOOPLINE_SESSION_IDLE_H", "1.5")
    monkeypatch.setenv("LOOPLINE_KIOSK_SESSION_MAX_AGE_H", "48")
    monkeypatch.setenv("LOOPLINE_SESSION_SECRET", "sign-with-this")
    monkeypatch.setenv("LOOPLINE_CORS_ORIGINS", "https://crm.example, http://localhost:3000/")
    s = Settings(data_dir=tmp_path)
    assert (s.session_idle_h, s.kiosk_session_max_age_h) == (1.5, 48)
    r = resolve(s, demo=True)
    assert r.cors_origins == ("https://crm.example", "http://localhost:3000")
    assert r.session_secret == "sign-with-this"
    assert any(c.startswith("CORS: https://crm.example") for c in r.choices)
    # The signing key follows the secret, not the API token, once one is set.
    assert Tokens("a", None, secret="k").key == Tokens("b", None, secret="k").key
    assert Tokens("a", None).key != Tokens("b", None).key
    for bad in ("*", "crm.example", "https://crm.example/path"):
        monkeypatch.setenv("LOOPLINE_CORS_ORIGINS", bad)
        with pytest.raises(ValidationError, match="origin"):
            Settings(data_dir=tmp_path)
    monkeypatch.setenv("LOOPLINE_CORS_ORIGINS", "")
    monkeypatch.setenv("LOOPLINE_SESSION_IDLE_H", "0")
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path)
