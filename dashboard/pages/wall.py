"""``/wall``: the TV wall screen, one tile per line, readable at five metres.

Every tile shows the line's state colour, the down reason in large type, the current
work order with its progress, the observed rate and the ETA. The page renders from the
live state and then follows it: only the tile parts that changed are pushed.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from functools import partial
from typing import Any

import dash
from dash import html

from loopline.dashboard import ids
from loopline.dashboard.components import live_frame
from loopline.dashboard.i18n import (
    NONE,
    fmt_clock,
    fmt_duration,
    fmt_eta,
    fmt_int,
    fmt_pct,
    fmt_today,
    label,
    normalize_lang,
    t,
)
from loopline.dashboard.live_push import (
    ListStream,
    Screens,
    Singles,
    Views,
    new_token,
    outage_notice,
    push_views,
    register_screen,
    stale_since,
)
from loopline.models.clock import parse_time
from loopline.models.live import Change, LiveState

PATH = "/wall"
KEY = "line"  # the dict-id key of tile parts
COUNT = "wall-count"  # summary chip parts, keyed by state
CHIP = "wall-chip"
STATES = ("running", "idle", "changeover", "down", "unavailable")
# States in which a tile shows no rate and no ETA.
STOPPED = frozenset({"down", "unavailable"})
# Line fields whose change is drawn at once: a line stopping, starting or saying why. The
# rest (counts, rate, ETA, OEE, seq, even the work order it reports on) can move with every
# progress message and are drawn together at most every CALM_S. Why: at 5k msg/s, drawing
# each change kept the browser so busy that a line stopping showed seconds late; a count
# that moves once a second still reads as live from five metres.
URGENT_LINE_FIELDS = frozenset({"state", "reason", "since"})
CALM_S = 1.0


# -- reading ---------------------------------------------------------------------------
def read_wall(live: LiveState, site: str | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The lines to show (optionally one site's) and their current work orders."""
    lines = [ln for ln in live.all("line") if not site or ln.get("site") == site]
    wo_ids = [str(ln["work_order"]) for ln in lines if ln.get("work_order")]
    wos = {str(w["id"]): w for w in live.get_many("work_order", wo_ids) if w}
    return lines, wos


# -- views -----------------------------------------------------------------------------
def _next_wo(line: dict[str, Any]) -> str | None:
    current = line.get("work_order")
    for wo_id in line.get("queue") or []:
        if wo_id != current:
            return str(wo_id)
    return None


def tile_view(
    line: dict[str, Any],
    wo: dict[str, Any] | None,
    *,
    lang: str,
    screens: Screens,
    now: datetime,
) -> dict[str, dict[str, Any]]:
    """Every prop of one tile, by part: the unit the stream diffs and pushes."""
    state = str(line.get("state") or "unavailable")
    reason = str(line.get("reason") or "") if state != "running" else ""
    since = parse_time(line.get("since"))
    since_text = ""
    if since is not None:
        since_text = (
            f"{t('wall.since', lang, time=fmt_clock(since, screens.tz))}"
            f" · {fmt_duration((now - since).total_seconds(), lang)}"
        )
    if wo is not None:
        qty = float(wo.get("qty") or 0)
        good = float(wo.get("good") or 0)
        fraction = min(good / qty, 1.0) if qty > 0 else 0.0
        wo_text = " · ".join(str(x) for x in (wo.get("id"), wo.get("sku")) if x)
        count = f"{fmt_int(good)} / {fmt_int(qty)}"
        scrap = int(wo.get("scrap") or 0)
        if scrap:
            count += f"   ({t('wall.scrap', lang, n=fmt_int(scrap))})"
        pct = fmt_pct(fraction)
        eta_value = line.get("eta") or wo.get("eta")
    else:
        fraction, count, pct = 0.0, "", ""
        wo_text = str(line.get("work_order") or "") or t("wall.no_wo", lang)
        eta_value = line.get("eta")
    rate = line.get("rate_uph")
    if state in STOPPED:
        # Its last rate and the ETA at that rate are no longer true: it makes nothing now.
        rate, eta_value = None, None
    rate_text = fmt_int(rate) if rate is not None else NONE
    nominal = line.get("nominal_uph")
    next_wo = _next_wo(line)
    eta_text = fmt_eta(eta_value, lang, tz=screens.tz, now=now)
    oee: dict[str, Any] = line.get("oee") or {} if isinstance(line.get("oee"), dict) else {}
    return {
        ids.TILE: {"className": f"tile tile--{state}"},
        ids.TILE_NAME: {"children": str(line.get("name") or line.get("id"))},
        ids.TILE_STATE: {"children": label("state", state, lang)},
        ids.TILE_SINCE: {"children": since_text},
        ids.TILE_REASON: {
            "children": reason,
            "className": "tile-reason" if reason else "tile-reason tile-reason--empty",
        },
        ids.TILE_WO: {"children": wo_text},
        ids.TILE_BAR: {"style": {"width": f"{fraction * 100:.1f}%"}},
        ids.TILE_COUNT: {"children": count},
        ids.TILE_PCT: {"children": pct},
        ids.TILE_RATE: {
            "children": rate_text,
            # "25,832" /h must not run into the OEE and ETA beside it (a fast line).
            "className": "metric-value metric-value--long"
            if len(rate_text) > 4
            else "metric-value",
        },
        ids.TILE_NOMINAL: {
            "children": t("wall.of_nominal", lang, n=fmt_int(nominal)) if nominal else ""
        },
        ids.TILE_ETA: {
            "children": eta_text,
            # "tomorrow 01:05" or "3 Dec 06:10" must not run into the rate beside it.
            "className": "metric-value metric-value--long" if len(eta_text) > 5 else "metric-value",
        },
        ids.TILE_NEXT: {"children": t("wall.next", lang, wo=next_wo) if next_wo else ""},
        # The running shift's OEE (models/oee.py puts it on the live line).
        ids.TILE_OEE: {"children": fmt_pct(oee.get("oee"))},
        # A, P and Q are OEE's own symbols in every language (compact: the tile is small).
        ids.TILE_APQ: {
            "children": (
                f"A {_pct(oee.get('availability'))} · P {_pct(oee.get('performance'))}"
                f" · Q {_pct(oee.get('quality'))}"
            )
            if oee.get("oee") is not None
            else ""
        },
    }


def _pct(fraction: Any) -> str:
    """A 0-1 fraction as a bare whole percentage (``74``), for the tile's A/P/Q line."""
    return NONE if fraction is None else str(round(float(fraction) * 100))


def wall_views(
    lines: list[dict[str, Any]],
    wos: dict[str, Any],
    *,
    lang: str,
    screens: Screens,
    now: datetime,
) -> Views:
    """The views of all tiles, by line id."""
    return {
        str(ln["id"]): tile_view(
            ln, wos.get(str(ln.get("work_order") or "")), lang=lang, screens=screens, now=now
        )
        for ln in lines
    }


def summary_views(lines: list[dict[str, Any]], lang: str) -> Views:
    """How many lines are in each state, for the header chips."""
    counts = {s: 0 for s in STATES}
    for ln in lines:
        state = str(ln.get("state") or "unavailable")
        counts[state] = counts.get(state, 0) + 1
    return {
        state: {
            CHIP: {"className": f"chip chip--{state}" + ("" if n else " chip--zero")},
            COUNT: {"children": str(n)},
        }
        for state, n in counts.items()
        if state in STATES
    }


def header_singles(
    lines: list[dict[str, Any]], site: str | None, *, lang: str, screens: Screens, now: datetime
) -> Singles:
    """The header's site name, clock and date."""
    names = {
        str(ln["site"]): str(ln.get("site_name") or ln["site"]) for ln in lines if ln.get("site")
    }
    if site:
        name = names.get(site, site)
    else:
        name = " · ".join(names[k] for k in sorted(names)) if names else t("app.name", lang)
    return {
        ids.WALL_SITE: {"children": name},
        ids.WALL_CLOCK: {"children": fmt_clock(now, screens.tz)},
        ids.WALL_DATE: {"children": fmt_today(now, lang, screens.tz)},
    }


def grid_class(n: int) -> str:
    """Columns and rows that fill a 16:9 screen with ``n`` tiles."""
    cols = 1 if n <= 1 else 2 if n <= 4 else 3 if n <= 9 else 4
    rows = max(1, math.ceil(n / cols))
    return f"wall-grid cols-{cols} rows-{rows}"


# -- rendering ---------------------------------------------------------------------------
def _p(kind: str, line_id: str, views: Views) -> dict[str, Any]:
    return {"id": ids.part(kind, KEY, line_id), **views[line_id][kind]}


def render_tile(line_id: str, views: Views, lang: str) -> html.Div:
    """One tile's components, with the props of its view."""

    def p(kind: str) -> dict[str, Any]:
        return _p(kind, line_id, views)

    return html.Div(
        **p(ids.TILE),
        children=[
            html.Div(
                className="tile-head",
                children=[
                    html.Span(**p(ids.TILE_NAME), className="tile-name"),
                    html.Span(**p(ids.TILE_STATE), className="tile-state"),
                ],
            ),
            html.Div(**p(ids.TILE_SINCE), className="tile-since"),
            html.Div(**p(ids.TILE_REASON)),
            html.Div(
                className="tile-work",
                children=[
                    html.Div(
                        className="tile-worow",
                        children=[
                            html.Span(**p(ids.TILE_WO), className="tile-wo"),
                            html.Span(**p(ids.TILE_PCT), className="tile-pct"),
                        ],
                    ),
                    html.Div(
                        html.Div(**p(ids.TILE_BAR), className="bar-fill"), className="bar-track"
                    ),
                    html.Div(**p(ids.TILE_COUNT), className="tile-count"),
                ],
            ),
            html.Div(
                className="tile-foot",
                children=[
                    html.Div(
                        className="metric",
                        children=[
                            html.Div(t("wall.rate", lang), className="metric-label"),
                            html.Div(
                                [
                                    html.Span(**p(ids.TILE_RATE)),
                                    html.Span(t("wall.per_hour", lang), className="metric-unit"),
                                ]
                            ),
                            html.Div(**p(ids.TILE_NOMINAL), className="metric-sub"),
                        ],
                    ),
                    html.Div(
                        className="metric metric--oee",
                        children=[
                            html.Div(t("wall.oee", lang), className="metric-label"),
                            html.Div(**p(ids.TILE_OEE), className="metric-value"),
                            html.Div(**p(ids.TILE_APQ), className="metric-sub"),
                        ],
                    ),
                    html.Div(
                        className="metric metric--right",
                        children=[
                            html.Div(t("wall.eta", lang), className="metric-label"),
                            html.Div(**p(ids.TILE_ETA)),
                            html.Div(**p(ids.TILE_NEXT), className="metric-sub"),
                        ],
                    ),
                ],
            ),
        ],
    )


def render_tiles(order: list[str], views: Views, lang: str) -> list[Any]:
    """The grid's children."""
    if not order:
        return [html.Div(t("wall.no_lines", lang), className="wall-empty")]
    return [render_tile(line_id, views, lang) for line_id in order]


def render_summary(summary: Views, lang: str) -> list[html.Span]:
    """The header chips: a coloured dot, the state and how many lines are in it."""
    return [
        html.Span(
            id=ids.part(CHIP, "state", state),
            className=summary[state][CHIP]["className"],
            children=[
                html.Span(className="chip-dot"),
                html.Span(
                    id=ids.part(COUNT, "state", state),
                    className="chip-count",
                    children=summary[state][COUNT]["children"],
                ),
                html.Span(label("state", state, lang), className="chip-label"),
            ],
        )
        for state in STATES
    ]


def layout(
    screens: Screens, lang: str | None = None, site: str | None = None, **_query: Any
) -> html.Div:
    """The wall, rendered from the live state as it is now."""
    lang = normalize_lang(lang, screens.default_lang)
    now = screens.now()
    reading = screens.last_good.read(("wall", site), lambda: read_wall(screens.live, site), now)
    lines, wos = reading.value or ([], {})
    views = wall_views(lines, wos, lang=lang, screens=screens, now=now)
    order = [str(ln["id"]) for ln in lines]
    singles = header_singles(lines, site, lang=lang, screens=screens, now=now)
    summary = summary_views(lines, lang)
    shown = {"order": order, "views": views, "singles": singles, "summary": summary}
    notice = outage_notice(reading, lang, screens.tz)
    start = {
        "token": new_token(),
        "params": {"lang": lang, "site": site},
        # Nothing read yet: the stream draws everything on its first good read.
        "shown": shown if reading.value is not None else None,
        "notice": notice,
    }
    return live_frame(
        ids.WALL,
        start=start,
        lang=lang,
        banner=notice or stale_since(now, lang, screens.tz),
        stale=notice is not None,
        class_name="page page--wall",
        children=[
            html.Header(
                className="wall-header",
                children=[
                    html.Div(
                        [
                            html.Span(t("app.name", lang), className="wall-brand"),
                            html.Span(
                                id=ids.WALL_SITE, className="wall-site", **singles[ids.WALL_SITE]
                            ),
                        ],
                        className="wall-title",
                    ),
                    html.Div(
                        render_summary(summary, lang), id=ids.WALL_SUMMARY, className="wall-summary"
                    ),
                    html.Div(
                        [
                            html.Span(
                                id=ids.WALL_DATE, className="wall-date", **singles[ids.WALL_DATE]
                            ),
                            html.Span(
                                id=ids.WALL_CLOCK, className="wall-clock", **singles[ids.WALL_CLOCK]
                            ),
                        ],
                        className="wall-time",
                    ),
                ],
            ),
            html.Main(
                render_tiles(order, views, lang) if reading.value is not None else [],
                id=ids.WALL_GRID,
                className=grid_class(len(order)),
            ),
        ],
    )


# -- live ------------------------------------------------------------------------------
class WallStream(ListStream):
    """Keeps the tiles of one open wall in step with the live state."""

    def __init__(self, screens: Screens, start: dict[str, Any]) -> None:
        super().__init__(screens, start)
        self.site = self.params.get("site")
        self.summary: Views | None = self.shown.get("summary")
        self.lines: dict[str, dict[str, Any]] = {}
        self.wos: dict[str, dict[str, Any]] = {}

    calm_s = CALM_S

    def wants(self, change: Change) -> bool:
        """Line changes, and changes of a work order some line is making."""
        return change.entity == "line" or (change.entity == "work_order" and change.id in self.wos)

    def urgent(self, change: Change) -> bool:
        """A line that appears, goes, or changes state or reason."""
        if change.entity != "line":
            return False
        return (
            change.removed
            or change.id not in self.lines
            or not URGENT_LINE_FIELDS.isdisjoint(change.new)
        )

    async def resync(self) -> None:
        """Read lines and current work orders afresh and push the difference."""
        lines, wos = await asyncio.to_thread(
            self.screens.last_good.fresh,
            ("wall", self.site),
            lambda: read_wall(self.screens.live, self.site),
            self.screens.now(),
        )
        self.lines = {str(ln["id"]): ln for ln in lines}
        self.wos = wos
        self.redraw(self.screens.now())

    async def on_changes(self, changes: list[Change]) -> None:
        """Merge the changes into the cache, fetch what is missing, push what changed."""
        if not changes:
            return
        unknown: list[str] = []
        for c in changes:
            if c.entity == "line":
                if c.removed:
                    self.lines.pop(c.id, None)
                elif c.id in self.lines:
                    self.lines[c.id] = {**self.lines[c.id], **c.new}
                else:
                    unknown.append(c.id)
            elif c.entity == "work_order" and c.id in self.wos and not c.removed:
                self.wos[c.id] = {**self.wos[c.id], **c.new}
        await asyncio.to_thread(self._fetch, unknown)
        self.redraw(self.screens.now())

    def _fetch(self, line_ids: list[str]) -> None:
        live = self.screens.live
        for line in live.get_many("line", line_ids):
            if line and (not self.site or line.get("site") == self.site):
                self.lines[str(line["id"])] = line
        current = {str(ln["work_order"]) for ln in self.lines.values() if ln.get("work_order")}
        missing = sorted(current - set(self.wos))
        for wo in live.get_many("work_order", missing):
            if wo:
                self.wos[str(wo["id"])] = wo
        for stale in set(self.wos) - current:
            del self.wos[stale]

    def redraw(self, now: datetime) -> None:
        """Compute every view and send only what differs from what the browser shows."""
        self.new_minute(now)
        lines = [self.lines[k] for k in sorted(self.lines)]
        order = [str(ln["id"]) for ln in lines]
        views = wall_views(lines, self.wos, lang=self.lang, screens=self.screens, now=now)
        self.push(
            ids.WALL_GRID,
            key=KEY,
            order=order,
            views=views,
            render=lambda: render_tiles(order, views, self.lang),
            singles=header_singles(lines, self.site, lang=self.lang, screens=self.screens, now=now),
            container_props={"className": grid_class(len(order))},
        )
        summary = summary_views(lines, self.lang)
        push_views("state", self.summary, summary)
        self.summary = summary


def register(app: dash.Dash, screens: Screens) -> None:
    """Register the page and its live stream on ``app``."""
    register_screen(
        app,
        __name__,
        screens=screens,
        path=PATH,
        name="wall",
        title="Loopline · Wall",
        layout=partial(layout, screens),
        live_ids=ids.WALL,
        stream=WallStream,
    )
