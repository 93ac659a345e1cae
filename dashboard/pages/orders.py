"""``/orders``: the sales delivery lookup — find an order by id or customer, see where it stands.

Shows status, requested and promised dates, ETA, progress and risk with its reason.
``?q=`` pre-fills the search.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import quote

import dash
from dash import Input, Output, State, dcc, html

from loopline.dashboard import ids
from loopline.dashboard.components import nav_bar, panel_head
from loopline.dashboard.i18n import (
    fmt_date,
    fmt_eta,
    fmt_pct,
    label,
    normalize_lang,
    risk_text,
    t,
    t_count,
)
from loopline.dashboard.live_push import Screens, outage_notice

PATH = "/orders"
MAX_RESULTS = 100
STATUS_RANK = {"in_progress": 0, "open": 1, "completed": 2, "cancelled": 3}
RISK_RANK = {"late": 0, "at_risk": 1, "on_track": 2, "done": 3}
SEARCH_DEBOUNCE_S = 0.3


def search_orders(orders: list[dict[str, Any]], query: str | None) -> list[dict[str, Any]]:
    """Orders whose id, customer name or customer id contains ``query`` (any case).

    An exact id match comes first; then active orders before finished ones, the most at
    risk first, then by promised date.
    """
    q = (query or "").strip().casefold()
    found = [
        o
        for o in orders
        if not q
        or q in str(o.get("id", "")).casefold()
        or q in str(o.get("customer") or "").casefold()
        or q in str(o.get("customer_id") or "").casefold()
    ]
    found.sort(
        key=lambda o: (
            str(o.get("id", "")).casefold() != q,
            STATUS_RANK.get(str(o.get("status")), 9),
            RISK_RANK.get(str(o.get("risk")), 9),
            str(o.get("promised_date") or o.get("requested_date") or "9999-99-99"),
            str(o.get("id")),
        )
    )
    return found


def progress_bar(progress: float) -> html.Div:
    """A progress bar with its percentage."""
    return html.Div(
        [
            html.Div(
                html.Div(className="bar-fill", style={"width": f"{min(progress, 1.0) * 100:.1f}%"}),
                className="bar-track",
            ),
            html.Span(fmt_pct(progress), className="cell-pct"),
        ],
        className="progress-cell",
    )


def _fact(name: str, value: str, lang: str) -> html.Div:
    return html.Div([html.Dt(t(f"col.{name}", lang)), html.Dd(value)], className=f"fact--{name}")


def order_card(o: dict[str, Any], *, lang: str, screens: Screens, now: datetime) -> dcc.Link:
    """One order as a card (it reads on a phone); tapping it opens the order's detail."""
    today = now.astimezone(screens.tz).date()
    risk = str(o.get("risk") or "on_track")
    reason = risk_text(o, lang) if risk in ("late", "at_risk") else ""
    return dcc.Link(
        href=f"{PATH}/{quote(str(o.get('id')), safe='')}?lang={lang}",
        className=f"order-card order-row order-row--{risk}",
        children=[
            html.Div(
                [
                    html.Span(str(o.get("id")), className="order-id"),
                    html.Span(label("status", o.get("status"), lang), className="order-status"),
                    html.Span(label("risk", risk, lang), className=f"badge badge--{risk}"),
                ],
                className="order-card-head",
            ),
            html.Div(str(o.get("customer") or ""), className="cell-customer"),
            html.Dl(
                [
                    _fact("requested", fmt_date(o.get("requested_date"), lang, today=today), lang),
                    _fact("promised", fmt_date(o.get("promised_date"), lang, today=today), lang),
                    _fact("eta", fmt_eta(o.get("eta"), lang, tz=screens.tz, now=now), lang),
                ],
                className="order-facts",
            ),
            progress_bar(float(o.get("progress") or 0.0)),
            html.Div(reason, className="risk-reason") if reason else None,
        ],
    )


def render_results(
    found: list[dict[str, Any]], *, lang: str, screens: Screens, now: datetime
) -> list[Any]:
    """The matching orders as cards, or a line saying nothing matched."""
    if not found:
        return [html.Div(t("orders.none", lang), className="table-empty")]
    summary = t_count("orders.count", lang, len(found))
    if len(found) > MAX_RESULTS:
        summary = f"{summary} · {t('orders.more', lang, n=MAX_RESULTS)}"
    return [
        html.Div(summary, className="panel-count"),
        html.Div(
            [order_card(o, lang=lang, screens=screens, now=now) for o in found[:MAX_RESULTS]],
            className="order-cards",
        ),
    ]


def results(screens: Screens, query: str | None, lang: str) -> list[Any]:
    """The results for ``query``; while the live state is down, from the last good read of
    the orders, greyed under a banner saying since when."""
    now = screens.now()
    reading = screens.last_good.read("orders", lambda: screens.live.all("order"), now)
    notice = outage_notice(reading, lang, screens.tz)
    if reading.value is None:
        shown: list[Any] = []
    else:
        found = search_orders(reading.value, query)
        shown = render_results(found, lang=lang, screens=screens, now=now)
    if notice is None:
        return shown
    return [html.Div(notice, className="stale-note", role="status"), html.Div(shown)]


def layout(
    screens: Screens, lang: str | None = None, q: str | None = None, **_query: Any
) -> html.Div:
    """The lookup page with the results for ``q`` (all orders when empty)."""
    lang = normalize_lang(lang, screens.default_lang)
    return html.Div(
        id=ids.ORDERS_ROOT,
        lang=lang,
        className=f"page page--desk page--orders lang-{lang}",
        children=[
            dcc.Store(id=ids.ORDERS_LANG, data=lang),
            nav_bar("orders", lang),
            html.Main(
                className="desk",
                children=html.Section(
                    className="panel",
                    children=[
                        panel_head(t("page.orders", lang)),
                        dcc.Input(
                            id=ids.ORDERS_SEARCH,
                            type="search",
                            value=q or "",
                            placeholder=t("orders.search", lang),
                            debounce=SEARCH_DEBOUNCE_S,
                            autoFocus=True,
                            className="search",
                        ),
                        html.Div(results(screens, q, lang), id=ids.ORDERS_RESULTS),
                    ],
                ),
            ),
        ],
    )


def register(app: dash.Dash, screens: Screens) -> None:
    """Register the page and its search callback on ``app``."""
    dash.register_page(
        __name__,
        path=PATH,
        title="Loopline · Orders",
        name="orders",
        layout=partial(layout, screens),
    )

    @app.callback(
        Output(ids.ORDERS_RESULTS, "children"),
        Input(ids.ORDERS_SEARCH, "value"),
        State(ids.ORDERS_LANG, "data"),
        prevent_initial_call=True,
    )
    async def _search(query: str | None, lang: str | None) -> list[Any]:
        lang = normalize_lang(lang, screens.default_lang)
        return await asyncio.to_thread(results, screens, query, lang)
