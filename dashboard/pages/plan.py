"""``/plan``: what the planners decide on — changes waiting for a production manager,
material to buy, and what the latest replan moved and why.

Read from the records through the same functions the REST routes call (``/changes``,
``/purchase-requests``, ``/plan``). Each section is redrawn when what it shows changed:
when a plan or a change (parked, or decided here or elsewhere) is announced on the live
channel, and at the stream's regular resync as a safety net.
Approve and Reject go through the API with the signed-in browser's cookie, like the alert
panel's Acknowledge, so the API's roles decide and its refusal is shown as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import date, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import dash
from dash import ALL, ClientsideFunction, Input, Output, State, dcc, html, set_props
from dash.exceptions import PreventUpdate

from loopline.dashboard import ids
from loopline.dashboard.components import live_frame, nav_bar, panel_head
from loopline.dashboard.i18n import (
    MESSAGES,
    NONE,
    fmt_date,
    fmt_eta,
    fmt_int,
    label,
    normalize_lang,
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
from loopline.models.live import Change
from loopline.models.plan_view import PlanChanges, PlanPage, read_plan_page
from loopline.models.scope import acting_scope

if TYPE_CHECKING:
    pass

log = logging.getLogger("loopline.dashboard.plan")

PATH = "/plan"
APPROVALS_PATH = "/approvals"  # the contract's name for it (DESIGN.md, Screens)
KEY = "change"
MAX_ROWS = 30  # rows per table before "and N more"
MIN_REDRAW_S = 1.0  # a burst of announcements is read once
WANTED = frozenset({"plan", "change"})  # purchase requests come with each plan
SECTIONS = (ids.PLAN_CHANGES, ids.PLAN_REQUESTS, ids.PLAN_REVISION)
DECISION_STATUS = {"approve": "approved", "reject": "rejected"}

# What the page reads, section by section (the read model's shape).
Data = PlanPage


def section_data(data: Data | None) -> dict[str, Any]:
    """What each section shows, by its component id."""
    if data is None:
        return {}
    return {
        ids.PLAN_CHANGES: data["changes"],
        ids.PLAN_REQUESTS: data["requests"],
        ids.PLAN_REVISION: data["plan"],
    }


def signatures(data: Data | None, today: date) -> dict[str, str]:
    """A fingerprint of each section's content; a section is redrawn when it changes.

    The day is part of it: "tomorrow 06:10" reads differently after midnight.
    """
    out = {}
    for section, content in section_data(data).items():
        raw = json.dumps([content, today.isoformat()], sort_keys=True, default=str)
        out[section] = hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()
    return out


# -- views -----------------------------------------------------------------------------
def fmt_qty(qty: float | int | None) -> str:
    """A quantity: whole numbers with separators, else one decimal."""
    if qty is None:
        return NONE
    return fmt_int(qty) if float(qty).is_integer() else f"{float(qty):,.1f}"


def fmt_h(hours: float | None, *, signed: bool = False) -> str:
    """Hours with one decimal (``+3.5 h`` when ``signed``)."""
    if hours is None:
        return NONE
    return f"{hours:+.1f} h" if signed else f"{hours:.1f} h"


def fmt_lines(lines: Sequence[dict[str, Any]] | None) -> str:
    """An order's items: ``1,500 × P2, 200 × P1``."""
    if not lines:
        return NONE
    return ", ".join(f"{fmt_qty(ln.get('qty'))} × {ln.get('sku')}" for ln in lines)


def change_facts(change: dict[str, Any]) -> list[dict[str, Any]]:
    """What a change changes, field by field: ``{"field", "before", "after"}``.

    ``before`` is None for a new order; fields the change leaves alone are left out.
    Values stay raw (dates as ISO, priorities as codes) for the page to word.
    """
    event = change.get("event") or {}
    order = event.get("order") or {}
    if event.get("type") == "order.cancelled":
        return [{"field": "cancel", "before": None, "after": None}]
    current = change.get("current")
    after = {
        "customer": (order.get("customer") or {}).get("name"),
        "lines": fmt_lines(order.get("lines")),
        "requested_date": order.get("requested_date"),
        "priority": order.get("priority") or "normal",
    }
    if current is None:
        return [{"field": k, "before": None, "after": v} for k, v in after.items()]
    before = {
        "customer": (current.get("customer") or {}).get("name"),
        "lines": fmt_lines(current.get("lines")),
        "requested_date": current.get("requested_date"),
        "priority": current.get("priority") or "normal",
    }
    return [
        {"field": k, "before": before[k], "after": v} for k, v in after.items() if before[k] != v
    ]


def decision_message(result: dict[str, Any] | None, lang: str) -> tuple[str, str]:
    """What the API answered to Approve or Reject, worded: ``(text, className)``.

    A refusal (403: the signed-in role may not decide) shows the API's own reason.
    """
    if not result:
        return "", "decision decision--none"
    body: dict[str, Any] = result["body"] if isinstance(result.get("body"), dict) else {}
    detail = body.get("detail")
    detail_text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)
    change_id = result.get("change")
    status = int(result.get("status") or 0)
    if 200 <= status < 300:
        decided = str(body.get("status") or DECISION_STATUS.get(str(result.get("action")), ""))
        text = t(
            "plan.result.ok",
            lang,
            id=change_id,
            order=body.get("order_id") or NONE,
            status=label("change", decided, lang),
        )
        return text, f"decision decision--ok decision--{decided}"
    if status == 403:
        return t("plan.result.forbidden", lang, detail=detail_text), "decision decision--refused"
    if status == 401:
        return t("plan.result.signed_out", lang), "decision decision--refused"
    if status == 503:  # a store is down (the body names it); nothing was decided
        return t("plan.result.unavailable", lang, id=change_id), "decision decision--refused"
    if status == 0:
        return t("plan.result.offline", lang, id=change_id, detail=detail_text), (
            "decision decision--refused"
        )
    return t("plan.result.failed", lang, id=change_id, status=status, detail=detail_text), (
        "decision decision--refused"
    )


def plan_cause_text(
    cause: dict[str, Any] | None, reason: str | None, lang: str, *, screens: Screens, now: datetime
) -> str:
    """Why a job is late or at risk, worded from its ``cause`` (its ``reason`` otherwise)."""
    cause = dict(cause or {})
    key = f"plan_cause.{cause.get('kind')}"
    if key not in MESSAGES:
        return str(reason or NONE)
    if cause.get("until"):
        cause["until"] = fmt_eta(str(cause["until"]), lang, tz=screens.tz, now=now)
    try:
        # ``kind`` goes along so the template is always filled: a missing field raises.
        text = t(key, lang, **cause)
    except (KeyError, IndexError):
        return str(reason or NONE)
    if cause.get("kind") == "line_down" and cause.get("reason"):
        text = f"{text} ({cause['reason']})"
    if cause.get("kind") == "material" and cause.get("short"):
        text = f"{text} · {t('plan_cause.short', lang)}"
    return text


# -- rendering -------------------------------------------------------------------------
def _more(n_hidden: int, lang: str, cols: int) -> list[html.Tr]:
    if n_hidden <= 0:
        return []
    return [html.Tr(html.Td(t("plan.more", lang, n=n_hidden), colSpan=cols, className="more"))]


def _table(
    head: list[str], rows: list[Any], class_name: str, *, num: tuple[int, ...] = ()
) -> html.Table:
    """A table; the ``num`` columns hold numbers (their heads align with them)."""
    cells = [html.Th(h, className="th-num" if i in num else None) for i, h in enumerate(head)]
    return html.Table(
        [html.Thead(html.Tr(cells)), html.Tbody(rows)], className=f"table {class_name}"
    )


def _fact_value(field: str, value: Any, lang: str, today: date) -> str:
    if field == "requested_date":
        return fmt_date(value, lang, today=today)
    if field == "priority":
        return label("priority", value, lang)
    return str(value) if value not in (None, "") else NONE


def render_facts(change: dict[str, Any], lang: str, today: date) -> html.Ul:
    """What the change changes, one line per field."""
    facts = change_facts(change)
    items: list[Any] = []
    if change.get("current") is None and facts and facts[0]["field"] != "cancel":
        items.append(html.Li(t("plan.change.new_order", lang), className="fact fact--new"))
    for f in facts:
        if f["field"] == "cancel":
            items.append(html.Li(t("plan.change.cancel", lang), className="fact fact--cancel"))
            continue
        value: list[Any] = []
        if f["before"] is not None:
            value += [
                html.Span(_fact_value(f["field"], f["before"], lang, today), className="before"),
                html.Span("→", className="arrow"),
            ]
        value.append(html.Span(_fact_value(f["field"], f["after"], lang, today), className="after"))
        items.append(
            html.Li(
                [html.Span(t(f"plan.field.{f['field']}", lang), className="fact-label"), *value],
                className="fact",
            )
        )
    if not facts:
        items.append(html.Li(t("plan.change.unchanged", lang), className="fact"))
    return html.Ul(items, className="facts")


def render_impact(
    impact: list[dict[str, Any]], lang: str, *, screens: Screens, now: datetime
) -> list[Any]:
    """Whose promise breaks, by how much: a headline and a table."""
    if not impact:
        return []
    today = now.astimezone(screens.tz).date()
    worst = max(float(i.get("slip_h") or 0.0) for i in impact)
    headline = (
        t("plan.impact.one", lang, h=f"{worst:.1f}")
        if len(impact) == 1
        else t("plan.impact", lang, n=len(impact), h=f"{worst:.1f}")
    )
    rows = [
        html.Tr(
            [
                html.Td(html.Span(str(i["order_id"]), className="order-id")),
                html.Td(str(i.get("customer") or NONE), className="cell-customer"),
                html.Td(fmt_date(i.get("promised_date"), lang, today=today), className="cell-date"),
                html.Td(
                    [
                        html.Span(
                            fmt_eta(i.get("planned_end_before"), lang, tz=screens.tz, now=now),
                            className="before",
                        ),
                        html.Span("→", className="arrow"),
                        html.Span(
                            fmt_eta(i.get("planned_end_after"), lang, tz=screens.tz, now=now),
                            className="after",
                        ),
                    ],
                    className="cell-date",
                ),
                html.Td(fmt_h(i.get("delay_h"), signed=True), className="cell-num"),
                html.Td(fmt_h(i.get("slip_h"), signed=True), className="cell-num cell-num--bad"),
            ]
        )
        for i in impact[:MAX_ROWS]
    ]
    head = [
        t("col.order", lang),
        t("col.customer", lang),
        t("col.promised", lang),
        t("plan.col.planned_end", lang),
        t("plan.col.delay", lang),
        t("plan.col.slip", lang),
    ]
    return [
        html.Div(headline, className="impact-headline"),
        _table(
            head, rows + _more(len(impact) - MAX_ROWS, lang, len(head)), "table--impact", num=(4, 5)
        ),
    ]


def render_change(change: dict[str, Any], lang: str, *, screens: Screens, now: datetime) -> html.Li:
    """One pending change: the order, what changes, who asked when, the impact, buttons."""
    change_id = str(change["id"])
    today = now.astimezone(screens.tz).date()
    order = (change.get("event") or {}).get("order") or {}
    priority = str(order.get("priority") or "normal")
    received = t(
        "plan.change.received",
        lang,
        when=fmt_eta(screens.shown(change.get("created_at")), lang, tz=screens.tz, now=now),
        source=change.get("source") or NONE,
    )
    who = [t("plan.change.by", lang, who=order["sales_rep"])] if order.get("sales_rep") else []
    return html.Li(
        id=ids.part(ids.CHANGE, KEY, change_id),
        className="change",
        children=[
            html.Div(
                [
                    html.Div(
                        [
                            html.Span(str(change["order_id"]), className="order-id change-order"),
                            html.Span(
                                label("priority", priority, lang),
                                className=f"prio prio--{priority}",
                            ),
                            html.Span(
                                t("plan.change.version", lang, v=change.get("version")),
                                className="change-version",
                            ),
                        ],
                        className="change-title",
                    ),
                    html.Div(
                        " · ".join([t("plan.change.title", lang, id=change_id), received, *who]),
                        className="change-meta",
                    ),
                ],
                className="change-head",
            ),
            render_facts(change, lang, today),
            *render_impact(change.get("impact") or [], lang, screens=screens, now=now),
            html.Div(
                [
                    html.Button(
                        t("plan.approve", lang),
                        id=ids.part(ids.CHANGE_APPROVE, KEY, change_id),
                        className="btn btn--approve",
                        n_clicks=0,
                    ),
                    html.Button(
                        t("plan.reject", lang),
                        id=ids.part(ids.CHANGE_REJECT, KEY, change_id),
                        className="btn btn--reject",
                        n_clicks=0,
                    ),
                ],
                className="change-actions",
            ),
        ],
    )


def render_decided(
    decided: list[dict[str, Any]], lang: str, *, screens: Screens, now: datetime
) -> list[Any]:
    """The changes decided lately: status, by whom, when, and the note."""
    if not decided:
        return []
    items = []
    for c in decided:
        status = str(c.get("status"))
        text = t(
            "plan.decided.by",
            lang,
            status=label("change", status, lang),
            who=c.get("decided_by") or NONE,
            when=fmt_eta(screens.shown(c.get("decided_at")), lang, tz=screens.tz, now=now),
        )
        items.append(
            html.Li(
                [
                    html.Span(label("change", status, lang), className=f"badge badge--{status}"),
                    html.Span(str(c["order_id"]), className="order-id"),
                    html.Span(f"#{c['id']}", className="decided-no"),
                    html.Span(text, className="decided-by"),
                    html.Span(str(c.get("note") or ""), className="decided-note"),
                ],
                className="decided-item",
            )
        )
    return [
        html.H3(t("plan.decided", lang), className="sub-head"),
        html.Ul(items, className="decided"),
    ]


def render_changes(
    content: PlanChanges, lang: str, *, screens: Screens, now: datetime
) -> list[Any]:
    """The changes section: a count, the pending changes, then the ones decided lately."""
    pending = content.get("pending") or []
    body: list[Any] = [
        html.Div(t("plan.changes.count", lang, n=len(pending)), className="panel-count")
    ]
    if pending:
        body.append(
            html.Ul(
                [render_change(c, lang, screens=screens, now=now) for c in pending],
                className="changes",
            )
        )
    else:
        body.append(html.Div(t("plan.changes.empty", lang), className="table-empty"))
    return body + render_decided(content.get("decided") or [], lang, screens=screens, now=now)


def render_requests(
    requests: list[dict[str, Any]], lang: str, *, screens: Screens, now: datetime
) -> list[Any]:
    """The purchase requests: what to buy, how much, by when, and who waits for it."""
    count = html.Div(t("plan.requests.count", lang, n=len(requests)), className="panel-count")
    if not requests:
        return [count, html.Div(t("plan.requests.empty", lang), className="table-empty")]
    rows = []
    for pr in requests[:MAX_ROWS]:
        late_h = float(pr.get("late_by_h") or 0.0)
        waiting = [
            html.Div(
                [
                    html.Span(str(j["job"]), className="job-id"),
                    html.Span(f" · {j['order']}" if j.get("order") else "", className="job-order"),
                ]
            )
            for j in pr.get("jobs") or []
        ]
        rows.append(
            html.Tr(
                className="pr-row pr-row--late" if late_h > 0 else "pr-row",
                children=[
                    html.Td(
                        [
                            html.Span(str(pr["material"]), className="order-id"),
                            html.Div(str(pr.get("name") or ""), className="pr-name"),
                        ]
                    ),
                    html.Td(
                        f"{fmt_qty(pr.get('qty'))} {pr.get('unit') or ''}".strip(),
                        className="cell-num",
                    ),
                    html.Td(
                        fmt_eta(pr.get("needed_by"), lang, tz=screens.tz, now=now),
                        className="cell-date",
                    ),
                    html.Td(
                        [
                            html.Div(
                                fmt_eta(
                                    pr.get("arrives_if_ordered_now"), lang, tz=screens.tz, now=now
                                ),
                                className="cell-date",
                            ),
                            html.Span(
                                t("plan.late_by", lang, h=f"{late_h:.1f}")
                                if late_h > 0
                                else t("plan.in_time", lang),
                                className="badge badge--late"
                                if late_h > 0
                                else "badge badge--on_track",
                            ),
                        ]
                    ),
                    html.Td(waiting, className="cell-waiting"),
                ],
            )
        )
    head = [
        t("plan.col.material", lang),
        t("plan.col.qty", lang),
        t("plan.col.needed_by", lang),
        t("plan.col.arrives", lang),
        t("plan.col.waiting", lang),
    ]
    return [
        count,
        _table(head, rows + _more(len(requests) - MAX_ROWS, lang, 5), "table--requests", num=(1,)),
    ]


def _moved_table(moved: list[dict[str, Any]], lang: str) -> Any:
    if not moved:
        return html.Div(t("plan.moved.none", lang), className="table-empty table-empty--small")
    rows = []
    for m in moved[:MAX_ROWS]:
        lines = (
            str(m.get("to_line"))
            if m.get("from_line") == m.get("to_line")
            else f"{m.get('from_line')} → {m.get('to_line')}"
        )
        end = float(m.get("end_shift_h") or 0.0)
        rows.append(
            html.Tr(
                [
                    html.Td(html.Span(str(m["job"]), className="job-id")),
                    html.Td(str(m.get("order") or NONE), className="cell-id"),
                    html.Td(lines),
                    html.Td(fmt_h(m.get("start_shift_h"), signed=True), className="cell-num"),
                    html.Td(
                        fmt_h(end, signed=True),
                        className="cell-num cell-num--bad"
                        if end > 0
                        else "cell-num cell-num--good",
                    ),
                ]
            )
        )
    head = [
        t("plan.col.job", lang),
        t("col.order", lang),
        t("plan.col.line", lang),
        t("plan.col.start_shift", lang),
        t("plan.col.end_shift", lang),
    ]
    return _table(head, rows + _more(len(moved) - MAX_ROWS, lang, 5), "table--moved", num=(3, 4))


def _id_list(title: str, job_ids: list[str], lang: str) -> html.Div:
    shown = ", ".join(job_ids[:MAX_ROWS]) or t("plan.none", lang)
    if len(job_ids) > MAX_ROWS:
        shown = f"{shown} {t('plan.more', lang, n=len(job_ids) - MAX_ROWS)}"
    return html.Div(
        [html.Span(f"{title} ({len(job_ids)})", className="fact-label"), html.Span(shown)],
        className="id-list",
    )


def _late_table(diff: dict[str, Any], lang: str, *, screens: Screens, now: datetime) -> Any:
    rows_in = [("late", r) for r in diff.get("late") or []] + [
        ("at_risk", r) for r in diff.get("at_risk") or []
    ]
    if not rows_in:
        return html.Div(t("plan.late.none", lang), className="table-empty table-empty--small")
    rows = []
    for kind, r in rows_in[:MAX_ROWS]:
        hours = (
            t("plan.hours_late", lang, h=f"{float(r.get('tardiness_h') or 0):.1f}")
            if kind == "late"
            else t("plan.hours_slack", lang, h=f"{float(r.get('slack_h') or 0):.1f}")
        )
        rows.append(
            html.Tr(
                className=f"order-row order-row--{kind}",
                children=[
                    html.Td(html.Span(t(f"plan.{kind}", lang), className=f"badge badge--{kind}")),
                    html.Td(html.Span(str(r["job"]), className="job-id")),
                    html.Td(str(r.get("order") or NONE), className="cell-id"),
                    html.Td(str(r.get("line") or NONE)),
                    html.Td(hours, className="cell-num"),
                    html.Td(
                        plan_cause_text(
                            r.get("cause"), r.get("reason"), lang, screens=screens, now=now
                        ),
                        className="cell-reason",
                    ),
                ],
            )
        )
    head = [
        "",
        t("plan.col.job", lang),
        t("col.order", lang),
        t("plan.col.line", lang),
        t("plan.col.hours", lang),
        t("plan.col.reason", lang),
    ]
    return _table(head, rows + _more(len(rows_in) - MAX_ROWS, lang, 6), "table--late", num=(4,))


def render_revision(
    plan: dict[str, Any] | None, lang: str, *, screens: Screens, now: datetime
) -> list[Any]:
    """The newest plan revision: what triggered it, what it moved, and what runs late."""
    if not plan:
        return [html.Div(t("plan.revision.none", lang), className="table-empty")]
    diff = plan.get("diff") or {}
    meta = t(
        "plan.revision.meta",
        lang,
        when=fmt_eta(screens.shown(plan.get("created_at")), lang, tz=screens.tz, now=now),
        jobs=fmt_int(plan.get("jobs") or 0),
        solver=plan.get("solver") or NONE,
        ms=fmt_int(plan.get("solve_ms")),
        twt=f"{float(plan.get('total_weighted_tardiness_h') or 0):.1f}",
    )
    return [
        html.Div(
            [
                html.Span(
                    t("plan.revision.title", lang, id=plan.get("revision")), className="rev-no"
                ),
                html.Span(meta, className="rev-meta"),
            ],
            className="rev-head",
        ),
        html.Div(
            [
                html.Span(t("plan.trigger", lang), className="fact-label"),
                html.Span(str(plan.get("trigger") or diff.get("trigger") or NONE)),
            ],
            className="rev-trigger",
        ),
        html.Div(
            [
                html.Div(
                    [
                        html.H3(
                            f"{t('plan.moved', lang)} ({len(diff.get('moved') or [])})",
                            className="sub-head",
                        ),
                        _moved_table(diff.get("moved") or [], lang),
                        _id_list(t("plan.added", lang), list(diff.get("added") or []), lang),
                        _id_list(t("plan.removed", lang), list(diff.get("removed") or []), lang),
                    ],
                    className="rev-col",
                ),
                html.Div(
                    [
                        html.H3(
                            f"{t('plan.late', lang)} ({len(diff.get('late') or [])}) · "
                            f"{t('plan.at_risk', lang)} ({len(diff.get('at_risk') or [])})",
                            className="sub-head",
                        ),
                        _late_table(diff, lang, screens=screens, now=now),
                    ],
                    className="rev-col",
                ),
            ],
            className="rev-grid",
        ),
    ]


def section_children(
    data: Data | None, lang: str, *, screens: Screens, now: datetime
) -> dict[str, list[Any]]:
    """Every section's children, by its component id."""
    if data is None:
        note = [html.Div(t("plan.no_db", lang), className="table-empty")]
        return {section: note for section in SECTIONS}
    return {
        ids.PLAN_CHANGES: render_changes(data["changes"], lang, screens=screens, now=now),
        ids.PLAN_REQUESTS: render_requests(data["requests"], lang, screens=screens, now=now),
        ids.PLAN_REVISION: render_revision(data["plan"], lang, screens=screens, now=now),
    }


def layout(screens: Screens, lang: str | None = None, **_query: Any) -> html.Div:
    """The plan page, rendered from the records as they are now."""
    lang = normalize_lang(lang, screens.default_lang)
    now = screens.now()
    reading = screens.last_good.read(
        "plan", lambda: read_plan_page(screens.sessions, screens.live), now
    )
    data = reading.value
    notice = outage_notice(reading, lang, screens.tz)
    if reading.fresh or data is not None:
        children = section_children(data, lang, screens=screens, now=now)
        sigs = signatures(data, now.astimezone(screens.tz).date())
    else:  # nothing read yet: the stream draws every section on its first good read
        children, sigs = {section: [] for section in SECTIONS}, {}
    start: dict[str, Any] = {
        "token": new_token(),
        "params": {"lang": lang},
        "shown": {"sigs": sigs},
    }
    start["notice"] = notice

    def section(title: str, section_id: str, class_name: str) -> html.Section:
        return html.Section(
            className=f"panel {class_name}",
            children=[panel_head(title), html.Div(children[section_id], id=section_id)],
        )

    return live_frame(
        ids.PLAN,
        start=start,
        lang=lang,
        banner=notice or stale_since(now, lang, screens.tz),
        stale=notice is not None,
        class_name="page page--desk page--plan",
        children=[
            nav_bar("plan", lang),
            html.Main(
                className="desk",
                children=[
                    html.Div(
                        id=ids.PLAN_DECISION_MSG, className="decision decision--none", role="status"
                    ),
                    dcc.Store(id=ids.PLAN_DECISION),
                    html.Div(
                        [
                            section(t("plan.changes", lang), ids.PLAN_CHANGES, "plan-changes"),
                            section(t("plan.requests", lang), ids.PLAN_REQUESTS, "plan-requests"),
                        ],
                        className="plan-top",
                    ),
                    section(t("plan.revision", lang), ids.PLAN_REVISION, "plan-revision"),
                ],
            ),
        ],
    )


# -- live ------------------------------------------------------------------------------
class PlanStream(RecordsStream):
    """Keeps one open plan page in step with the records."""

    min_redraw_s = MIN_REDRAW_S

    def __init__(self, screens: Screens, start: dict[str, Any]) -> None:
        super().__init__(screens, start)
        self.sigs: dict[str, str] = dict(self.shown.get("sigs") or {})

    def wants(self, change: Change) -> bool:
        """A new plan (with its purchase requests), or a change parked or decided."""
        return change.entity in WANTED

    def reading(self) -> tuple[Any, Callable[[], Any]]:
        return "plan", lambda: read_plan_page(self.screens.sessions, self.screens.live)

    def show(self, data: Data | None) -> None:
        self.redraw_sections(data, self.screens.now())

    def redraw_sections(self, data: Data | None, now: datetime) -> None:
        """Send the sections whose content changed."""
        sigs = signatures(data, now.astimezone(self.screens.tz).date())
        changed = [s for s, sig in sigs.items() if self.sigs.get(s) != sig]
        if changed:
            children = section_children(data, self.lang, screens=self.screens, now=now)
            for section in changed:
                set_props(section, {"children": children[section]})
        self.sigs = sigs


def unscoped_layout(screens: Screens, lang: str | None = None, **query: Any) -> html.Div:
    """The page for people who see every order; a person limited to some customers (a
    sales rep) gets "not found": the page shows everyone's changes and plan."""
    if acting_scope() is not None:
        return html.Div("Not found · 未找到", className="page table-empty")
    return layout(screens, lang, **query)


def _stream(screens: Screens, start: dict[str, Any]) -> PlanStream:
    if acting_scope() is not None:  # a forged start from a scoped person's browser
        raise PreventUpdate
    return PlanStream(screens, start)


def register(app: dash.Dash, screens: Screens) -> None:
    """Register the page, its live stream and its Approve/Reject buttons on ``app``."""
    register_screen(
        app,
        __name__,
        screens=screens,
        path=PATH,
        name="plan",
        title="Loopline · Plan",
        layout=partial(unscoped_layout, screens),
        live_ids=ids.PLAN,
        stream=_stream,
    )
    # DESIGN.md names the screen for deciding on changes /approvals: the same page.
    dash.register_page(
        f"{__name__}.approvals",
        path=APPROVALS_PATH,
        title="Loopline · Approvals",
        name="approvals",
        layout=partial(unscoped_layout, screens),
    )
    # Deciding goes through the API like any other client (the signed-in browser's cookie
    # plus a header no other site can send), so the API's roles apply; what it answered
    # lands in the decision Store.
    app.clientside_callback(
        ClientsideFunction(namespace="loopline_plan", function_name="decide"),
        Output(ids.PLAN_DECISION, "data"),
        Input(ids.part(ids.CHANGE_APPROVE, KEY, ALL), "n_clicks"),
        Input(ids.part(ids.CHANGE_REJECT, KEY, ALL), "n_clicks"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output(ids.PLAN_DECISION_MSG, "children"),
        Output(ids.PLAN_DECISION_MSG, "className"),
        Input(ids.PLAN_DECISION, "data"),
        State(ids.PLAN.start, "data"),
        prevent_initial_call=True,
    )
    def _decided(result: dict[str, Any] | None, start: dict[str, Any] | None) -> Any:
        # Say what the API answered; the API announces the decision, so the stream redraws
        # the changes (the decided one leaves the pending list) within a moment.
        lang = normalize_lang(((start or {}).get("params") or {}).get("lang"), screens.default_lang)
        return decision_message(result, lang)
