"""What the HTTP side needs from the composition root, handed over once at startup."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aredis
from sqlalchemy.orm import Session, sessionmaker

from loopline.ingest.crm.connector import Registry
from loopline.models.approvals import ApprovalPolicy
from loopline.models.clock import Clock
from loopline.models.live import LiveState
from loopline.models.replan import PlanWindow
from loopline.models.web_sessions import SessionPolicy


@dataclass(frozen=True)
class ApiContext:
    sessions: sessionmaker[Session]
    live: LiveState
    new_async_redis: Callable[[], aredis.Redis]
    clock: Clock
    api_token: str
    display_token: str | None
    crm_secret: str
    max_body_bytes: int
    site: str
    default_lang: str = "en"
    manager_token: str | None = None
    purchasing_token: str | None = None
    sales_token: str | None = None
    approval_policy: ApprovalPolicy = ApprovalPolicy()
    plan_window: PlanWindow = PlanWindow()
    # Browser sessions (api/auth.py): the signing key (None: derived from the API token),
    # how long sign-ins last, and the foreign origins CORS lets in (none by default).
    session_secret: str | None = None
    session_policy: SessionPolicy = SessionPolicy()
    cors_origins: tuple[str, ...] = ()
    # The CRM connectors by name (None: the shipped presets and LOOPLINE_CONNECTORS_DIR's).
    connectors: Registry | None = None
