"""Settings: embedded defaults only in the demo, unsafe defaults refused elsewhere."""

from __future__ import annotations

import pytest

from api.auth import Tokens
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
