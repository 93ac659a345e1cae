"""The KPI screen's charts as pure functions of the KPI report (``models/kpi.py``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import plotly.graph_objects as go

from loopline.dashboard.figures import FONT_FAMILY, PALETTE
from loopline.dashboard.i18n import fmt_day, t

TREND_HEIGHT_PX = 150
WIDE_HEIGHT_PX = 260
# Mirrors assets/loopline.css: the trend colour of a figure where higher is better, and of
# one where lower is; the lines' colours follow one another.
COLOURS = {"higher": "#22c55e", "lower": "#3b82f6", "critical": "#ef4444", "other": "#f59e0b"}
LINE_COLOURS = ("#3b82f6", "#22c55e", "#f59e0b", "#a855f7", "#ef4444", "#14b8a6", "#eab308")
GRAPH_CONFIG: Any = {"displayModeBar": False}
MAX_TICKS = 5  # week labels under a chart; the others are in the hover


def week_labels(weeks: Sequence[str], lang: str, today: date | None = None) -> list[str]:
    """Each week's Monday as a short date (``2 Nov`` / ``11月2日``)."""
    return [
        fmt_day(date.fromisoformat(w), lang, today=today or date.fromisoformat(w)) for w in weeks
    ]


def _ticks(labels: Sequence[str]) -> dict[str, Any]:
    """At most ``MAX_TICKS`` week labels, evenly spread, the newest always shown."""
    step = max(1, -(-len(labels) // MAX_TICKS))
    shown = list(labels[::-1][::step])[::-1]
    return {"tickmode": "array", "tickvals": shown, "ticktext": shown}


def _base(fig: go.Figure, height: int, *, unit: str = "", legend: bool = False) -> go.Figure:
    fig.update_layout(
        height=height,
        margin={"l": 36, "r": 8, "t": 8 if not legend else 30, "b": 28},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        font={"color": PALETTE["text"], "size": 12, "family": FONT_FAMILY},
        showlegend=legend,
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0, "xanchor": "left"},
        hoverlabel={"font": {"size": 13}},
        xaxis={"type": "category", "gridcolor": PALETTE["grid"], "tickangle": 0},
        yaxis={
            "gridcolor": PALETTE["grid"],
            "zeroline": False,
            "ticksuffix": "%" if unit == "pct" else "",
            "rangemode": "tozero",
        },
        bargap=0.25,
    )
    return fig


def trend_figure(kpi: Mapping[str, Any], weeks: Sequence[str], lang: str) -> go.Figure:
    """One KPI's weekly values as bars (weeks with nothing to measure are left empty)."""
    labels = week_labels(weeks, lang)
    values = [p.get("value") for p in kpi.get("trend") or []]
    counts = [p.get("count") for p in kpi.get("trend") or []]
    colour = COLOURS.get(str(kpi.get("better")), COLOURS["higher"])
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=values,
            customdata=counts,
            marker={"color": colour},
            hovertemplate="%{x}: %{y}<br>n = %{customdata}<extra></extra>",
        )
    )
    fig = _base(fig, TREND_HEIGHT_PX, unit=str(kpi.get("unit") or ""))
    fig.update_xaxes(**_ticks(labels))
    if kpi.get("unit") == "pct":
        fig.update_yaxes(range=[0, 100])
    return fig


def lines_figure(oee: Mapping[str, Any], weeks: Sequence[str], lang: str) -> go.Figure:
    """Each line's weekly OEE (or availability) as a line of its own."""
    labels = week_labels(weeks, lang)
    fig = go.Figure()
    for i, line in enumerate(oee.get("lines") or []):
        fig.add_trace(
            go.Scatter(
                x=labels,
                y=[p.get("value") for p in line.get("trend") or []],
                name=str(line.get("line")),
                mode="lines+markers",
                line={"color": LINE_COLOURS[i % len(LINE_COLOURS)], "width": 2},
                connectgaps=False,
                hovertemplate=f"{line.get('line')} · %{{x}}: %{{y}}%<extra></extra>",
            )
        )
    fig = _base(fig, WIDE_HEIGHT_PX, unit="pct", legend=True)
    fig.update_xaxes(**_ticks(labels))
    fig.update_yaxes(range=[0, 101], rangemode="normal")
    return fig


def age_figure(buckets: Sequence[Mapping[str, Any]], lang: str) -> go.Figure:
    """The open alerts by age, critical ones stacked under the others."""
    labels = [t(f"kpi.age.{b.get('bucket')}", lang) for b in buckets]
    critical = [int(b.get("critical") or 0) for b in buckets]
    other = [int(b.get("count") or 0) - c for b, c in zip(buckets, critical, strict=True)]
    fig = go.Figure(
        [
            go.Bar(
                x=labels,
                y=critical,
                name=t("kpi.age.critical", lang),
                marker={"color": COLOURS["critical"]},
            ),
            go.Bar(
                x=labels, y=other, name=t("kpi.age.other", lang), marker={"color": COLOURS["other"]}
            ),
        ]
    )
    fig = _base(fig, WIDE_HEIGHT_PX, legend=True)
    fig.update_layout(barmode="stack")
    fig.update_yaxes(dtick=1 if max([*critical, *other, 0]) < 8 else None)
    return fig
