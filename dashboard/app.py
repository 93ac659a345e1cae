"""The Dash app of the screens, mounted on the API's FastAPI app."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from datetime import datetime, tzinfo
from pathlib import Path

import dash
import fastapi
import redis.asyncio as aredis
from dash import html
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from loopline.dashboard.i18n import normalize_lang
from loopline.dashboard.last_good import ScopedLastGood
from loopline.dashboard.live_push import Screens
from loopline.dashboard.pages import (
    alerts,
    andon,
    board,
    connectors,
    imports,
    inbox,
    kpi,
    order_detail,
    orders,
    plan,
    users,
    wall,
)
from loopline.models.clock import utcnow
from loopline.models.live import LiveState
from loopline.models.scope import ScopedLive

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def create_dash(
    server: fastapi.FastAPI,
    *,
    live: LiveState,
    new_async_redis: Callable[[], aredis.Redis],
    default_lang: str = "en",
    tz: tzinfo | None = None,
    now: Callable[[], datetime] = utcnow,
    sessions: sessionmaker[Session] | None = None,
    record_time: Callable[[datetime], datetime] | None = None,
) -> dash.Dash:
    """Mount the screens (/wall, /board, /plan, /orders, /alerts, /kpi, /andon...) on ``server``.

    ``live`` is read to render each page; ``new_async_redis`` opens the connection each
    open page follows changes on. ``tz`` is the site's time zone (default: the server's),
    ``now`` the loop's clock (the demo's may run fast). ``sessions`` reads the records
    ``/plan`` shows (None: that page says it has no database); ``record_time`` puts the
    records' wall-clock times on ``now``'s timeline (None: they are on it already).
    """
    app = dash.Dash(
        __name__,
        server=server,  # type: ignore[arg-type]  # Dash 4.4's hint predates backends
        backend="fastapi",
        use_pages=True,
        pages_folder="",
        assets_folder=str(ASSETS),
        suppress_callback_exceptions=True,
        title="Loopline",
        # A live page's stream callback never returns; without this the tab title
        # would read "Updating..." forever.
        update_title=None,  # type: ignore[arg-type]  # None is documented
        # The renderer closes an idle websocket after 5 min by default, and does not
        # reconnect after that close: a quiet night would freeze the wall.
        websocket_inactivity_timeout=0,
        meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
    )
    if sessions is not None:
        # Each person's screens show only what their scope lets them see (a sales rep:
        # their customers' orders); readings kept for outages are kept per scope too.
        live = ScopedLive(live, sessions)  # type: ignore[assignment]
    screens = Screens(
        live=live,
        new_async_redis=new_async_redis,
        default_lang=normalize_lang(default_lang),
        tz=tz,
        now=now,
        sessions=sessions,
    )
    if sessions is not None:
        screens = dataclasses.replace(screens, last_good=ScopedLastGood())
    if record_time is not None:
        screens = dataclasses.replace(screens, record_time=record_time)
    for page in (wall, board, plan, alerts, orders, order_detail, kpi, inbox, users, andon):
        page.register(app, screens)
    connectors.register(app, screens)  # the IT person's field mapping screen
    imports.register(app, screens)  # orders from a spreadsheet (admins)
    app.layout = html.Div(dash.page_container, className="app")
    server.add_middleware(_SetupDashFirst, dash_app=app)
    return app


class _SetupDashFirst:
    """Run Dash's first-request setup before the first request, whatever its path.

    Dash 4.4's FastAPI backend runs its one-time setup (listing the assets, so the page
    links our stylesheet; registering the pages router and its title script) only on the
    first ``/_dash-*`` request. A kiosk whose first request after a restart is ``/wall``
    would otherwise get an unstyled page and a renderer TypeError.
    """

    def __init__(self, app: ASGIApp, dash_app: dash.Dash) -> None:
        self.app = app
        self.dash_app = dash_app
        self.done = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.done and scope["type"] == "http":
            self.done = True
            # Private, but the same hooks Dash itself runs on its first /_dash- request;
            # each one runs once (they check their own "first request" flag).
            hooks = self.dash_app.backend._before_request_funcs  # type: ignore[attr-defined]
            for setup in list(hooks):
                result = setup()
                if inspect.isawaitable(result):
                    await result
        await self.app(scope, receive, send)
