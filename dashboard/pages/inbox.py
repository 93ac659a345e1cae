"""``/inbox``: a sales rep's follow-up tasks after delivery — confirm the delivery, then
ask the customer how it went (a score 0-100 and a note).

``?rep=`` shows one rep's tasks (all reps' without it). Read through the same read model
as ``GET /api/v1/tasks`` (``models/followup.py``); completing goes through
``POST /api/v1/tasks/{id}/complete`` with the signed-in browser's cookie, like the plan
page's Approve, so the API's roles decide and its refusal is shown as it is. Live: a task
opened or done anywhere is announced, and the list is redrawn.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import quote

import dash
from dash import ALL, ClientsideFunction, Input, Output, State, dcc, html, set_props

from loopline.dashboard import ids
from loopline.dashboard.components import live_frame, nav_bar, panel_head
from loopline.dashboard.i18n import NONE, fmt_eta, normalize_lang, t, t_count
from loopline.dashboard.live_push import (
    RecordsStream,
    Screens,
    new_token,
    outage_notice,
    register_screen,
    stale_since,
)
from loopline.models.followup import SATISFACTION, TaskView, list_tasks
from loopline.models.live import Change
from loopline.models.scope import acting_scope, visible_orders

log = logging.getLogger("loopline.dashboard.inbox")

PATH = "/inbox"
KEY = "task"
MIN_REDRAW_S = 1.0
WANTED = frozenset({"followup"})
MAX_TASKS = 100


def read_tasks(screens: Screens, rep: str | None) -> list[TaskView] | None:
    """The open tasks of ``rep`` (everyone's when None); None without a database."""
    if screens.sessions is None:
        return None
    with screens.sessions() as session:
        tasks = list_tasks(session, assignee=rep or None, status="open", limit=MAX_TASKS)
        scope = acting_scope()  # a sales rep sees only their customers' tasks
        if scope is None:
            return tasks
        mine = visible_orders(session, scope)
        return [task for task in tasks if task["order_id"] in mine]


def signature(tasks: list[TaskView] | None) -> str:
    raw = json.dumps(tasks, sort_keys=True, default=str)
    return hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()


def render_task(task: TaskView, lang: str, *, screens: Screens, now: datetime) -> html.Li:
    """One task: what to do, for which order, and the form to do it."""
    task_id = str(task["id"])
    satisfaction = task["kind"] == SATISFACTION
    when = t(
        "inbox.delivered",
        lang,
        when=fmt_eta(screens.shown(task["delivered_at"]), lang, tz=screens.tz, now=now),
    )
    due = t(
        "inbox.due", lang, when=fmt_eta(screens.shown(task["due_at"]), lang, tz=screens.tz, now=now)
    )
    form: list[Any] = []
    if satisfaction:
        form.append(
            html.Label(
                [
                    html.Span(t("inbox.score", lang)),
                    dcc.Input(
                        id=ids.part(ids.TASK_SCORE, KEY, task_id),
                        type="number",
                        min=0,
                        max=100,
                        step=1,
                        inputMode="numeric",
                        className="task-score",
                    ),
                ],
                className="task-field",
            )
        )
    form.append(
        html.Label(
            [
                html.Span(t("inbox.note", lang)),
                dcc.Textarea(id=ids.part(ids.TASK_NOTE, KEY, task_id), className="task-note"),
            ],
            className="task-field task-field--note",
        )
    )
    form.append(
        html.Button(
            t("inbox.save" if satisfaction else "inbox.confirm", lang),
            id=ids.part(ids.TASK_DONE, KEY, task_id),
            className="btn btn--approve",
            n_clicks=0,
        )
    )
    order_href = f"/orders/{quote(task['order_id'], safe='')}?lang={lang}"
    return html.Li(
        id=ids.part(ids.TASK, KEY, task_id),
        className=f"order-card inbox-task inbox-task--{task['kind']}",
        children=[
            html.Div(
                [
                    html.Span(t(f"task.{task['kind']}", lang), className="tl-action"),
                    dcc.Link(task["order_id"], href=order_href, className="order-id"),
                    html.Span(due, className="tl-at"),
                ],
                className="order-card-head",
            ),
            html.Div(task["customer"] or NONE, className="cell-customer"),
            html.Div(
                " · ".join([when, t("inbox.for", lang, who=task["assignee"] or NONE)]),
                className="wo-meta",
            ),
            html.Div(form, className="task-form"),
        ],
    )


def render_list(
    tasks: list[TaskView] | None, lang: str, *, screens: Screens, now: datetime
) -> list[Any]:
    if tasks is None:
        return [html.Div(t("kpi.no_db", lang), className="table-empty")]
    if not tasks:
        return [html.Div(t("inbox.empty", lang), className="table-empty")]
    return [
        html.Div(t_count("inbox.count", lang, len(tasks)), className="panel-count"),
        html.Ul(
            [render_task(task, lang, screens=screens, now=now) for task in tasks],
            className="order-cards inbox-tasks",
        ),
    ]


def result_message(result: dict[str, Any] | None, lang: str) -> tuple[str, str]:
    """What the API answered to a completion, worded: ``(text, className)``."""
    if not result:
        return "", "decision decision--none"
    body = result.get("body") if isinstance(result.get("body"), dict) else {}
    assert isinstance(body, dict)
    status = int(result.get("status") or 0)
    if 200 <= status < 300:
        text = t("inbox.result.ok", lang, id=result.get("task"), order=body.get("order_id") or NONE)
        return text, "decision decision--ok"
    detail = body.get("detail")
    if isinstance(detail, list):
        detail = "; ".join(f"{d.get('field')}: {d.get('message')}" for d in detail)
    text = t("inbox.result.failed", lang, id=result.get("task"), status=status, detail=detail)
    return text, "decision decision--refused"


def layout(
    screens: Screens, lang: str | None = None, rep: str | None = None, **_query: Any
) -> html.Div:
    """The inbox of ``rep`` (everyone's when empty)."""
    lang = normalize_lang(lang, screens.default_lang)
    rep = (rep or "").strip()[:100] or None
    now = screens.now()
    reading = screens.last_good.read(("inbox", rep), lambda: read_tasks(screens, rep), now)
    notice = outage_notice(reading, lang, screens.tz)
    tasks = reading.value
    start: dict[str, Any] = {
        "token": new_token(),
        "params": {"lang": lang, "rep": rep},
        "shown": {"sig": signature(tasks) if reading.fresh or tasks else None},
        "notice": notice,
    }
    return live_frame(
        ids.INBOX,
        start=start,
        lang=lang,
        banner=notice or stale_since(now, lang, screens.tz),
        stale=notice is not None,
        class_name="page page--desk page--inbox",
        children=[
            nav_bar("inbox", lang),
            html.Main(
                className="desk detail",
                children=[
                    html.Div(id=ids.INBOX_MSG, className="decision decision--none", role="status"),
                    dcc.Store(id=ids.INBOX_RESULT),
                    html.Section(
                        className="panel",
                        children=[
                            panel_head(t("page.inbox", lang)),
                            html.Form(
                                [
                                    html.Label(t("inbox.rep", lang), className="fact-label"),
                                    dcc.Input(
                                        id=ids.INBOX_REP,
                                        name="rep",
                                        type="search",
                                        value=rep or "",
                                        placeholder=t("inbox.rep.all", lang),
                                        className="search",
                                    ),
                                    dcc.Input(type="hidden", name="lang", value=lang),
                                ],
                                action=PATH,
                                method="get",
                                className="inbox-rep",
                            ),
                            html.Div(
                                render_list(tasks, lang, screens=screens, now=now)
                                if reading.fresh or tasks is not None
                                else [],
                                id=ids.INBOX_LIST,
                            ),
                        ],
                    ),
                ],
            ),
        ],
    )


class InboxStream(RecordsStream):
    """Keeps one open inbox in step with the records."""

    min_redraw_s = MIN_REDRAW_S

    def __init__(self, screens: Screens, start: dict[str, Any]) -> None:
        super().__init__(screens, start)
        params, shown = self.params, self.shown
        self.rep: str | None = params.get("rep") or None
        self.sig: str | None = shown.get("sig")

    def wants(self, change: Change) -> bool:
        """A delivery or a task opened or done."""
        return change.entity in WANTED

    def reading(self) -> tuple[Any, Callable[[], Any]]:
        return ("inbox", self.rep), lambda: read_tasks(self.screens, self.rep)

    def show(self, tasks: list[TaskView] | None) -> None:
        """Redraw the list when its tasks changed."""
        sig = signature(tasks)
        if sig != self.sig:
            now = self.screens.now()
            children = render_list(tasks, self.lang, screens=self.screens, now=now)
            set_props(ids.INBOX_LIST, {"children": children})
            self.sig = sig


def register(app: dash.Dash, screens: Screens) -> None:
    """Register the page, its live stream and its completion buttons on ``app``."""
    register_screen(
        app,
        __name__,
        screens=screens,
        path=PATH,
        name="inbox",
        title="Loopline · Inbox",
        layout=partial(layout, screens),
        live_ids=ids.INBOX,
        stream=InboxStream,
    )
    app.clientside_callback(
        ClientsideFunction(namespace="loopline_inbox", function_name="complete"),
        Output(ids.INBOX_RESULT, "data"),
        Input(ids.part(ids.TASK_DONE, KEY, ALL), "n_clicks"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output(ids.INBOX_MSG, "children"),
        Output(ids.INBOX_MSG, "className"),
        Input(ids.INBOX_RESULT, "data"),
        State(ids.INBOX.start, "data"),
        prevent_initial_call=True,
    )
    def _completed(result: dict[str, Any] | None, start: dict[str, Any] | None) -> Any:
        lang = normalize_lang(((start or {}).get("params") or {}).get("lang"), screens.default_lang)
        return result_message(result, lang)
