"""``/orders/<id>``: one order, phone first — where it stands, its work orders, the
promises made, why it is at risk, and its timeline from the audit log.

Opened by tapping an order in the lookup (``/orders``). Read through the same read model
as ``GET /api/v1/orders/{id}`` (``models/views.py``) plus the order's follow-up tasks; a
screen without a database shows what the live state knows (no history).
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import partial
from typing import Any

import dash
from dash import dcc, html

from loopline.dashboard.components import nav_bar
from loopline.dashboard.i18n import (
    MESSAGES,
    NONE,
    fmt_date,
    fmt_eta,
    label,
    normalize_lang,
    risk_text,
    t,
)
from loopline.dashboard.live_push import Screens, outage_notice
from loopline.dashboard.pages.orders import PATH as ORDERS_PATH
from loopline.dashboard.pages.orders import progress_bar
from loopline.models.followup import list_tasks
from loopline.models.scope import acting_scope, visible_orders
from loopline.models.views import get_order

PATH_TEMPLATE = f"{ORDERS_PATH}/<order_id>"
TIMELINE_MAX = 60


def read_detail(screens: Screens, order_id: str) -> dict[str, Any] | None:
    """The order's view (with history and follow-up tasks), or None when unknown.

    Without a database, what the live state has (no history, no tasks).
    """
    if screens.sessions is not None:
        with screens.sessions() as session:
            scope = acting_scope()  # a sales rep sees only their customers' orders
            if scope is not None and order_id not in visible_orders(session, scope):
                return None
            view = get_order(session, screens.live, order_id=order_id)
            if view is None:
                return None
            view["tasks"] = list_tasks(session, order_id=order_id, status=None)
            view["from_records"] = True
            return view
    lv = screens.live.get("order", order_id)
    if lv is None:
        return None
    wo_ids = [str(w) for w in lv.get("work_orders") or []]
    wos = []
    for wo_id, lw in zip(wo_ids, screens.live.get_many("work_order", wo_ids), strict=True):
        lw = lw or {}
        wos.append(
            {
                "id": wo_id,
                "line": lw.get("line"),
                "product": lw.get("sku"),
                "qty": lw.get("qty") or 0,
                "good": lw.get("good") or 0,
                "scrap": lw.get("scrap") or 0,
                "status": lw.get("status"),
                "planned_start": lw.get("planned_start"),
                "planned_end": lw.get("planned_end"),
                "eta": lw.get("eta"),
            }
        )
    return {
        "id": order_id,
        "customer": {"id": lv.get("customer_id"), "name": lv.get("customer")},
        "status": lv.get("status"),
        "priority": lv.get("priority"),
        "requested_date": lv.get("requested_date"),
        "promised_date": lv.get("promised_date"),
        "eta": lv.get("eta"),
        "progress": lv.get("progress") or 0.0,
        "risk": {"level": lv.get("risk"), "reason": lv.get("risk_reason")},
        "risk_cause": lv.get("risk_cause"),
        "work_orders": wos,
        "history": [],
        "tasks": [],
        "from_records": False,
    }


_RULE_MET = re.compile(r"requested date met with ([0-9.]+) h margin")


def rule_text(rule: str | None, lang: str) -> str:
    """The planner's promise rule (models/replan.py, ``promise_for``) in ``lang``."""
    if not rule:
        return ""
    if met := _RULE_MET.fullmatch(rule):
        return t("promise_rule.requested", lang, h=met.group(1))
    if rule == "earliest safe date":
        return t("promise_rule.earliest", lang)
    if rule.startswith("earliest safe date (requested date not met"):
        return t("promise_rule.earliest_missed", lang)
    return rule


def action_text(action: str, lang: str) -> str:
    """An audit action in words (the code itself when there are none)."""
    key = f"action.{action}"
    return t(key, lang) if key in MESSAGES else action


def _section(title: str, children: list[Any], class_name: str) -> html.Section:
    return html.Section(
        [html.H2(title, className="detail-h2"), *children], className=f"panel {class_name}"
    )


def render_work_orders(
    view: dict[str, Any], lang: str, *, screens: Screens, now: datetime
) -> list[Any]:
    items = []
    for wo in view.get("work_orders") or []:
        qty, good = int(wo.get("qty") or 0), int(wo.get("good") or 0)
        planned = t(
            "detail.planned",
            lang,
            start=fmt_eta(wo.get("planned_start"), lang, tz=screens.tz, now=now),
            end=fmt_eta(wo.get("planned_end"), lang, tz=screens.tz, now=now),
        )
        scrap = int(wo.get("scrap") or 0)
        items.append(
            html.Li(
                [
                    html.Div(
                        [
                            html.Span(str(wo.get("id")), className="order-id"),
                            html.Span(str(wo.get("line") or NONE), className="wo-line"),
                            html.Span(str(wo.get("product") or ""), className="wo-product"),
                            html.Span(label("wo", wo.get("status"), lang), className="wo-status"),
                        ],
                        className="wo-head",
                    ),
                    progress_bar(min(1.0, good / qty) if qty else 0.0),
                    html.Div(
                        " · ".join(
                            [t("detail.made", lang, good=f"{good:,}", qty=f"{qty:,}")]
                            + ([t("detail.scrap", lang, n=f"{scrap:,}")] if scrap else [])
                            + [planned]
                        ),
                        className="wo-meta",
                    ),
                ],
                className="wo",
            )
        )
    return [html.Ul(items, className="wos")] if items else [html.Div(NONE, className="table-empty")]


def render_promises(
    view: dict[str, Any], lang: str, *, screens: Screens, now: datetime
) -> list[Any]:
    promised = [h for h in view.get("history") or [] if h.get("action") == "order.promised"]
    if not promised:
        return [html.Div(t("detail.promises.none", lang), className="table-empty")]
    items = []
    today = now.astimezone(screens.tz).date()
    for h in reversed(promised):
        d = h.get("details") or {}
        day = fmt_date(d.get("new"), lang, today=today)
        text = (
            t(
                "detail.promise.moved",
                lang,
                old=fmt_date(d.get("old"), lang, today=today),
                new=day,
            )
            if d.get("old")
            else t("detail.promise", lang, day=day)
        )
        items.append(
            html.Li(
                [
                    html.Span(text, className="promise-day"),
                    html.Span(
                        fmt_eta(screens.shown(h.get("at")), lang, tz=screens.tz, now=now),
                        className="tl-at",
                    ),
                    html.Div(rule_text(d.get("rule"), lang), className="tl-detail"),
                ],
                className="promise",
            )
        )
    return [html.Ul(items, className="promises")]


def render_timeline(
    view: dict[str, Any], lang: str, *, screens: Screens, now: datetime
) -> list[Any]:
    if not view.get("from_records"):
        return [html.Div(t("detail.no_db", lang), className="table-empty")]
    history = list(reversed(view.get("history") or []))[:TIMELINE_MAX]
    if not history:
        return [html.Div(t("detail.timeline.none", lang), className="table-empty")]
    return [
        html.Ol(
            [
                html.Li(
                    [
                        html.Span(action_text(str(h.get("action")), lang), className="tl-action"),
                        html.Span(
                            fmt_eta(screens.shown(h.get("at")), lang, tz=screens.tz, now=now),
                            className="tl-at",
                        ),
                        html.Div(t("detail.by", lang, who=h.get("actor")), className="tl-detail"),
                    ],
                    className=f"tl tl--{str(h.get('action')).replace('.', '-')}",
                )
                for h in history
            ],
            className="timeline",
        )
    ]


def render_tasks(view: dict[str, Any], lang: str, *, screens: Screens, now: datetime) -> list[Any]:
    return [
        html.Ul(
            [
                html.Li(
                    [
                        html.Span(t(f"task.{task['kind']}", lang), className="tl-action"),
                        html.Span(
                            label("task", task["status"], lang),
                            className=f"badge badge--task-{task['status']}",
                        ),
                        html.Span(task.get("assignee") or NONE, className="tl-at"),
                        html.Div(
                            " · ".join(
                                x
                                for x in (
                                    t("task.score", lang, score=task["score"])
                                    if task.get("score") is not None
                                    else "",
                                    task.get("note") or "",
                                )
                                if x
                            ),
                            className="tl-detail",
                        ),
                    ],
                    className="task",
                )
                for task in view.get("tasks") or []
            ],
            className="tasks",
        )
    ]


def render_detail(view: dict[str, Any], lang: str, *, screens: Screens, now: datetime) -> list[Any]:
    """Everything about one order, top to bottom in the order a sales rep asks."""
    today = now.astimezone(screens.tz).date()
    risk = view.get("risk") or {}
    level = str(risk.get("level") or "on_track")
    reason = risk_text(
        {
            "risk_cause": view.get("risk_cause"),
            "risk_reason": risk.get("reason"),
            "eta": view.get("eta"),
            "promised_date": view.get("promised_date"),
        },
        lang,
    )
    customer = view.get("customer") or {}
    facts = [
        ("requested", fmt_date(view.get("requested_date"), lang, today=today)),
        ("promised", fmt_date(view.get("promised_date"), lang, today=today)),
        ("eta", fmt_eta(view.get("eta"), lang, tz=screens.tz, now=now)),
    ]
    head = html.Section(
        className=f"panel detail-head order-row order-row--{level}",
        children=[
            html.Div(
                [
                    html.H1(str(view["id"]), className="order-id detail-id"),
                    html.Span(label("status", view.get("status"), lang), className="order-status"),
                    html.Span(label("risk", level, lang), className=f"badge badge--{level}"),
                ],
                className="order-card-head",
            ),
            html.Div(str(customer.get("name") or ""), className="cell-customer detail-customer"),
            html.Dl(
                [
                    html.Div([html.Dt(t(f"col.{k}", lang)), html.Dd(v)], className=f"fact--{k}")
                    for k, v in facts
                ],
                className="order-facts",
            ),
            progress_bar(float(view.get("progress") or 0.0)),
            html.Div(reason, className="risk-reason detail-reason") if reason else None,
        ],
    )
    sections: list[Any] = [head]
    sections.append(
        _section(
            t("detail.work_orders", lang),
            render_work_orders(view, lang, screens=screens, now=now),
            "detail-wos",
        )
    )
    sections.append(
        _section(
            t("detail.promises", lang),
            render_promises(view, lang, screens=screens, now=now),
            "detail-promises",
        )
    )
    if view.get("tasks"):
        sections.append(
            _section(
                t("detail.followups", lang),
                render_tasks(view, lang, screens=screens, now=now),
                "detail-tasks",
            )
        )
    sections.append(
        _section(
            t("detail.timeline", lang),
            render_timeline(view, lang, screens=screens, now=now),
            "detail-timeline",
        )
    )
    return sections


def layout(
    screens: Screens, order_id: str | None = None, lang: str | None = None, **_query: Any
) -> html.Div:
    """The detail page of ``order_id``."""
    lang = normalize_lang(lang, screens.default_lang)
    now = screens.now()
    order_id = order_id or ""
    reading = screens.last_good.read(
        ("order", order_id), lambda: read_detail(screens, order_id), now
    )
    notice = outage_notice(reading, lang, screens.tz)
    view = reading.value
    if view is None:
        content: list[Any] = [
            html.Div(
                notice or t("detail.none", lang, id=order_id), className="table-empty detail-none"
            )
        ]
    else:
        content = render_detail(view, lang, screens=screens, now=now)
        if notice:
            content.insert(0, html.Div(notice, className="stale-note", role="status"))
    return html.Div(
        lang=lang,
        className=f"page page--desk page--order lang-{lang}",
        children=[
            nav_bar("orders", lang),
            html.Main(
                className="desk detail",
                children=[
                    dcc.Link(
                        t("detail.back", lang), href=f"{ORDERS_PATH}?lang={lang}", className="back"
                    ),
                    *content,
                ],
            ),
        ],
    )


def register(app: dash.Dash, screens: Screens) -> None:
    """Register the detail page on ``app``."""
    dash.register_page(
        __name__,
        path_template=PATH_TEMPLATE,
        title="Loopline · Order",
        name="order",
        layout=partial(layout, screens),
    )
