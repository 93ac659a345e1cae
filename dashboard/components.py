"""Pieces shared by the screens: the nav bar and the frame of a live page."""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from loopline.dashboard import ids
from loopline.dashboard.i18n import LANGS, t
from loopline.dashboard.live_push import BANNER, BANNER_SHOWN, WATCHDOG_INTERVAL_MS

NAV_PAGES = (
    ("board", "/board"),
    ("plan", "/plan"),
    ("orders", "/orders"),
    ("alerts", "/alerts"),
    ("kpi", "/kpi"),
    ("inbox", "/inbox"),
    ("andon", "/andon"),
    ("wall", "/wall"),
)


def href(path: str, lang: str) -> str:
    """A page's address in a language."""
    return f"{path}?lang={lang}"


def nav_bar(active: str, lang: str) -> html.Nav:
    """The small bar on the desk pages (not on the wall)."""
    other = next(code for code in LANGS if code != lang)
    links = [
        dcc.Link(
            t(f"nav.{name}", lang),
            href=href(path, lang),
            className="nav-link nav-link--active" if name == active else "nav-link",
        )
        for name, path in NAV_PAGES
    ]
    return html.Nav(
        id=ids.NAV,
        className="nav",
        children=[
            html.Span(t("app.name", lang), className="nav-brand"),
            html.Div(links, className="nav-links"),
            dcc.Link(
                t("nav.lang_other", lang),
                href=href(f"/{active}", other),
                className="nav-lang",
            ),
        ],
    )


def live_frame(
    live_ids: ids.LiveIds,
    *,
    start: dict[str, Any],
    lang: str,
    class_name: str,
    children: list[Any],
    banner: str,
    stale: bool = False,
) -> html.Div:
    """A live page: its snapshot Store, heartbeat, watchdog timer, stale banner and body.

    ``banner`` is the stale banner's text, shown (greying the body) when ``stale``.
    """
    return html.Div(
        id=live_ids.root,
        lang=lang,
        className=f"{class_name} lang-{lang}",
        children=[
            dcc.Store(id=live_ids.start, data=start),
            html.Div(id=live_ids.heartbeat, title="", hidden=True),
            dcc.Interval(id=live_ids.watchdog, interval=WATCHDOG_INTERVAL_MS),
            html.Div(banner, id=live_ids.stale, className=BANNER_SHOWN if stale else BANNER),
            *children,
        ],
    )


def panel_head(
    title: str, count_id: str | None = None, count: dict[str, Any] | None = None
) -> html.Div:
    """A panel's title, with a live count beside it when ``count_id`` is given."""
    children: list[Any] = [html.H2(title)]
    if count_id is not None:
        children.append(html.Span(id=count_id, className="panel-count", **(count or {})))
    return html.Div(children, className="panel-head")
