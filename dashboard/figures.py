"""Figures as pure functions of the live state: ``state -> go.Figure``, no I/O.

Plotly cannot read CSS variables, so ``PALETTE`` repeats the few colours the figures
need; keep it in step with the variables in ``assets/loopline.css``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, tzinfo
from typing import Any

import plotly.graph_objects as go

from loopline.dashboard.i18n import NONE, fmt_int, label, t
from loopline.models.clock import parse_time

# Mirrors assets/loopline.css (:root).
PALETTE = {
    "text": "#e6edf3",
    "muted": "#8b98a5",
    "grid": "#26303b",
    "now": "#f2c14e",
    "wo.planned": "#3d7fd9",
    "wo.running": "#27b15b",
    "wo.done": "#4b5663",
}
STATUS_ORDER = ("done", "running", "planned")
ROW_HEIGHT_PX = 46
BASE_HEIGHT_PX = 90
UIREVISION = "gantt"
FONT_FAMILY = (
    '"Inter", "Segoe UI", system-ui, Roboto, "Noto Sans", "DejaVu Sans", '
    '"Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif'
)
# English uses Plotly's own date ticks (the date only where it changes); they have no
# Chinese month names, so Chinese gets an explicit format.
TICK_FORMAT = {"zh-CN": "%H:%M<br>%-m月%-d日"}


def _local(moment: datetime, tz: tzinfo | None) -> datetime:
    # plotly.js ignores offsets; hand it naive wall-clock times of the site.
    return moment.astimezone(tz).replace(tzinfo=None)


def gantt_figure(
    work_orders: Iterable[Mapping[str, Any]],
    lines: Iterable[Mapping[str, Any]],
    lang: str,
    *,
    now: datetime | None = None,
    tz: tzinfo | None = None,
) -> go.Figure:
    """A Gantt chart of planned work orders, one row per line, coloured by status."""
    lines = list(lines)
    names = {str(line["id"]): str(line.get("name") or line["id"]) for line in lines}
    order = [str(line["id"]) for line in lines]
    bars: dict[str, dict[str, list[Any]]] = {}
    for wo in work_orders:
        start = parse_time(wo.get("planned_start"))
        end = parse_time(wo.get("planned_end"))
        line_id = str(wo.get("line") or "")
        if start is None or end is None or end <= start or not line_id:
            continue
        if line_id not in names:
            names[line_id] = line_id
            order.append(line_id)
        status = str(wo.get("status") or "planned")
        bucket = bars.setdefault(
            status, {"y": [], "base": [], "x": [], "text": [], "custom": [], "ids": []}
        )
        bucket["y"].append(names[line_id])
        bucket["base"].append(_local(start, tz))
        bucket["x"].append((end - start).total_seconds() * 1000.0)
        bucket["text"].append(str(wo.get("id", "")))
        bucket["ids"].append(str(wo.get("id", "")))
        bucket["custom"].append(
            [
                str(wo.get("order_id") or NONE),
                str(wo.get("sku") or NONE),
                fmt_int(wo.get("qty")),
                _local(start, tz).strftime("%m-%d %H:%M"),
                _local(end, tz).strftime("%m-%d %H:%M"),
            ]
        )

    fig = go.Figure()
    hover = (
        f"<b>{t('gantt.wo', lang)} %{{text}}</b><br>"
        f"{t('gantt.order', lang)}: %{{customdata[0]}}<br>"
        f"{t('gantt.sku', lang)}: %{{customdata[1]}} × %{{customdata[2]}}<br>"
        f"{t('gantt.start', lang)}: %{{customdata[3]}}<br>"
        f"{t('gantt.end', lang)}: %{{customdata[4]}}<extra></extra>"
    )
    statuses = [s for s in STATUS_ORDER if s in bars] + sorted(set(bars) - set(STATUS_ORDER))
    for status in statuses:
        b = bars[status]
        fig.add_trace(
            go.Bar(
                name=label("wo", status, lang),
                orientation="h",
                y=b["y"],
                base=b["base"],
                x=b["x"],
                text=b["text"],
                ids=b["ids"],
                customdata=b["custom"],
                textposition="inside",
                insidetextanchor="middle",
                textfont={"color": "#ffffff", "size": 12},
                marker={
                    "color": PALETTE.get(f"wo.{status}", PALETTE["wo.planned"]),
                    "line": {"width": 1, "color": "rgba(0,0,0,0.35)"},
                },
                hovertemplate=hover,
            )
        )

    rows = [names[i] for i in order]
    fig.update_layout(
        uirevision=UIREVISION,
        barmode="overlay",
        height=BASE_HEIGHT_PX + ROW_HEIGHT_PX * max(len(rows), 1),
        margin={"l": 10, "r": 16, "t": 10, "b": 30},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        font={"color": PALETTE["text"], "size": 13, "family": FONT_FAMILY},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1, "xanchor": "right"},
        bargap=0.3,
        # A label that does not fit its bar is hidden, not shrunk to an unreadable size
        # (the hover still names the work order).
        uniformtext={"minsize": 11, "mode": "hide"},
        hoverlabel={"font": {"size": 13}},
        xaxis={
            "type": "date",
            "gridcolor": PALETTE["grid"],
            "zeroline": False,
            "tickformat": TICK_FORMAT.get(lang, ""),
        },
        yaxis={
            "type": "category",
            "categoryorder": "array",
            "categoryarray": list(reversed(rows)),
            "range": [-0.5, max(len(rows), 1) - 0.5],
            "gridcolor": PALETTE["grid"],
            "automargin": True,
        },
    )
    if now is not None:
        x_now = _local(now, tz)
        fig.add_shape(
            type="line",
            xref="x",
            yref="paper",
            x0=x_now,
            x1=x_now,
            y0=0,
            y1=1,
            line={"color": PALETTE["now"], "width": 2, "dash": "dot"},
        )
        fig.add_annotation(
            x=x_now,
            y=1,
            xref="x",
            yref="paper",
            text=t("gantt.now", lang),
            showarrow=False,
            yanchor="bottom",
            font={"color": PALETTE["now"], "size": 12},
        )
    if not bars:
        fig.add_annotation(
            text=t("gantt.empty", lang),
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            showarrow=False,
            font={"color": PALETTE["muted"], "size": 16},
        )
    return fig


def gantt_signature(work_orders: Iterable[Mapping[str, Any]]) -> str:
    """What the Gantt depends on, as a short string: equal strings draw the same bars."""
    keys = ("id", "line", "planned_start", "planned_end", "status", "order_id", "sku", "qty")
    rows = sorted([str(wo.get(k)) for k in keys] for wo in work_orders)
    return hashlib.sha1(json.dumps(rows).encode(), usedforsecurity=False).hexdigest()


# The six big losses' colours on the Pareto (mirrors the state colours of loopline.css).
LOSS_COLOURS = {
    "breakdown": "#ef4444",
    "setup": "#f59e0b",
    "small_stop": "#5b7fa6",
    "slow_cycle": "#a78bfa",
    "startup_reject": "#14b8a6",
    "production_reject": "#0ea5e9",
    "unexplained": "#8b98a5",
}


def pareto_figure(rows: Iterable[Mapping[str, Any]], lang: str) -> go.Figure:
    """A Pareto of downtime: minutes per reason as bars, largest first, coloured by loss,
    and the cumulative share as a line on a 0-100 % axis (``models.oee.downtime_pareto``)."""
    rows = list(rows)
    names = [
        f"{r['code']} · {r.get('name') or ''}"
        if r.get("code")
        else label("loss", "unexplained", lang)
        for r in rows
    ]
    minutes = [round(float(r["seconds"]) / 60, 1) for r in rows]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            name=t("andon.minutes", lang),
            x=names,
            y=minutes,
            text=[f"{m:g}" for m in minutes],
            textposition="outside",
            marker={
                "color": [LOSS_COLOURS.get(str(r.get("loss")), PALETTE["muted"]) for r in rows]
            },
            hovertemplate="%{x}<br>%{y} " + t("andon.minutes", lang) + "<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            name=t("andon.cumulative", lang),
            x=names,
            y=[round(float(r["cumulative"]) * 100, 1) for r in rows],
            yaxis="y2",
            mode="lines+markers",
            line={"color": PALETTE["now"], "width": 2},
            hovertemplate="%{y} %<extra></extra>",
        )
    )
    fig.update_layout(
        uirevision="pareto",
        height=360,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        font={"color": PALETTE["text"], "size": 13, "family": FONT_FAMILY},
        showlegend=False,
        xaxis={"type": "category", "automargin": True},
        yaxis={"title": t("andon.minutes", lang), "gridcolor": PALETTE["grid"],
               "rangemode": "tozero"},
        yaxis2={"overlaying": "y", "side": "right", "range": [0, 105],
                "tickvals": [0, 20, 40, 60, 80, 100],
                "ticktext": [f"{v} %" for v in (0, 20, 40, 60, 80, 100)],
                "showgrid": False},
    )  # fmt: skip
    if not rows:
        fig.add_annotation(
            text=t("andon.pareto_empty", lang),
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            showarrow=False,
            font={"color": PALETTE["muted"], "size": 16},
        )
    return fig
