"""Process wiring: build the stores and parts each process runs, from one Settings."""

from __future__ import annotations

import gc
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from loopline.api.app import create_app
from loopline.api.context import ApiContext
from loopline.api.oidc import OidcClient
from loopline.api.security import redact_logs
from loopline.ingest.crm.connector import Registry
from loopline.ingest.crm.reconcile import Reconciler
from loopline.ingest.crm.relay import ConnectorRelay, needs_relay
from loopline.ingest.mqtt.consumer import Inbound, MqttConsumer
from loopline.ingest.mqtt.status import StatusWatcher
from loopline.ingest.shopfloor import ShopfloorHandler, ingest_status_changed
from loopline.models.approvals import ApprovalPolicy
from loopline.models.clock import Clock
from loopline.models.db import make_engine, make_sessions, migrate
from loopline.models.live import LiveState
from loopline.models.live_store import LiveStore, open_live_store
from loopline.models.loop import Loop, LoopConfig
from loopline.models.notify_relay import NotificationRelay
from loopline.models.notify_rules import NotifyConfig, PeopleDirectory, RulesFileError, load_rules
from loopline.models.notify_worker import Notifier
from loopline.models.outbox import OutboxRelay
from loopline.models.replan import PlanWindow
from loopline.models.tracking import TrackingLinks, tracking_key
from loopline.models.web_sessions import SessionPolicy
from loopline.settings import Resolved, Settings, resolve, split_list

if TYPE_CHECKING:
    from loopline.ingest.sparkplug.mapping import SparkplugMapping
    from loopline.ingest.sparkplug.service import SparkplugIngest

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
        approval_policy=approval_policy(rt.settings),
        plan_window=plan_window(rt.settings),
        session_secret=rt.resolved.session_secret,
        connectors=Registry(rt.settings.connectors_dir),
        session_policy=session_policy(rt.settings),
        cors_origins=rt.resolved.cors_origins,
        tracking=tracking_links(rt),
        public_url=rt.settings.public_url,
        oidc=oidc_client(rt),
    )


# The parts below hold no defaults of their own: Settings is the one place a default lives.
def approval_policy(settings: Settings) -> ApprovalPolicy:
    """The auto-approve rules the worker's approval gate applies."""
    return ApprovalPolicy(
        max_slip_h=settings.auto_approve_max_slip_h,
        priorities=frozenset(split_list(settings.auto_approve_priorities)),
    )


def plan_window(settings: Settings) -> PlanWindow:
    """How replans, previews and quotes cut the problem (the same settings for all)."""
    return PlanWindow(
        frozen_h=settings.frozen_window_h,
        line_down_assume_h=settings.line_down_assume_h,
        promise_policy=settings.promise_policy,
        promise_margin_h=settings.promise_margin_h,
    )


def session_policy(settings: Settings) -> SessionPolicy:
    """How long browser sign-ins last."""
    return SessionPolicy(
        idle_s=settings.session_idle_h * 3600,
        max_age_s=settings.session_max_age_h * 3600,
        kiosk_max_age_s=settings.kiosk_session_max_age_h * 3600,
    )


def loop_config(settings: Settings, *, tracking: TrackingLinks | None) -> LoopConfig:
    """The worker's timings, plan window and approval rules; ``tracking`` signs the
    customer tracking links sent with promises (None: no link)."""
    return LoopConfig(
        replan_debounce_ms=settings.replan_debounce_ms,
        line_down_alert_after_s=settings.line_down_alert_after_s,
        stale_after_s=settings.stale_after_s,
        window=plan_window(settings),
        approval_policy=approval_policy(settings),
        followup_after_days=settings.followup_after_days,
        tracking=tracking,
    )


def outbox_relay(
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    registry: Registry,
    url: str | None,
    secret: str,
) -> OutboxRelay:
    """The CRM feedback relay with the outbox's retry settings: through each order's
    connector (its CRM's API), else signed to ``url``."""
    return ConnectorRelay(
        sessions,
        registry=registry,
        url=url,
        secret=secret,
        max_attempts=settings.outbox_max_attempts,
        backoff_base_s=settings.outbox_backoff_base_s,
        backoff_max_s=settings.outbox_backoff_max_s,
        timeout_s=settings.outbox_timeout_s,
    )


def oidc_client(rt: Runtime) -> OidcClient | None:
    """The single sign-on provider, when one is configured (all three settings)."""
    s = rt.settings
    given = {
        "LOOPLINE_OIDC_ISSUER": s.oidc_issuer,
        "LOOPLINE_OIDC_CLIENT_ID": s.oidc_client_id,
        "LOOPLINE_OIDC_CLIENT_SECRET": s.oidc_client_secret,
    }
    if not any(given.values()):
        return None
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise SystemExit(f"single sign-on needs {', '.join(missing)} as well")
    assert s.oidc_client_secret is not None
    secret = rt.resolved.session_secret or "api-token:" + rt.resolved.api_token
    return OidcClient(
        issuer=s.oidc_issuer,
        client_id=s.oidc_client_id,
        client_secret=s.oidc_client_secret.get_secret_value(),
        signing_key=tracking_key("oidc:" + secret),
        scopes=s.oidc_scopes,
    )


def tracking_links(rt: Runtime) -> TrackingLinks:
    """How tracking links are signed and where they point (the API and the worker agree)."""
    secret = rt.resolved.session_secret or "api-token:" + rt.resolved.api_token
    return TrackingLinks(
        tracking_key(secret),
        base_url=rt.settings.public_url,
        max_age_s=rt.settings.tracking_link_days * 86400,
    )


# The long-running processes allocate in bursts: a replan of 1,300 open orders makes tens
# of thousands of small objects. CPython's default (a young collection every 700 new
# objects, and the older generations walked in proportion) spent about a third of such a
# replan in the collector: 1.5-2.1 s, 1.1 s with these thresholds and what the process
# loaded at start frozen out of the walks (a heap that only grows at start).
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    """Set a service process's collector for its work (call once started, imports done)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


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
    connectors = Registry(rt.settings.connectors_dir)
    # Feedback goes back through each order's connector (its CRM's API), else to the URL.
    relay = (
        outbox_relay(
            rt.settings, rt.sessions, registry=connectors, url=url, secret=rt.resolved.crm_secret
        )
        if url or needs_relay(connectors)
        else None
    )
    config = loop_config(rt.settings, tracking=tracking_links(rt))
    return Loop(rt.sessions, rt.live, rt.clock, config, relay=relay)


def build_consumer(
    rt: Runtime, mqtt_url: str, *, lock: threading.Lock | None = None
) -> MqttConsumer:
    """The shop-floor consumer, storing into the live state before it acks; ``lock``: one
    shared with the Sparkplug consumer of the same process (one batch stored at a time)."""
    shared = rt.settings.mqtt_shared_group
    handler = ShopfloorHandler(
        rt.sessions,
        rt.live,
        rt.clock,
        serialize=shared is not None,
        member=rt.settings.mqtt_client_id,
    )
    handle: Callable[[Sequence[Inbound]], None] = handler
    if lock is not None:
        from loopline.ingest.sparkplug.service import serialized

        handle = serialized(handler, lock)
    return MqttConsumer(
        mqtt_url,
        client_id=rt.settings.mqtt_client_id,
        handle=handle,
        shared_group=shared,
        batch_max=rt.settings.mqtt_batch_max,
        linger_s=rt.settings.mqtt_linger_ms / 1000,
        on_connection=handler.connection_changed,
        on_poison=handler.poison,
    )


def build_sparkplug(
    rt: Runtime, mqtt_url: str, mapping: SparkplugMapping, *, lock: threading.Lock | None = None
) -> SparkplugIngest:
    """The Sparkplug consumer and host client for a plant's mapping (docs/sparkplug.md)."""
    # Why here: protobuf and the schema are only needed by an ingest that reads Sparkplug.
    from loopline.ingest.sparkplug.service import SparkplugIngest

    return SparkplugIngest(
        mqtt_url,
        f"{rt.settings.mqtt_client_id}-sparkplug",
        mapping,
        rt.sessions,
        rt.live,
        rt.clock,
        batch_max=rt.settings.mqtt_batch_max,
        lock=lock,
    )


def build_status_watcher(rt: Runtime, mqtt_url: str) -> StatusWatcher:
    """The worker's watch on ingest's retained status (its Will): offline is an alert."""
    return StatusWatcher(
        mqtt_url,
        client_id=f"{rt.settings.mqtt_client_id}-status-{uuid.uuid4().hex[:8]}",
        on_status=partial(ingest_status_changed, rt.sessions, rt.live),
    )


def build_reconciler(rt: Runtime, registry: Registry | None = None) -> Reconciler | None:
    """The worker's periodic CRM pull, for ``LOOPLINE_RECONCILE_SOURCES`` (None when unset).
    A source that is unknown or has no read API stops the process, naming it."""
    names = split_list(rt.settings.reconcile_sources)
    if not names:
        log.info("reconcile: off (LOOPLINE_RECONCILE_SOURCES unset)")
        return None
    registry = registry or Registry(rt.settings.connectors_dir)
    chosen = []
    for name in names:
        if name not in registry.connectors:
            raise SystemExit(f"LOOPLINE_RECONCILE_SOURCES: unknown connector '{name}'")
        connector = registry.get(name)
        if connector.reconcile is None:
            raise SystemExit(
                f"LOOPLINE_RECONCILE_SOURCES: connector '{name}' has no reconcile section "
                f"(no CRM API to read)"
            )
        chosen.append(connector)
    return Reconciler(
        rt.sessions,
        chosen,
        every_s=rt.settings.reconcile_every_s,
        alert_after=rt.settings.reconcile_alert_after,
        status=rt.live.redis,
    )


def build_notifier(rt: Runtime, config: NotifyConfig | None = None) -> Notifier | None:
    """The worker's notification sweep and relay, from ``LOOPLINE_NOTIFY_RULES`` (or the
    given rules); None when there are no rules. A bad rules file stops the process, naming
    each failing field."""
    path = rt.settings.notify_rules
    if config is None:
        if path is None:
            log.info("notifications: off (LOOPLINE_NOTIFY_RULES unset)")
            return None
        try:
            config = load_rules(path)
        except RulesFileError as exc:
            raise SystemExit(
                f"invalid rules file {exc.path}:\n  " + "\n  ".join(exc.errors)
            ) from None
        for warning in config.warnings():
            log.warning("notification rules: %s", warning)
    log.info(
        "notifications: %d rules, %d escalation policies, channels %s",
        len(config.rules),
        len(config.escalation),
        ", ".join(["inbox", *config.channels]),
    )
    relay = NotificationRelay(
        rt.sessions,
        config,
        backoff_base_s=rt.settings.notify_backoff_base_s,
        backoff_max_s=rt.settings.notify_backoff_max_s,
    )
    # The users table will back this later (people with roles); for now the file's people.
    # People come from the users table (and the rules file's own ``people``).
    directory = PeopleDirectory(rt.sessions, config.people)
    return Notifier(rt.sessions, rt.live, rt.clock, config, directory, relay)
