"""``/kpi``: the managers' key figures, each with its trend over the weeks.

Read from the records through the same read model as ``GET /api/v1/kpi``
(``models/kpi.py``). ``?weeks=`` picks the period (4, 8, 13, 26 or 52; links at the top).
Live: a delivery, a completed follow-up or an alert opening or closing is announced on
the live channel and the figures that changed are pushed (value, count, chart), at most
every ``MIN_REDRAW_S``; the stream's regular resync reads afresh as a safety net.
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
from dash import dcc, html, set_props

from loopline.dashboard import ids
from loopline.dashboard.components import href, live_frame, nav_bar, panel_head
from loopline.dashboard.i18n import NONE, fmt_day, normalize_lang, t
from loopline.dashboard.kpi_figures import (
    GRAPH_CONFIG,
    age_figure,
    lines_figure,
    trend_figure,
)
from loopline.dashboard.live_push import (
    RecordsStream,
    Screens,
    new_token,
    outage_notice,
    register_screen,
    stale_since,
)
from loopline.models.clock import utcnow
from loopline.models.kpi import DEFAULT_WEEKS, PERIODS_WEEKS, Kpi, KpiReport, kpi_report
from loopline.models.live import Change

log = logging.getLogger("loopline.dashboard.kpi")

PATH = "/kpi"
KEY = "kpi"
MIN_REDRAW_S = 2.0
# What can move a figure: a delivery or a follow-up (models/followup.py), an alert.
WANTED = frozenset({"followup", "alert"})
OEE_ID, AGE_ID = "oee", "age"

Props = dict[str, dict[str, dict[str, Any]]]  # entity -> part kind -> props


def read_report(screens: Screens, weeks: int) -> KpiReport | None:
    """The KPI report for the last ``weeks`` weeks (None: no database behind the screens)."""
    if screens.sessions is None:
        return None
    with screens.sessions() as session:
        # Records carry wall-clock time (models/followup.py): the report is cut on it.
        return kpi_report(session, now=utcnow(), weeks=weeks)


def parse_weeks(value: Any) -> int:
    """``?weeks=`` as one of the periods (anything else: the default)."""
    try:
        weeks = int(value)
    except (TypeError, ValueError):
        return DEFAULT_WEEKS
    return weeks if weeks in PERIODS_WEEKS else DEFAULT_WEEKS


# -- formatting ----------------------------------------------------------------------
def fmt_value(kpi: Kpi) -> str:
    """A figure with its precision (percentages and days one decimal, alerts whole)."""
    value = kpi.get("value")
    if value is None:
        return NONE
    if kpi["unit"] == "alerts":
        return f"{value:.0f}"
    if kpi["key"] == "promise_slip":
        return f"{value:+.1f}"
    return f"{value:.1f}"


def unit_text(unit: str, lang: str) -> str:
    """The unit beside a figure (a percent sign needs no words)."""
    return "%" if unit == "pct" else t(f"kpi.unit.{unit}", lang)


def fmt_measure(value: float | None) -> str:
    return NONE if value is None else f"{value:.1f}%"


def _sig(props: dict[str, Any]) -> str:
    raw = json.dumps(props, sort_keys=True, default=str)
    return hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()


def report_props(report: KpiReport, lang: str) -> Props:
    """Every pushed part's props: each KPI's value, caption and chart; the OEE table and
    chart; the alert ages."""
    weeks = report["weeks"]
    out: Props = {}
    for kpi in report["kpis"]:
        if kpi["unit"] == "alerts":
            sub = ""  # the figure is the count
        elif kpi["count"]:
            sub = t("kpi.count", lang, n=kpi["count"])
        else:
            sub = t("kpi.none", lang)
        out[kpi["key"]] = {
            ids.KPI_VALUE: {"children": fmt_value(kpi)},
            ids.KPI_SUB: {"children": sub},
            ids.KPI_FIG: {"figure": trend_figure(kpi, weeks, lang).to_plotly_json()},
        }
    oee = report["oee"]
    out[OEE_ID] = {
        ids.KPI_TABLE: {"children": oee_rows(report)},
        ids.KPI_FIG: {"figure": lines_figure(oee, weeks, lang).to_plotly_json()},
    }
    out[AGE_ID] = {
        ids.KPI_FIG: {"figure": age_figure(report["alerts_by_age"], lang).to_plotly_json()}
    }
    return out


def signatures(props: Props) -> dict[str, str]:
    return {f"{e}|{k}": _sig(p) for e, parts in props.items() for k, p in parts.items()}


def oee_rows(report: KpiReport) -> list[Any]:
    return [
        html.Tr(
            [
                html.Td([html.Span(ln["line"], className="order-id"), html.Span(f" {ln['name']}")]),
                html.Td(fmt_measure(ln["availability"]), className="cell-num"),
                html.Td(fmt_measure(ln["performance"]), className="cell-num"),
                html.Td(fmt_measure(ln["quality"]), className="cell-num"),
                html.Td(fmt_measure(ln["oee"]), className="cell-num cell-num--strong"),
            ]
        )
        for ln in report["oee"]["lines"]
    ]


# -- rendering -----------------------------------------------------------------------
def _graph(entity: str, figure: dict[str, Any], class_name: str) -> dcc.Graph:
    return dcc.Graph(
        id=ids.part(ids.KPI_FIG, KEY, entity),
        figure=figure,
        config=GRAPH_CONFIG,
        className=class_name,
    )


def kpi_card(kpi: Kpi, props: dict[str, dict[str, Any]], lang: str) -> html.Section:
    key = kpi["key"]
    return html.Section(
        className=f"panel kpi-card kpi-card--{key}",
        children=[
            html.H2(t(f"kpi.{key}", lang), className="kpi-title"),
            html.Div(
                [
                    html.Span(
                        id=ids.part(ids.KPI_VALUE, KEY, key),
                        className="kpi-value",
                        **props[ids.KPI_VALUE],
                    ),
                    html.Span(unit_text(kpi["unit"], lang), className="kpi-unit"),
                ],
                className="kpi-figure",
            ),
            html.Div(t(f"kpi.{key}.help", lang), className="kpi-help"),
            html.Div(id=ids.part(ids.KPI_SUB, KEY, key), className="kpi-sub", **props[ids.KPI_SUB]),
            _graph(key, props[ids.KPI_FIG]["figure"], "kpi-trend"),
        ],
    )


def period_links(weeks: int, lang: str) -> html.Nav:
    """The period selector: one link per period, the current one marked."""
    links = [
        dcc.Link(
            t("kpi.weeks", lang, n=n),
            href=f"{href(PATH, lang)}&weeks={n}",
            className="period period--active" if n == weeks else "period",
            id=ids.part(ids.KPI_PERIOD, KEY, str(n)),
        )
        for n in PERIODS_WEEKS
    ]
    return html.Nav(
        [html.Span(t("kpi.period", lang), className="fact-label"), *links],
        className="periods",
        role="navigation",
        title=t("kpi.period", lang),
    )


def body(report: KpiReport | None, weeks: int, lang: str) -> list[Any]:
    """The figures (cards), the lines' OEE and the alerts' ages."""
    if report is None:
        return [html.Div(t("kpi.no_db", lang), className="table-empty")]
    props = report_props(report, lang)
    oee = report["oee"]
    oee_title = t("kpi.oee" if oee["measure"] == "oee" else "kpi.availability_title", lang)
    start, end = report["weeks"][0], report["end"][:10]
    today = datetime.fromisoformat(end).date()
    span = t(
        "kpi.range",
        lang,
        start=fmt_day(datetime.fromisoformat(start).date(), lang, today=today),
        end=fmt_day(today, lang, today=today),
    )
    head = ["line", "availability", "performance", "quality", "oee"]
    return [
        html.Div(span, className="panel-count kpi-range"),
        html.Div(
            [kpi_card(k, props[k["key"]], lang) for k in report["kpis"]], className="kpi-grid"
        ),
        html.Div(
            [
                html.Section(
                    className="panel kpi-wide",
                    children=[
                        panel_head(oee_title),
                        html.Div(
                            t("kpi.oee.pending", lang) if oee["measure"] != "oee" else "",
                            className="kpi-note",
                        ),
                        html.Div(
                            html.Table(
                                [
                                    html.Thead(
                                        html.Tr(
                                            [
                                                html.Th(
                                                    t(f"kpi.col.{c}", lang),
                                                    className="th-num" if c != "line" else None,
                                                )
                                                for c in head
                                            ]
                                        )
                                    ),
                                    html.Tbody(
                                        id=ids.part(ids.KPI_TABLE, KEY, OEE_ID),
                                        **props[OEE_ID][ids.KPI_TABLE],
                                    ),
                                ],
                                className="table table--oee",
                            ),
                            className="table-scroll",
                        ),
                        _graph(OEE_ID, props[OEE_ID][ids.KPI_FIG]["figure"], "kpi-lines"),
                    ],
                ),
                html.Section(
                    className="panel kpi-wide",
                    children=[
                        panel_head(t("kpi.alerts_by_age", lang)),
                        _graph(AGE_ID, props[AGE_ID][ids.KPI_FIG]["figure"], "kpi-ages"),
                    ],
                ),
            ],
            className="kpi-bottom",
        ),
    ]


def layout(
    screens: Screens, lang: str | None = None, weeks: str | None = None, **_query: Any
) -> html.Div:
    """The KPI page for ``?weeks=``, rendered from the records as they are now."""
    lang = normalize_lang(lang, screens.default_lang)
    period = parse_weeks(weeks)
    now = screens.now()
    reading = screens.last_good.read(("kpi", period), lambda: read_report(screens, period), now)
    notice = outage_notice(reading, lang, screens.tz)
    report = reading.value
    sigs = signatures(report_props(report, lang)) if report is not None else {}
    start: dict[str, Any] = {
        "token": new_token(),
        "params": {"lang": lang, "weeks": period},
        "shown": {"sigs": sigs, "lines": _line_ids(report)},
        "notice": notice,
    }
    return live_frame(
        ids.KPI,
        start=start,
        lang=lang,
        banner=notice or stale_since(now, lang, screens.tz),
        stale=notice is not None,
        class_name="page page--desk page--kpi",
        children=[
            nav_bar("kpi", lang),
            html.Main(
                className="desk",
                children=[
                    html.Div(
                        [
                            html.H1(t("page.kpi", lang), className="kpi-h1"),
                            period_links(period, lang),
                        ],
                        className="kpi-head",
                    ),
                    html.Div(
                        body(report, period, lang) if reading.fresh or report else [],
                        id=ids.KPI_BODY,
                    ),
                ],
            ),
        ],
    )


def _line_ids(report: KpiReport | None) -> list[str]:
    return [ln["line"] for ln in report["oee"]["lines"]] if report else []


# -- live ------------------------------------------------------------------------------
class KpiStream(RecordsStream):
    """Keeps one open KPI page in step with the records."""

    min_redraw_s = MIN_REDRAW_S

    def __init__(self, screens: Screens, start: dict[str, Any]) -> None:
        super().__init__(screens, start)
        params, shown = self.params, self.shown
        self.weeks = parse_weeks(params.get("weeks"))
        self.sigs: dict[str, str] = dict(shown.get("sigs") or {})
        self.lines: list[str] | None = shown.get("lines") if "sigs" in shown else None

    def wants(self, change: Change) -> bool:
        """A delivery, a follow-up done, an alert opened, acknowledged or closed, or a
        line's shift OEE recomputed (the worker stores it, models/oee.py)."""
        if change.entity == "line":
            return "oee" in change.new and change.new.get("oee") != change.old.get("oee")
        return change.entity in WANTED

    def reading(self) -> tuple[Any, Callable[[], Any]]:
        return ("kpi", self.weeks), lambda: read_report(self.screens, self.weeks)

    def show(self, report: KpiReport | None) -> None:
        self.redraw_report(report)

    def redraw_report(self, report: KpiReport | None) -> None:
        """Push the parts whose content changed (all of the body when the lines changed)."""
        if report is None:
            return
        props = report_props(report, self.lang)
        sigs = signatures(props)
        if self.lines != _line_ids(report):
            set_props(ids.KPI_BODY, {"children": body(report, self.weeks, self.lang)})
        for entity, parts in props.items():
            for kind, p in parts.items():
                if self.sigs.get(f"{entity}|{kind}") != sigs[f"{entity}|{kind}"]:
                    set_props(ids.part(kind, KEY, entity), p)
        self.sigs, self.lines = sigs, _line_ids(report)


def register(app: dash.Dash, screens: Screens) -> None:
    """Register the page and its live stream on ``app``."""
    register_screen(
        app,
        __name__,
        screens=screens,
        path=PATH,
        name="kpi",
        title="Loopline · KPIs",
        layout=partial(layout, screens),
        live_ids=ids.KPI,
        stream=KpiStream,
    )
