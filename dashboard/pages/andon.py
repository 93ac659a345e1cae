"""``/andon``: the stops no reason came with, for an operator to explain, and the week's
downtime Pareto of a line.

A stop appears once it lasted longer than a small stop without a known reason code.
Picking a reason and pressing Assign goes through the API (``POST /api/v1/lines/{line}/
stops/{id}/reason``, production manager or admin); the API announces it on the live line,
and the list follows.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

import dash
from dash import ALL, ClientsideFunction, Input, Output, State, dcc, html, set_props

from loopline.dashboard import ids
from loopline.dashboard.components import live_frame, nav_bar, panel_head
from loopline.dashboard.figures import pareto_figure
from loopline.dashboard.i18n import (
    fmt_clock,
    fmt_duration,
    label,
    normalize_lang,
    parse_time,
    t,
)
from loopline.dashboard.live_push import (
    RecordsStream,
    Screens,
    new_token,
    outage_notice,
    register_screen,
    stale_since,
)
from loopline.models.andon_view import AndonData, read_andon, read_pareto
from loopline.models.live import Change

log = logging.getLogger("loopline.dashboard")

PATH = "/andon"
KEY = "stop"  # the dict-id key of a stop's parts: "<line>:<stop id>"
# Line fields whose change can open, close or explain a stop.
WANTED_FIELDS = frozenset({"state", "reported_state", "reason_code", "stop_assigned"})
MIN_REDRAW_S = 0.5


def stop_key(stop: dict[str, Any]) -> str:
    """A stop's key in dict ids: the line and the stop id (the API's path needs both)."""
    return f"{stop['line']}:{stop['id']}"


def reason_options(data: AndonData) -> list[dict[str, str]]:
    """The dropdown's options: each leaf of the tree, named with its loss and parent."""
    return [
        {
            "label": " › ".join(x for x in (r["parent_name"], r["name"]) if x) + f" ({r['code']})",
            "value": r["code"],
        }
        for r in data["reasons"]
    ]


def stop_when(stop: dict[str, Any], lang: str, screens: Screens, now: datetime) -> str:
    """``Down 09:00–09:30 · 30 min`` (an open stop ends "now")."""
    start = parse_time(stop["started_at"])
    end = parse_time(stop["ended_at"])
    assert start is not None
    return t(
        "andon.when",
        lang,
        state=label("state", stop["state"], lang),
        start=fmt_clock(start, screens.tz),
        end=fmt_clock(end, screens.tz) if end else t("andon.open", lang),
        duration=fmt_duration(((end or now) - start).total_seconds(), lang),
    )


def render_stops(data: AndonData | None, lang: str, screens: Screens, now: datetime) -> list[Any]:
    """The list's items: one per stop waiting for a reason."""
    if data is None:
        return []
    if not data["stops"]:
        return [html.Li(t("andon.empty", lang), className="andon-empty")]
    options = reason_options(data)
    items = []
    for stop in data["stops"]:
        key = stop_key(stop)
        sensor = stop.get("sensor_reason") or stop.get("sensor_code")
        items.append(
            html.Li(
                id=ids.part(ids.ANDON_STOP, KEY, key),
                className=f"andon-stop andon-stop--{stop['state']}",
                children=[
                    html.Div(
                        [
                            html.Span(
                                data["lines"].get(stop["line"], stop["line"]),
                                id=ids.part(ids.ANDON_STOP_LINE, KEY, key),
                                className="andon-line",
                            ),
                            html.Span(
                                stop_when(stop, lang, screens, now),
                                id=ids.part(ids.ANDON_STOP_WHEN, KEY, key),
                                className="andon-when",
                            ),
                            html.Span(
                                t("andon.sensor", lang, reason=sensor) if sensor else "",
                                id=ids.part(ids.ANDON_STOP_SENSOR, KEY, key),
                                className="andon-sensor",
                            ),
                        ],
                        className="andon-stop-head",
                    ),
                    html.Div(
                        [
                            dcc.Dropdown(
                                id=ids.part(ids.ANDON_PICK, KEY, key),
                                options=options,  # type: ignore[arg-type]
                                placeholder=t("andon.pick", lang),
                                clearable=False,
                                className="andon-pick",
                            ),
                            html.Button(
                                t("andon.assign", lang),
                                id=ids.part(ids.ANDON_ASSIGN, KEY, key),
                                n_clicks=0,
                                className="andon-assign",
                            ),
                        ],
                        className="andon-stop-act",
                    ),
                ],
            )
        )
    return items


def signature(data: AndonData | None, minute: str) -> str:
    """What the list shows (stops, their durations by the minute, the options)."""
    raw = json.dumps([data, minute], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _read(screens: Screens) -> AndonData | None:
    if screens.sessions is None:
        return None
    return read_andon(screens.sessions, now=screens.now())


def layout(
    screens: Screens, lang: str | None = None, line: str | None = None, **_query: Any
) -> html.Div:
    """The andon screen, rendered from the records as they are now."""
    lang = normalize_lang(lang, screens.default_lang)
    now = screens.now()
    reading = screens.last_good.read("andon", lambda: _read(screens), now)
    data = reading.value
    notice = outage_notice(reading, lang, screens.tz)
    lines = data["lines"] if data else {}
    chosen = line if line in lines else next(iter(lines), None)
    minute = now.strftime("%Y%m%d%H%M")
    start = {
        "token": new_token(),
        "params": {"lang": lang},
        "shown": {"sig": signature(data, minute)} if data is not None else None,
        "notice": notice,
    }
    count = {"children": t("andon.count", lang, n=len(data["stops"])) if data else ""}
    return live_frame(
        ids.ANDON,
        start=start,
        lang=lang,
        banner=notice or stale_since(now, lang, screens.tz),
        stale=notice is not None,
        class_name="page page--desk page--andon",
        children=[
            nav_bar("andon", lang),
            html.Main(
                className="desk",
                children=[
                    html.Div(
                        id=ids.ANDON_MESSAGE, className="decision decision--none", role="status"
                    ),
                    dcc.Store(id=ids.ANDON_RESULT),
                    html.Section(
                        className="panel andon-panel",
                        children=[
                            panel_head(t("page.andon", lang), ids.ANDON_COUNT, count),
                            html.Ul(
                                render_stops(data, lang, screens, now),
                                id=ids.ANDON_LIST,
                                className="andon-list",
                            ),
                        ],
                    ),
                    html.Section(
                        className="panel andon-pareto",
                        children=[
                            html.Div(
                                [
                                    html.H2(id=ids.ANDON_PARETO_TITLE),
                                    dcc.Dropdown(
                                        id=ids.ANDON_PARETO_LINE,
                                        options=[
                                            {"label": n, "value": i} for i, n in lines.items()
                                        ],
                                        value=chosen,
                                        clearable=False,
                                        className="andon-pareto-line",
                                    ),
                                ],
                                className="panel-head",
                            ),
                            dcc.Graph(
                                id=ids.ANDON_PARETO,
                                config={"displayModeBar": False},
                                className="andon-pareto-graph",
                            ),
                        ],
                    ),
                ],
            ),
        ],
    )  # fmt: skip


# -- live ------------------------------------------------------------------------------
class AndonStream(RecordsStream):
    """Keeps one open andon screen in step with the stops in the records."""

    min_redraw_s = MIN_REDRAW_S

    def __init__(self, screens: Screens, start: dict[str, Any]) -> None:
        super().__init__(screens, start)
        self.sig: str | None = self.shown.get("sig")

    def wants(self, change: Change) -> bool:
        """A line's state changed (a stop opened or closed) or a stop got its reason."""
        return change.entity == "line" and bool(WANTED_FIELDS & set(change.new))

    async def on_tick(self, now: datetime) -> None:
        """Once a minute: durations move, and an open stop may now wait for a reason."""
        if self.new_minute(now) or self.dirty:
            await self.refresh()

    def reading(self) -> tuple[Any, Callable[[], Any]]:
        return "andon", lambda: _read(self.screens)

    def show(self, data: Any) -> None:
        """Redraw the list and its count when the stops (or the minute) changed."""
        now = self.screens.now()
        self.new_minute(now)
        sig = signature(data, self.minute)
        if sig != self.sig:
            set_props(
                ids.ANDON_LIST, {"children": render_stops(data, self.lang, self.screens, now)}
            )
            n = len(data["stops"]) if data else 0
            set_props(ids.ANDON_COUNT, {"children": t("andon.count", self.lang, n=n)})
            self.sig = sig


def assign_message(result: dict[str, Any] | None, lang: str) -> tuple[str, str]:
    """What the API answered an assignment, as the status line's text and class."""
    if not result:
        return "", "decision decision--none"
    if result.get("status") == "pick":
        return t("andon.pick_first", lang), "decision decision--refused"
    body = result.get("body") or {}
    if result.get("status") == 200:
        reason = f"{body.get('reason_code')} · {body.get('reason_name') or ''}"
        return t(
            "andon.assigned", lang, line=body.get("line"), reason=reason
        ), "decision decision--ok"
    detail = body.get("detail")
    if isinstance(detail, list):
        detail = "; ".join(f"{d.get('field')}: {d.get('message')}" for d in detail)
    return (
        t("andon.refused", lang, status=result.get("status"), detail=detail or ""),
        "decision decision--refused",
    )


def register(app: dash.Dash, screens: Screens) -> None:
    """Register the page, its live stream, the Assign buttons and the Pareto."""
    register_screen(
        app,
        __name__,
        screens=screens,
        path=PATH,
        name="andon",
        title="Loopline · Andon",
        layout=partial(layout, screens),
        live_ids=ids.ANDON,
        stream=AndonStream,
    )
    # Assigning goes through the API like any other client (the signed-in browser's
    # cookie plus a header no other site can send), so the API's roles apply.
    app.clientside_callback(
        ClientsideFunction(namespace="loopline_andon", function_name="assign"),
        Output(ids.ANDON_RESULT, "data"),
        Input(ids.part(ids.ANDON_ASSIGN, KEY, ALL), "n_clicks"),
        State(ids.part(ids.ANDON_PICK, KEY, ALL), "value"),
        State(ids.part(ids.ANDON_PICK, KEY, ALL), "id"),
        prevent_initial_call=True,
    )

    def lang_of(start: dict[str, Any] | None) -> str:
        return normalize_lang(((start or {}).get("params") or {}).get("lang"), screens.default_lang)

    @app.callback(
        Output(ids.ANDON_MESSAGE, "children"),
        Output(ids.ANDON_MESSAGE, "className"),
        Input(ids.ANDON_RESULT, "data"),
        State(ids.ANDON.start, "data"),
        prevent_initial_call=True,
    )
    def _assigned(result: dict[str, Any] | None, start: dict[str, Any] | None) -> Any:
        return assign_message(result, lang_of(start))

    @app.callback(
        Output(ids.ANDON_PARETO, "figure"),
        Output(ids.ANDON_PARETO_TITLE, "children"),
        Input(ids.ANDON_PARETO_LINE, "value"),
        Input(ids.ANDON_RESULT, "data"),
        State(ids.ANDON.start, "data"),
    )
    def _pareto(line_id: str | None, _result: Any, start: dict[str, Any] | None) -> Any:
        lang = lang_of(start)
        if not line_id or screens.sessions is None:
            return pareto_figure([], lang), ""
        data = read_pareto(screens.sessions, line_id, now=screens.now())
        return pareto_figure(data["rows"], lang), t("andon.pareto", lang, week=data["week"])
