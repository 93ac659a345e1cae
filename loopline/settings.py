"""The one place configuration is read: environment variables prefixed ``LOOPLINE_``."""

from __future__ import annotations

import base64
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from loopline.models.events import Priority

log = logging.getLogger("loopline.settings")

PRIORITIES: tuple[str, ...] = get_args(Priority)


class Settings(BaseSettings):
    """Every setting Loopline reads; unset URLs mean the embedded default where one exists."""

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_", extra="ignore")

    database_url: str | None = None
    redis_url: str | None = None
    mqtt_url: str | None = None
    crm_secret: SecretStr | None = None
    crm_url: str | None = None
    # A folder of the site's own CRM connector files (ingest/crm/connector.py); they are
    # added to the shipped presets, and win over a preset of the same name.
    connectors_dir: Path | None = None
    # Reconciliation (ingest/crm/reconcile.py): the worker pulls each of these connectors'
    # CRMs (comma-separated names; each needs a ``reconcile`` section) every so many seconds;
    # a CRM unreadable this many periods in a row opens an IT alert. Empty: no pull.
    reconcile_sources: str = ""
    reconcile_every_s: float = Field(default=600.0, ge=10.0)
    reconcile_alert_after: int = Field(default=3, ge=1)
    api_token: SecretStr | None = None
    display_token: SecretStr | None = None
    # Optional role tokens (api/auth.py): production_manager approves changes.
    manager_token: SecretStr | None = None
    purchasing_token: SecretStr | None = None
    sales_token: SecretStr | None = None
    # Browser sessions (api/auth.py, models/web_sessions.py). The key that signs session
    # cookies (unset: derived from the API token, so rotating that signs every browser out);
    # a person's sign-in ends after SESSION_IDLE_H unused and SESSION_MAX_AGE_H at most; a
    # kiosk's (display token) has no idle limit and ends KIOSK_SESSION_MAX_AGE_H after.
    session_secret: SecretStr | None = None
    session_idle_h: float = Field(default=12.0, gt=0.0)
    session_max_age_h: float = Field(default=7 * 24.0, gt=0.0)
    kiosk_session_max_age_h: float = Field(default=30 * 24.0, gt=0.0)
    # Foreign origins whose pages may call the API with a bearer token (comma list, e.g.
    # "https://crm.example"); empty: CORS is closed. Cookies never count cross-origin.
    cors_origins: str = ""
    # Rush and change approval (models/approvals.py): a CRM change that would break another
    # order's promise waits for a production manager unless one of these rules lets it in.
    auto_approve_max_slip_h: float = Field(default=0.0, ge=0.0)  # 0: no slip is let in
    auto_approve_priorities: str = ""  # comma list, e.g. "rush"

    data_dir: Path = Path("var")
    site: str = "plant-1"
    lang: str = "en"
    # Why debounce: a CRM often sends bursts (an order edited field by field).
    replan_debounce_ms: int = 300
    line_down_alert_after_s: float = 300.0
    stale_after_s: float = 120.0
    max_body_bytes: int = 256 * 1024
    outbox_max_attempts: int = 8
    outbox_backoff_base_s: float = 1.0
    outbox_backoff_max_s: float = 300.0
    outbox_timeout_s: float = Field(default=5.0, gt=0.0)  # one delivery attempt's HTTP timeout
    mqtt_client_id: str = "loopline-ingest"
    # Scale-out (docs/ingest-scale-out.md): ingest processes with the same group share the
    # plant's topics through `$share/{group}/...` (clean sessions); unset: one process.
    mqtt_shared_group: str | None = None
    # Messages handled (and acked) together; more amortises Redis round trips per batch.
    mqtt_batch_max: int = Field(default=2000, ge=1, le=30000)
    # A batch of progress counts only waits this long for more (line states never wait):
    # fewer, fuller batches under steady load; 0 handles each arrival at once.
    mqtt_linger_ms: float = Field(default=20.0, ge=0.0, le=1000.0)
    # Per-line broker accounts (`loopline devices`, ingest/devices.py): Mosquitto's
    # password_file and acl_file; with its pid_file set, Loopline sends it SIGHUP to reload.
    mqtt_password_file: Path | None = None
    mqtt_acl_file: Path | None = None
    mqtt_pid_file: Path | None = None
    # Sparkplug B (docs/sparkplug.md): the plant's mapping file of edge nodes and devices
    # to lines; set, `loopline ingest` also consumes those nodes' spBv1.0 topics.
    sparkplug_mapping: Path | None = None
    # Planning (models/replan.py): planned work starting within this many hours stays put,
    # and a line reported down is assumed back this many hours from each replan.
    frozen_window_h: float = Field(default=1.0, ge=0.0)
    line_down_assume_h: float = Field(default=1.0, ge=0.0)
    # Promise the requested date when the plan meets it this many hours early, else the
    # earliest safe date ("requested"); or always the planned finish day ("earliest").
    promise_policy: Literal["requested", "earliest"] = "requested"
    promise_margin_h: float = Field(default=24.0, ge=0.0)
    # Follow-up after delivery (models/followup.py): the sales rep's satisfaction
    # follow-up opens this many days after an order is delivered.
    followup_after_days: float = Field(default=7.0, ge=0.0)
    # Customer tracking links (models/tracking.py), sent to the CRM with each promise: where
    # customers reach this server (e.g. "https://track.example.com"; empty: the link is a
    # path), and how long a link stays good. Signed with SESSION_SECRET, else the API token.
    public_url: str = ""
    tracking_link_days: float = Field(default=60.0, gt=0.0)
    # Single sign-on (api/oidc.py): an OpenID Connect issuer (e.g. "https://login.example.com/
    # realms/acme") and this client's id and secret; unset: password sign-in only. The
    # IdP must allow the redirect URI <public_url or this server>/signin/oidc/callback.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid profile email"
    # Notifications and escalation (docs/notifications.md): the rules file (YAML or JSON);
    # unset: nobody is notified (the demo tells its inbox). Delivery retries back off from
    # the base to the max (seconds) per channel, up to each channel's max_attempts.
    notify_rules: Path | None = None
    notify_backoff_base_s: float = Field(default=2.0, gt=0.0)
    notify_backoff_max_s: float = Field(default=600.0, gt=0.0)

    @field_validator("auto_approve_priorities")
    @classmethod
    def _known_priorities(cls, value: str) -> str:
        unknown = set(split_list(value)) - set(PRIORITIES)
        if unknown:
            raise ValueError(f"unknown priorities {sorted(unknown)}; use {', '.join(PRIORITIES)}")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in split_list(value):
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
                raise ValueError(f"{origin!r} is not an origin such as https://crm.example")
        return value


@dataclass(frozen=True)
class Resolved:
    """Settings with every default decided, plus a line per choice for the startup log."""

    database_url: str
    redis_url: str | None  # None: the in-process store
    mqtt_url: str | None  # None: the embedded broker (demo only)
    crm_secret: str
    crm_url: str | None  # None: the built-in CRM simulator (demo only)
    api_token: str
    display_token: str | None  # None: no read-only sign-in (wall screens use the API token)
    choices: tuple[str, ...]
    manager_token: str | None = None
    purchasing_token: str | None = None
    sales_token: str | None = None
    auto_approve_max_slip_h: float = 0.0
    auto_approve_priorities: tuple[str, ...] = ()
    session_secret: str | None = None  # None: derived from the API token
    cors_origins: tuple[str, ...] = ()


def split_list(value: str) -> tuple[str, ...]:
    """``"rush, high"`` -> ``("rush", "high")``."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def new_webhook_secret() -> str:
    """A fresh Standard Webhooks secret, ``whsec_<base64 of 24 random bytes>``."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def resolve(settings: Settings, *, demo: bool) -> Resolved:
    """Decide every default; outside the demo, refuse the ones that would be unsafe."""
    choices: list[str] = []
    if settings.database_url:
        db = settings.database_url
        choices.append(f"database: {_redact(db)}")
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = f"sqlite:///{(settings.data_dir / 'loopline.db').resolve()}"
        choices.append(f"database: embedded SQLite at {db.removeprefix('sqlite:///')}")
    if settings.redis_url:
        choices.append(f"live state: Redis at {_redact(settings.redis_url)}")
    elif demo:
        choices.append("live state: in-process Redis-compatible store (fakeredis)")
    else:
        raise SystemExit("LOOPLINE_REDIS_URL is required outside the demo (processes share it)")
    if settings.mqtt_url:
        choices.append(f"MQTT: broker at {_redact(settings.mqtt_url)}")
    elif demo:
        choices.append("MQTT: embedded broker on 127.0.0.1")
    else:
        choices.append("MQTT: not configured (LOOPLINE_MQTT_URL unset)")
    if settings.crm_secret:
        crm_secret = settings.crm_secret.get_secret_value()
    elif demo:
        crm_secret = new_webhook_secret()
        choices.append("CRM secret: generated for this demo run")
    else:
        raise SystemExit("LOOPLINE_CRM_SECRET is required outside the demo")
    if settings.crm_url:
        choices.append(f"CRM feedback: POST to {settings.crm_url}")
    elif demo:
        choices.append("CRM feedback: built-in CRM simulator")
    else:
        choices.append("CRM feedback: LOOPLINE_CRM_URL unset, outbox keeps events pending")
    if settings.api_token:
        api_token = settings.api_token.get_secret_value()
    elif demo:
        api_token = secrets.token_urlsafe(24)
        choices.append("API token: generated for this demo run")
    else:
        raise SystemExit("LOOPLINE_API_TOKEN is required outside the demo")
    # Outside the demo a generated token would differ per process: no token, no kiosk role.
    display = (
        settings.display_token.get_secret_value()
        if settings.display_token
        else ("display-" + secrets.token_urlsafe(16) if demo else None)
    )
    manager = (
        settings.manager_token.get_secret_value()
        if settings.manager_token
        else ("manager-" + secrets.token_urlsafe(16) if demo else None)
    )
    priorities = split_list(settings.auto_approve_priorities)
    if settings.auto_approve_max_slip_h > 0 or priorities:
        choices.append(
            f"auto-approve: slips up to {settings.auto_approve_max_slip_h:g} h"
            f", priorities {', '.join(priorities) or 'none'}"
        )
    cors_origins = tuple(o.rstrip("/") for o in split_list(settings.cors_origins))
    choices.append(f"CORS: {', '.join(cors_origins) if cors_origins else 'closed'}")
    choices.append(
        f"browser sessions: {settings.session_idle_h:g} h idle, {settings.session_max_age_h:g} h"
        f" at most; kiosks {settings.kiosk_session_max_age_h:g} h"
    )
    return Resolved(
        database_url=db,
        redis_url=settings.redis_url,
        mqtt_url=settings.mqtt_url,
        crm_secret=crm_secret,
        crm_url=settings.crm_url,
        api_token=api_token,
        display_token=display,
        choices=tuple(choices),
        manager_token=manager,
        purchasing_token=(
            settings.purchasing_token.get_secret_value() if settings.purchasing_token else None
        ),
        sales_token=settings.sales_token.get_secret_value() if settings.sales_token else None,
        auto_approve_max_slip_h=settings.auto_approve_max_slip_h,
        auto_approve_priorities=priorities,
        session_secret=(
            settings.session_secret.get_secret_value() if settings.session_secret else None
        ),
        cors_origins=cors_origins,
    )


def _redact(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
