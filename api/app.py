"""The one ASGI app: REST and the live stream under /api/v1, the Dash pages beside them."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi_offline import FastAPIOffline

from loopline.api.auth import ApiKeys, BrowserSessions, PageAuthMiddleware, Tokens
from loopline.api.context import ApiContext
from loopline.api.errors import error_body, error_responses, install_error_handlers, refuse_nul
from loopline.api.routes import (
    alerts,
    changes,
    crm,
    factory,
    followups,
    health,
    kpi,
    notifications,
    oee,
    orders,
    purchasing,
    quotes,
    signin,
    stream,
    tracking,
    users,
)
from loopline.api.routes import sessions as session_routes
from loopline.api.security import install_security

API_PREFIX = "/api/v1"
# Swagger UI's and Redoc's files, from the fastapi-offline package (no CDN: /docs works
# offline); under /docs, which browsers may load before signing in (api/auth.py).
DOCS_ASSETS = "/docs/assets"


def create_app(ctx: ApiContext, *, with_dashboard: bool = True) -> FastAPI:
    """Build the FastAPI app (and mount the dashboards on it) for a context."""
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="Loopline",
        version="0.1.0",
        description="The live link between a factory's CRM and its production lines.",
    )
    app.state.context = ctx
    app.state.tokens = Tokens(
        ctx.api_token,
        ctx.display_token,
        manager_token=ctx.manager_token,
        purchasing_token=ctx.purchasing_token,
        sales_token=ctx.sales_token,
        secret=ctx.session_secret,
    )
    app.state.browser_sessions = BrowserSessions(app.state.tokens, ctx.sessions, ctx.session_policy)
    app.state.api_keys = ApiKeys(ctx.sessions)
    app.state.oidc = ctx.oidc  # None: no single sign-on
    install_error_handlers(app)
    api = APIRouter(
        prefix=API_PREFIX, dependencies=[Depends(refuse_nul)], responses=error_responses(422, 503)
    )
    for module in (health, crm, orders, factory, alerts, changes, quotes, purchasing, stream, oee):
        api.include_router(module.router)
    api.include_router(notifications.router)
    api.include_router(session_routes.router)
    api.include_router(followups.router)
    api.include_router(kpi.router)
    api.include_router(users.router)

    @api.api_route(
        "/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
    )
    def unknown(rest: str) -> JSONResponse:
        # Without this, the screens' catch-all page route would answer /api/v1/typo with HTML.
        return JSONResponse(error_body(f"no such endpoint: /api/v1/{rest}"), status_code=404)

    app.include_router(api)
    app.include_router(signin.router)
    app.include_router(tracking.router)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/wall")

    script_hashes: Callable[[], Iterable[str]] = tuple
    if with_dashboard:
        from loopline.dashboard.app import create_dash

        script_hashes = create_dash(
            app,
            live=ctx.live,
            new_async_redis=ctx.new_async_redis,
            default_lang=ctx.default_lang,
            now=ctx.clock.now,  # the demo's clock may run fast: screens show its time
            sessions=ctx.sessions,
            record_time=ctx.clock.simulated,  # and records' times on that clock
        ).csp_hashes
    app.add_middleware(PageAuthMiddleware, sessions=app.state.browser_sessions)
    install_security(app, cors_origins=ctx.cors_origins, script_hashes=script_hashes)
    return app
