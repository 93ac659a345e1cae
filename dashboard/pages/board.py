"""``/board``: open orders by risk (promised date versus ETA) and the plan per line.

Rows update in place when an order changes and are re-sorted when its risk or promise
moves it; the Gantt is rebuilt when a new plan is published or a work order is
rescheduled, at most once per ``GANTT_MIN_INTERVAL_S``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import dash
from dash import dcc, html

from loopline.dashboard import ids
from loopline.dashboard.components import live_frame, nav_bar, panel_head
from loopline.dashboard.figures import gantt_figure, gantt_signature
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
from loopline.models.clock import parse_date, parse_time
from loopline.models.live import Change, LiveState

PATH = "/board"
KEY = "order"
RISK_RANK = {"late": 0, "at_risk": 1, "on_track": 2, "done": 3}
HIDDEN_STATUSES = frozenset({"completed", "cancelled"})
GANTT_FIELDS = frozenset({"line", "planned_start", "planned_end", "status", "qty", "sku"})
GANTT_MIN_INTERVAL_S = 1.0
GANTT_REDRAW_S = 300.0  # the "now" marker moves; redraw it every few minutes
GANTT_KEEP_DONE_H = 12  # finished work orders stay on the chart this long
GRAPH_CONFIG: Any = {"displaylogo": False, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}


# -- reading ---------------------------------------------------------------------------
def read_orders(live: LiveState) -> dict[str, dict[str, Any]]:
    """Every order in the live state, by id."""
    return {str(o["id"]): o for o in live.all("order")}


def read_board(
    live: LiveState,
) -> tuple[dict[str, dict[str, Any]], tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Everything the board shows: the open orders, and the work orders and lines."""
    return read_orders(live), read_plan(live)


def read_plan(live: LiveState) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every work order and every line."""
    return live.all("work_order"), live.all("line")


# -- views -----------------------------------------------------------------------------
def board_order(orders: dict[str, dict[str, Any]]) -> list[str]:
    """Ids of the orders the board shows: by risk (late first), then promised date."""
    shown = [o for o in orders.values() if o.get("status") not in HIDDEN_STATUSES]
    shown.sort(
        key=lambda o: (
            RISK_RANK.get(str(o.get("risk")), 9),
            str(o.get("promised_date") or o.get("requested_date") or "9999-99-99"),
            str(o["id"]),
        )
    )
    return [str(o["id"]) for o in shown]


def _eta_late(order: dict[str, Any], screens: Screens) -> bool:
    eta = parse_time(order.get("eta"))
    promised = parse_date(order.get("promised_date"))
    return bool(eta and promised and eta.astimezone(screens.tz).date() > promised)


def row_view(
    order: dict[str, Any], *, lang: str, screens: Screens, now: datetime
) -> dict[str, dict[str, Any]]:
    """Every prop of one order row, by part."""
    today = now.astimezone(screens.tz).date()
    risk = str(order.get("risk") or "on_track")
    priority = str(order.get("priority") or "normal")
    progress = float(order.get("progress") or 0.0)
    return {
        ids.ROW: {"className": f"order-row order-row--{risk}"},
        ids.ROW_PRIORITY: {
            "children": label("priority", priority, lang) if priority != "normal" else "",
            "className": f"prio prio--{priority}",
        },
        ids.ROW_CUSTOMER: {"children": str(order.get("customer") or "")},
        ids.ROW_REQUESTED: {"children": fmt_date(order.get("requested_date"), lang, today=today)},
        ids.ROW_PROMISED: {"children": fmt_date(order.get("promised_date"), lang, today=today)},
        ids.ROW_ETA: {
            "children": fmt_eta(order.get("eta"), lang, tz=screens.tz, now=now),
            "className": "cell-eta cell-eta--late" if _eta_late(order, screens) else "cell-eta",
        },
        ids.ROW_BAR: {"style": {"width": f"{max(0.0, min(progress, 1.0)) * 100:.1f}%"}},
        ids.ROW_PCT: {"children": fmt_pct(progress)},
        ids.ROW_RISK: {"children": label("risk", risk, lang), "className": f"badge badge--{risk}"},
        ids.ROW_REASON: {"children": risk_text(order, lang)},
    }


def board_views(
    orders: dict[str, dict[str, Any]],
    order_ids: list[str],
    *,
    lang: str,
    screens: Screens,
    now: datetime,
) -> Views:
    """The views of the shown rows, by order id."""
    return {i: row_view(orders[i], lang=lang, screens=screens, now=now) for i in order_ids}


def gantt_work_orders(work_orders: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The work orders worth drawing: all but those finished long ago."""
    cutoff = now - timedelta(hours=GANTT_KEEP_DONE_H)
    keep = []
    for wo in work_orders:
        end = parse_time(wo.get("planned_end"))
        if wo.get("status") == "done" and end is not None and end < cutoff:
            continue
        keep.append(wo)
    return keep


def count_singles(n: int, lang: str) -> Singles:
    """The count beside the table title."""
    return {ids.BOARD_COUNT: {"children": t_count("board.count", lang, n)}}


# -- rendering ---------------------------------------------------------------------------
def render_row(order_id: str, views: Views) -> html.Tr:
    """One order row, with the props of its view."""

    def p(kind: str, **extra: Any) -> dict[str, Any]:
        return {"id": ids.part(kind, KEY, order_id), **views[order_id][kind], **extra}

    return html.Tr(
        **p(ids.ROW),
        children=[
            html.Td([html.Span(order_id, className="order-id"), html.Span(**p(ids.ROW_PRIORITY))]),
            html.Td(**p(ids.ROW_CUSTOMER, className="cell-customer")),
            html.Td(**p(ids.ROW_REQUESTED, className="cell-date")),
            html.Td(**p(ids.ROW_PROMISED, className="cell-date")),
            html.Td(**p(ids.ROW_ETA)),
            html.Td(
                html.Div(
                    [
                        html.Div(
                            html.Div(**p(ids.ROW_BAR, className="bar-fill")), className="bar-track"
                        ),
                        html.Span(**p(ids.ROW_PCT, className="cell-pct")),
                    ],
                    className="progress-cell",
                )
            ),
            html.Td(
                [
                    html.Span(**p(ids.ROW_RISK)),
                    html.Div(**p(ids.ROW_REASON, className="risk-reason")),
                ]
            ),
        ],
    )


def render_rows(order_ids: list[str], views: Views, lang: str) -> list[html.Tr]:
    """The table body's children."""
    if not order_ids:
        return [html.Tr(html.Td(t("board.empty", lang), colSpan=7, className="table-empty"))]
    return [render_row(i, views) for i in order_ids]


def layout(screens: Screens, lang: str | None = None, **_query: Any) -> html.Div:
    """The board, rendered from the live state as it is now."""
    lang = normalize_lang(lang, screens.default_lang)
    now = screens.now()
    reading = screens.last_good.read("board", lambda: read_board(screens.live), now)
    orders, (work_orders, lines) = reading.value or ({}, ([], []))
    order_ids = board_order(orders)
    views = board_views(orders, order_ids, lang=lang, screens=screens, now=now)
    wos = gantt_work_orders(work_orders, now)
    singles = count_singles(len(order_ids), lang)
    if reading.value is None:  # no count to give: nothing has been read
        singles = {ids.BOARD_COUNT: {"children": ""}}
    notice = outage_notice(reading, lang, screens.tz)
    start = {
        "token": new_token(),
        "params": {"lang": lang},
        # Nothing read yet: the stream draws everything on its first good read.
        "shown": {
            "order": order_ids,
            "views": views,
            "singles": singles,
            "gantt": gantt_signature(wos),
        }
        if reading.value is not None
        else None,
        "notice": notice,
    }
    head = [
        html.Th(t(f"col.{c}", lang))
        for c in ("order", "customer", "requested", "promised", "eta", "progress", "risk")
    ]
    return live_frame(
        ids.BOARD,
        start=start,
        lang=lang,
        banner=notice or stale_since(now, lang, screens.tz),
        stale=notice is not None,
        class_name="page page--desk",
        children=[
            nav_bar("board", lang),
            html.Main(
                className="desk",
                children=[
                    # The lines' plan first, at a glance; the long order table below it.
                    html.Section(
                        className="panel",
                        children=[
                            panel_head(t("board.gantt", lang)),
                            dcc.Graph(
                                id=ids.BOARD_GANTT,
                                figure=gantt_figure(wos, lines, lang, now=now, tz=screens.tz),
                                config=GRAPH_CONFIG,
                            ),
                        ],
                    ),
                    html.Section(
                        className="panel",
                        children=[
                            panel_head(
                                t("board.orders", lang), ids.BOARD_COUNT, singles[ids.BOARD_COUNT]
                            ),
                            html.Table(
                                [
                                    html.Thead(html.Tr(head)),
                                    html.Tbody(
                                        render_rows(order_ids, views, lang)
                                        if reading.value is not None
                                        else [],
                                        id=ids.BOARD_ROWS,
                                    ),
                                ],
                                className="table table--orders",
                            ),
                        ],
                    ),
                ],
            ),
        ],
    )


# -- live ------------------------------------------------------------------------------
class BoardStream(ListStream):
    """Keeps one open board in step with the live state."""

    def __init__(self, screens: Screens, start: dict[str, Any]) -> None:
        super().__init__(screens, start)
        self.gantt_sig: str | None = self.shown.get("gantt")
        self.orders: dict[str, dict[str, Any]] = {}
        self.gantt_dirty = True  # the first resync checks the plan against the snapshot
        self.gantt_built = 0.0

    def wants(self, change: Change) -> bool:
        """Order changes, new plans, and work orders that move on the chart."""
        if change.entity in ("order", "plan"):
            return True
        if change.entity == "work_order":
            is_new = all(v is None for v in change.old.values())
            return change.removed or is_new or bool(GANTT_FIELDS & set(change.new))
        return False

    async def resync(self) -> None:
        """Read every order afresh, push the difference, and check the plan."""
        self.orders, _ = await asyncio.to_thread(
            self.screens.last_good.fresh,
            "board",
            lambda: read_board(self.screens.live),
            self.screens.now(),
        )
        self.redraw_rows(self.screens.now())
        self.gantt_dirty = True
        await self.maybe_rebuild_gantt(force=True)

    async def on_changes(self, changes: list[Change]) -> None:
        """Merge order changes and push them; mark the chart for a rebuild."""
        unknown: list[str] = []
        touched = False
        for c in changes:
            if c.entity == "order":
                touched = True
                if c.removed:
                    self.orders.pop(c.id, None)
                elif c.id in self.orders:
                    self.orders[c.id] = {**self.orders[c.id], **c.new}
                else:
                    unknown.append(c.id)
            else:
                self.gantt_dirty = True
        if unknown:
            fetched = await asyncio.to_thread(self.screens.live.get_many, "order", unknown)
            for o in fetched:
                if o:
                    self.orders[str(o["id"])] = o
        if touched:
            self.redraw_rows(self.screens.now())
        await self.maybe_rebuild_gantt()

    async def on_tick(self, now: datetime) -> None:
        """Rebuild a chart held back by the throttle; move the 'now' marker now and then.

        Rows are recomputed once a minute: "tomorrow 06:10" becomes "06:10" at midnight.
        """
        if self.new_minute(now):
            self.redraw_rows(now)
        if time.monotonic() - self.gantt_built >= GANTT_REDRAW_S:
            self.gantt_dirty = True
            self.gantt_sig = None
        await self.maybe_rebuild_gantt()

    def redraw_rows(self, now: datetime) -> None:
        """Send the rows that changed, or the whole body when rows moved."""
        self.new_minute(now)
        order_ids = board_order(self.orders)
        views = board_views(self.orders, order_ids, lang=self.lang, screens=self.screens, now=now)
        self.push(
            ids.BOARD_ROWS,
            key=KEY,
            order=order_ids,
            views=views,
            render=lambda: render_rows(order_ids, views, self.lang),
            singles=count_singles(len(order_ids), self.lang),
        )

    async def maybe_rebuild_gantt(self, *, force: bool = False) -> None:
        """Rebuild the Gantt if the plan changed, at most once per second."""
        if not self.gantt_dirty:
            return
        if not force and time.monotonic() - self.gantt_built < GANTT_MIN_INTERVAL_S:
            return
        self.gantt_dirty = False
        now = self.screens.now()
        work_orders, lines = await asyncio.to_thread(read_plan, self.screens.live)
        wos = gantt_work_orders(work_orders, now)
        sig = gantt_signature(wos)
        if sig == self.gantt_sig:
            return
        self.gantt_sig = sig
        self.gantt_built = time.monotonic()
        figure = gantt_figure(wos, lines, self.lang, now=now, tz=self.screens.tz)
        dash.set_props(ids.BOARD_GANTT, {"figure": figure})


def register(app: dash.Dash, screens: Screens) -> None:
    """Register the page and its live stream on ``app``."""
    register_screen(
        app,
        __name__,
        screens=screens,
        path=PATH,
        name="board",
        title="Loopline · Board",
        layout=partial(layout, screens),
        live_ids=ids.BOARD,
        stream=BoardStream,
    )
