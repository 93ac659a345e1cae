"""``/alerts``: the alert panel, open alerts first and the most severe on top.

Alerts appear and disappear live; their ages move once a minute. ``?role=`` shows one
role's alerts only.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from functools import partial
from typing import Any

import dash
from dash import ALL, Input, Output, dcc, html

from loopline.dashboard import ids
from loopline.dashboard.components import live_frame, nav_bar, panel_head
from loopline.dashboard.i18n import alert_text, fmt_age, label, normalize_lang, t
from loopline.dashboard.live_push import (
    ListStream,
    Screens,
    Singles,
    Views,
    new_token,
    outage_notice,
    register_screen,
    stale_since,
)
from loopline.models.live import Change, LiveState

PATH = "/alerts"
KEY = "alert"
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
STATUS_RANK = {"open": 0, "acked": 1}


def read_alerts(live: LiveState, role: str | None) -> dict[str, dict[str, Any]]:
    """The alerts to show (optionally one role's), by id."""
    return {str(a["id"]): a for a in live.all("alert") if not role or a.get("role") in (role, None)}


def alert_order(alerts: dict[str, dict[str, Any]]) -> list[str]:
    """Open before acknowledged, critical before info, newest first."""
    newest_first = sorted(
        alerts.values(), key=lambda a: str(a.get("opened_at") or ""), reverse=True
    )
    ranked = sorted(
        newest_first,
        key=lambda a: (
            STATUS_RANK.get(str(a.get("status")), 2),
            SEVERITY_RANK.get(str(a.get("severity")), 3),
        ),
    )
    return [str(a["id"]) for a in ranked]


def alert_view(
    alert: dict[str, Any], *, lang: str, screens: Screens, now: datetime
) -> dict[str, dict[str, Any]]:
    """Every prop of one alert item, by part; its age on the screens' clock (an alert is
    a record, opened at wall-clock time, while the demo's screens run simulated time)."""
    severity = str(alert.get("severity") or "info")
    status = str(alert.get("status") or "open")
    entity = str(alert.get("entity") or "")
    entity_text = " ".join(
        x
        for x in (
            label("entity", entity, lang) if entity else "",
            str(alert.get("entity_id") or ""),
        )
        if x
    )
    return {
        ids.ALERT: {"className": f"alert alert--{severity} alert--{status}"},
        ids.ALERT_SEVERITY: {"children": label("severity", severity, lang)},
        ids.ALERT_MESSAGE: {"children": alert_text(alert, lang)},
        ids.ALERT_ENTITY: {"children": entity_text},
        ids.ALERT_AGE: {"children": fmt_age(screens.shown(alert.get("opened_at")), lang, now=now)},
        ids.ALERT_STATUS: {"children": label("alert", status, lang)},
        ids.ALERT_ACK: {
            "className": "alert-ack" if status == "open" else "alert-ack alert-ack--done"
        },
    }


def alert_views(
    alerts: dict[str, dict[str, Any]],
    order: list[str],
    *,
    lang: str,
    screens: Screens,
    now: datetime,
) -> Views:
    """The views of the shown alerts, by id."""
    return {i: alert_view(alerts[i], lang=lang, screens=screens, now=now) for i in order}


def count_singles(alerts: dict[str, dict[str, Any]], lang: str) -> Singles:
    """How many alerts are still open."""
    n = sum(1 for a in alerts.values() if a.get("status", "open") == "open")
    return {ids.ALERTS_COUNT: {"children": t("alerts.count", lang, n=n)}}


def render_alert(alert_id: str, views: Views, lang: str) -> html.Li:
    """One alert item, with the props of its view."""

    def p(kind: str, **extra: Any) -> dict[str, Any]:
        return {"id": ids.part(kind, KEY, alert_id), **views[alert_id][kind], **extra}

    return html.Li(
        **p(ids.ALERT),
        children=[
            html.Span(**p(ids.ALERT_SEVERITY, className="alert-severity")),
            html.Div(
                [
                    html.Div(**p(ids.ALERT_MESSAGE, className="alert-message")),
                    html.Div(
                        [
                            html.Span(**p(ids.ALERT_ENTITY, className="alert-entity")),
                            html.Span(**p(ids.ALERT_STATUS, className="alert-status")),
                        ],
                        className="alert-meta",
                    ),
                ],
                className="alert-body",
            ),
            html.Div(
                [
                    html.Span(**p(ids.ALERT_AGE, className="alert-age")),
                    html.Button(t("alerts.ack", lang), **p(ids.ALERT_ACK), n_clicks=0),
                ],
                className="alert-side",
            ),
        ],
    )


def render_alerts(order: list[str], views: Views, lang: str) -> list[html.Li]:
    """The list's children."""
    if not order:
        return [html.Li(t("alerts.empty", lang), className="alerts-empty")]
    return [render_alert(i, views, lang) for i in order]


def layout(
    screens: Screens, lang: str | None = None, role: str | None = None, **_query: Any
) -> html.Div:
    """The alert panel, rendered from the live state as it is now."""
    lang = normalize_lang(lang, screens.default_lang)
    now = screens.now()
    reading = screens.last_good.read(("alerts", role), lambda: read_alerts(screens.live, role), now)
    alerts = reading.value or {}
    order = alert_order(alerts)
    views = alert_views(alerts, order, lang=lang, screens=screens, now=now)
    singles = count_singles(alerts, lang)
    if reading.value is None:  # no count to give: nothing has been read
        singles = {ids.ALERTS_COUNT: {"children": ""}}
    notice = outage_notice(reading, lang, screens.tz)
    start = {
        "token": new_token(),
        "params": {"lang": lang, "role": role},
        # Nothing read yet: the stream draws everything on its first good read.
        "shown": {"order": order, "views": views, "singles": singles}
        if reading.value is not None
        else None,
        "notice": notice,
    }
    return live_frame(
        ids.ALERTS,
        start=start,
        lang=lang,
        banner=notice or stale_since(now, lang, screens.tz),
        stale=notice is not None,
        class_name="page page--desk",
        children=[
            nav_bar("alerts", lang),
            html.Main(
                className="desk",
                children=html.Section(
                    className="panel",
                    children=[
                        panel_head(
                            t("page.alerts", lang), ids.ALERTS_COUNT, singles[ids.ALERTS_COUNT]
                        ),
                        html.Ul(
                            render_alerts(order, views, lang) if reading.value is not None else [],
                            id=ids.ALERTS_LIST,
                            className="alerts",
                        ),
                        dcc.Store(id=ids.ALERTS_ACK_RESULT),
                    ],
                ),
            ),
        ],
    )


class AlertsStream(ListStream):
    """Keeps one open alert panel in step with the live state."""

    def __init__(self, screens: Screens, start: dict[str, Any]) -> None:
        super().__init__(screens, start)
        self.role = self.params.get("role")
        self.alerts: dict[str, dict[str, Any]] = {}

    def wants(self, change: Change) -> bool:
        """Alert changes only."""
        return change.entity == "alert"

    async def resync(self) -> None:
        """Read every alert afresh and push the difference."""
        self.alerts = await asyncio.to_thread(
            self.screens.last_good.fresh,
            ("alerts", self.role),
            lambda: read_alerts(self.screens.live, self.role),
            self.screens.now(),
        )
        self.redraw(self.screens.now())

    async def on_changes(self, changes: list[Change]) -> None:
        """Merge alert changes, fetch new alerts, push what changed."""
        if not changes:
            return
        unknown: list[str] = []
        for c in changes:
            if c.removed:
                self.alerts.pop(c.id, None)
            elif c.id in self.alerts:
                self.alerts[c.id] = {**self.alerts[c.id], **c.new}
            else:
                unknown.append(c.id)
        if unknown:
            fetched = await asyncio.to_thread(self.screens.live.get_many, "alert", unknown)
            for a in fetched:
                if a and (not self.role or a.get("role") in (self.role, None)):
                    self.alerts[str(a["id"])] = a
        self.redraw(self.screens.now())

    def redraw(self, now: datetime) -> None:
        """Send the items that changed, or the whole list when items came, went or moved."""
        self.new_minute(now)
        order = alert_order(self.alerts)
        views = alert_views(self.alerts, order, lang=self.lang, screens=self.screens, now=now)
        self.push(
            ids.ALERTS_LIST,
            key=KEY,
            order=order,
            views=views,
            render=lambda: render_alerts(order, views, self.lang),
            singles=count_singles(self.alerts, self.lang),
        )


def register(app: dash.Dash, screens: Screens) -> None:
    """Register the page and its live stream on ``app``."""
    register_screen(
        app,
        __name__,
        screens=screens,
        path=PATH,
        name="alerts",
        title="Loopline · Alerts",
        layout=partial(layout, screens),
        live_ids=ids.ALERTS,
        stream=AlertsStream,
    )
    # Acknowledging goes through the API like any other client (the signed-in browser's
    # cookie plus a header no other site can send); the change comes back by the stream.
    app.clientside_callback(
        ACK_JS,
        Output(ids.ALERTS_ACK_RESULT, "data"),
        Input(ids.part(ids.ALERT_ACK, KEY, ALL), "n_clicks"),
        prevent_initial_call=True,
    )


ACK_JS = """
async function (clicks) {
    const trig = dash_clientside.callback_context.triggered_id;
    if (!trig || !clicks.some(n => n)) { return dash_clientside.no_update; }
    const resp = await fetch(`/api/v1/alerts/${encodeURIComponent(trig.alert)}/ack`, {
        method: "POST", credentials: "same-origin",
        headers: {"X-Requested-By": "loopline"}});
    return {alert: trig.alert, status: resp.status};
}
"""
