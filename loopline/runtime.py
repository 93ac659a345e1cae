"""Process wiring: build the stores and parts each process runs, from one Settings."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from functools import partial

from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from loopline.api.app import create_app
from loopline.api.context import ApiContext
from loopline.api.security import redact_logs
from loopline.ingest.mqtt.consumer import MqttConsumer
from loopline.ingest.mqtt.status import StatusWatcher
from loopline.ingest.shopfloor import ShopfloorHandler, ingest_status_changed
from loopline.models.approvals import ApprovalPolicy
from loopline.models.clock import Clock
from loopline.models.db import make_engine, make_sessions, migrate
from loopline.models.live import LiveState
from loopline.models.live_store import LiveStore, open_live_store
from loopline.models.loop import Loop, LoopConfig
from loopline.models.outbox import OutboxRelay
from loopline.models.replan import PlanWindow
from loopline.models.web_sessions import SessionPolicy
from loopline.settings import Resolved, Settings, resolve

log = logging.getLogger("loopline")


@dataclass
class Runtime:
    """Everything a Loopline process shares: settings, stores and the clock."""

    settings: Settings
    resolved: Resolved
    engine: Engine
    sessions: sessionmaker[Session]
    store: LiveStore
    live: LiveState
    clock: Clock

    def close(self) -> None:
        """Release connections."""
        self.store.sync.close()
        self.engine.dispose()


def build_runtime(settings: Settings, *, demo: bool, clock: Clock | None = None) -> Runtime:
    """Resolve settings, migrate the database and connect to the live store."""
    resolved = resolve(settings, demo=demo)
    for line in resolved.choices:
        log.info("%s", line)
    engine = make_engine(resolved.database_url)
    migrate(engine)
    store = open_live_store(resolved.redis_url)
    return Runtime(
        settings,
        resolved,
        engine,
        make_sessions(engine),
        store,
        LiveState(store.sync),
        clock or Clock(),
    )


def open_database(settings: Settings) -> Engine:
    """Only the system of record, migrated (for commands that need nothing else)."""
    url = settings.database_url or resolve(settings, demo=True).database_url
    engine = make_engine(url)
    migrate(engine)
    return engine


def api_context(rt: Runtime) -> ApiContext:
    return ApiContext(
        sessions=rt.sessions,
        live=rt.live,
        new_async_redis=rt.store.new_async,
        clock=rt.clock,
        api_token=rt.resolved.api_token,
        display_token=rt.resolved.display_token,
        crm_secret=rt.resolved.crm_secret,
        max_body_bytes=rt.settings.max_body_bytes,
        site=rt.settings.site,
        default_lang=rt.settings.lang,
        manager_token=rt.resolved.manager_token,
        purchasing_token=rt.resolved.purchasing_token,
        sales_token=rt.resolved.sales_token,
        approval_policy=approval_policy(rt),
        plan_window=plan_window(rt),
        session_secret=rt.resolved.session_secret,
        session_policy=SessionPolicy(
            idle_s=rt.settings.session_idle_h * 3600,
            max_age_s=rt.settings.session_max_age_h * 3600,
            kiosk_max_age_s=rt.settings.kiosk_session_max_age_h * 3600,
        ),
        cors_origins=rt.resolved.cors_origins,
    )


def approval_policy(rt: Runtime) -> ApprovalPolicy:
    """The auto-approve rules the worker's approval gate applies."""
    return ApprovalPolicy(
        max_slip_h=rt.resolved.auto_approve_max_slip_h,
        priorities=frozenset(rt.resolved.auto_approve_priorities),
    )


def plan_window(rt: Runtime) -> PlanWindow:
    """How replans, previews and quotes cut the problem (the same settings for all)."""
    return PlanWindow(
        frozen_h=rt.settings.frozen_window_h,
        line_down_assume_h=rt.settings.line_down_assume_h,
        promise_policy=rt.settings.promise_policy,
        promise_margin_h=rt.settings.promise_margin_h,
    )


def build_app(rt: Runtime) -> FastAPI:
    """The HTTP side: REST, stream, webhooks and pages (and no token in its logs)."""
    redact_logs()
    return create_app(api_context(rt))


def build_loop(rt: Runtime, crm_url: str | None = None, *, warm_planner: bool = True) -> Loop:
    """The worker's duties; CRM feedback is relayed when a CRM URL is known.

    ``warm_planner=False`` when the caller compiles the planner otherwise (the demo does it
    in the background, ``models.planning.backend``).
    """
    if warm_planner:
        from loopline.models.planning.optimize import warm_up

        # Load the planner's compiled kernels now, not in the first replan.
        warm_up()
    url = crm_url or rt.resolved.crm_url
    relay = (
        OutboxRelay(
            rt.sessions,
            url=url,
            secret=rt.resolved.crm_secret,
            max_attempts=rt.settings.outbox_max_attempts,
            backoff_base_s=rt.settings.outbox_backoff_base_s,
            backoff_max_s=rt.settings.outbox_backoff_max_s,
        )
        if url
        else None
    )
    config = LoopConfig(
        replan_debounce_ms=rt.settings.replan_debounce_ms,
        line_down_alert_after_s=rt.settings.line_down_alert_after_s,
        stale_after_s=rt.settings.stale_after_s,
        window=plan_window(rt),
        approval_policy=approval_policy(rt),
    )
    return Loop(rt.sessions, rt.live, rt.clock, config, relay=relay)


def build_consumer(rt: Runtime, mqtt_url: str) -> MqttConsumer:
    """The shop-floor consumer, storing into the live state before it acks."""
    shared = rt.settings.mqtt_shared_group
    handler = ShopfloorHandler(rt.sessions, rt.live, rt.clock, serialize=shared is not None)
    return MqttConsumer(
        mqtt_url,
        client_id=rt.settings.mqtt_client_id,
        handle=handler,
        shared_group=shared,
        batch_max=rt.settings.mqtt_batch_max,
        on_connection=handler.connection_changed,
        on_poison=handler.poison,
    )


def build_status_watcher(rt: Runtime, mqtt_url: str) -> StatusWatcher:
    """The worker's watch on ingest's retained status (its Will): offline is an alert."""
    return StatusWatcher(
        mqtt_url,
        client_id=f"{rt.settings.mqtt_client_id}-status-{uuid.uuid4().hex[:8]}",
        on_status=partial(ingest_status_changed, rt.sessions, rt.live),
    )
