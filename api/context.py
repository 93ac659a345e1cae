"""What the HTTP side needs from the composition root, handed over once at startup."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aredis
from sqlalchemy.orm import Session, sessionmaker

from loopline.api.oidc import OidcClient
from loopline.ingest.crm.connector import Registry
from loopline.models.approvals import ApprovalPolicy
from loopline.models.clock import Clock
from loopline.models.live import LiveState
from loopline.models.replan import PlanWindow
from loopline.models.tracking import TrackingLinks
from loopline.models.web_sessions import SessionPolicy


@dataclass(frozen=True)
class ApiContext:
    """Every value comes from Settings (``loopline.runtime.api_context`` builds it)."""

    sessions: sessionmaker[Session]
    live: LiveState
    new_async_redis: Callable[[], aredis.Redis]
    clock: Clock
    api_token: str
    display_token: str | None
    crm_secret: str
    max_body_bytes: int
    site: str
    default_lang: str
    manager_token: str | None
    purchasing_token: str | None
    sales_token: str | None
    approval_policy: ApprovalPolicy
    plan_window: PlanWindow
    # Browser sessions (api/auth.py): the signing key (None: derived from the API token),
    # how long sign-ins last, and the foreign origins CORS lets in (none by default).
    session_secret: str | None
    session_policy: SessionPolicy
    cors_origins: tuple[str, ...]
    # Customer tracking links (models/tracking.py); None: the tracking page finds nothing.
    tracking: TrackingLinks | None
    # Where people reach this server (builds the SSO redirect URI); "": from each request.
    public_url: str
    # Single sign-on (api/oidc.py); None: password sign-in only.
    oidc: OidcClient | None
    # The CRM connectors by name (None: the shipped presets and LOOPLINE_CONNECTORS_DIR's).
    connectors: Registry | None
