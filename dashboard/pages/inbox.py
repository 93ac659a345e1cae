"""``/inbox``: the signed-in person's notifications, and the sales reps' follow-up tasks
after delivery (confirm the delivery, then ask the customer how it went: a score 0-100
and a note).

Notifications are the person's in-app inbox, read as ``GET /api/v1/notifications`` reads
it (``models/notify.py``: their name and ``role:x`` entries of their roles, every inbox for
an admin; an entry about an order outside their scope is left out). Marking read and
acknowledging an entry's alert (which stops its escalation) go through
``POST /api/v1/notifications/{id}/read``, ``/read-all`` and ``/api/v1/alerts/{id}/ack``
with the signed-in browser's cookie, so the API decides and its refusal is shown as it is.

``?rep=`` shows one rep's tasks (all reps' without it). Read through the same read model
as ``GET /api/v1/tasks`` (``models/followup.py``); completing goes through
``POST /api/v1/tasks/{id}/complete`` with the signed-in browser's cookie, like the plan
page's Approve. Live: an entry written or read, an alert acknowledged or resolved, a task
opened or done anywhere is announced, and the lists are redrawn.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any, TypedDict
from urllib.parse import quote

import dash
from dash import ALL, ClientsideFunction, Input, Output, State, dcc, html, set_props

from loopline.dashboard import ids
from loopline.dashboard.components import live_frame, nav_bar, panel_head
from loopline.dashboard.i18n import NONE, fmt_eta, label, normalize_lang, t, t_count
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
from loopline.models.notify import NOTIFICATION_ENTITY, InboxEntry, person_inbox
from loopline.models.scope import Acting, acting, acting_scope, visible_orders

log = logging.getLogger("loopline.dashboard.inbox")

PATH = "/inbox"
KEY = "task"
MIN_REDRAW_S = 1.0
WANTED = frozenset({"followup", NOTIFICATION_ENTITY, "alert"})
MAX_TASKS = 100
MAX_NOTES = 50
NOTE_KEY = "note"
READ_ONLY_ROLES = frozenset({"display"})  # a wall screen's sign-in reads, never acts


class InboxData(TypedDict):
    notes: list[InboxEntry]
    everyone: bool  # an admin: every person's inbox
    tasks: list[TaskView]


def read_inbox(screens: Screens, rep: str | None) -> InboxData | None:
    """The person's notifications and the open tasks of ``rep``; None without a database."""
    if screens.sessions is None:
        return None
    who = acting()
    with screens.sessions() as session:
        notes, everyone = (
            person_inbox(session, name=who.name, roles=who.roles, scope=who.scope, limit=MAX_NOTES)
            if who is not None
            else ([], False)
        )
    tasks = read_tasks(screens, rep)
    return {"notes": notes, "everyone": everyone, "tasks": tasks or []}


def reading_key(rep: str | None) -> tuple[Any, ...]:
    """Readings are kept per person (their inbox) as well as per scope."""
    who = acting()
    return ("inbox", rep, who.name if who else None, who.roles if who else ())


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


def signature(data: Any) -> str:
    raw = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()


def may_act(who: Acting | None) -> bool:
    """Whether the signed-in caller gets buttons (a wall screen's display sign-in does not)."""
    return who is not None and not set(who.roles) <= READ_ONLY_ROLES


def render_note(
    note: InboxEntry, lang: str, *, screens: Screens, now: datetime, actions: bool
) -> html.Li:
    """One notification: how serious, what, when, the alert's state, and its buttons."""
    note_id = str(note["id"])
    severity = note["severity"] if note["severity"] in ("info", "warning", "critical") else "info"
    when = fmt_eta(screens.shown(note["created_at"]), lang, tz=screens.tz, now=now)
    head: list[Any] = [
        html.Span(label("severity", severity, lang), className="alert-severity"),
        html.Strong(note["title"], className="note-title"),
    ]
    if not note["read"]:
        head.append(html.Span(t("inbox.notes.unread", lang), className="badge badge--unread"))
    meta: list[Any] = [html.Span(when, className="tl-at")]
    if note["order"]:
        href = f"/orders/{quote(note['order'], safe='')}?lang={lang}"
        meta.append(
            dcc.Link(
                t("inbox.notes.order", lang, order=note["order"]), href=href, className="order-id"
            )
        )
    if note["alert_status"]:
        state = t(f"inbox.alert.{note['alert_status']}", lang)
        if note["alert_status"] != "resolved" and note["level"]:
            state += " · " + t("inbox.alert.level", lang, level=note["level"])
        meta.append(html.Span(state, className=f"note-alert note-alert--{note['alert_status']}"))
    meta.append(html.Span(t("inbox.notes.to", lang, who=note["recipient"]), className="wo-meta"))
    buttons: list[Any] = []
    if actions and note["alert_id"] is not None and note["alert_status"] == "open":
        buttons.append(
            html.Button(
                t("inbox.notes.ack", lang),
                id=ids.part(ids.NOTE_ACK, NOTE_KEY, f"{note_id}:{note['alert_id']}"),
                className="btn btn--approve",
                n_clicks=0,
            )
        )
    if actions and not note["read"]:
        buttons.append(
            html.Button(
                t("inbox.notes.read", lang),
                id=ids.part(ids.NOTE_READ, NOTE_KEY, note_id),
                className="btn",
                n_clicks=0,
            )
        )
    read = "read" if note["read"] else "unread"
    return html.Li(
        id=ids.part(ids.NOTE, NOTE_KEY, note_id),
        className=f"order-card note note--{read} alert--{severity}",
        children=[
            html.Div(head, className="order-card-head note-head"),
            # An alert's entry is often its message twice: say it once.
            html.Div(note["body"], className="note-body")
            if note["body"].strip() != note["title"].strip()
            else None,
            html.Div(meta, className="note-meta"),
            html.Div(buttons, className="note-actions") if buttons else None,
        ],
    )


def render_notes(
    notes: list[InboxEntry] | None,
    everyone: bool,
    lang: str,
    *,
    screens: Screens,
    now: datetime,
    actions: bool,
) -> list[Any]:
    if notes is None:
        return [html.Div(t("kpi.no_db", lang), className="table-empty")]
    unread = sum(not n["read"] for n in notes)
    top: list[Any] = [
        html.Span(t_count("inbox.notes.count", lang, unread), className="panel-count")
    ]
    if everyone:
        top.append(html.Span(t("inbox.notes.everyone", lang), className="wo-meta"))
    if actions and unread:
        top.append(
            html.Button(
                t("inbox.notes.read_all", lang), id=ids.INBOX_READ_ALL, className="btn", n_clicks=0
            )
        )
    else:  # the callback's input must exist on every drawing
        top.append(html.Button(id=ids.INBOX_READ_ALL, n_clicks=0, hidden=True))
    if not notes:
        return [html.Div(t("inbox.notes.empty", lang), className="table-empty")] + top[-1:]
    return [
        html.Div(top, className="note-top"),
        html.Ul(
            [render_note(n, lang, screens=screens, now=now, actions=actions) for n in notes],
            className="order-cards notes",
        ),
    ]


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


def note_message(result: dict[str, Any] | None, lang: str) -> tuple[str, str]:
    """What the API answered to a mark-read or an acknowledgement: ``(text, className)``."""
    if not result:
        return "", "decision decision--none"
    body = result.get("body") if isinstance(result.get("body"), dict) else {}
    assert isinstance(body, dict)
    status = int(result.get("status") or 0)
    if 200 <= status < 300:
        if result.get("action") == "ack":
            return t("inbox.notes.ok.ack", lang, alert=result.get("alert")), "decision decision--ok"
        return t("inbox.notes.ok.read", lang, n=body.get("marked", 0)), "decision decision--ok"
    detail = body.get("detail")
    if isinstance(detail, list):
        detail = "; ".join(f"{d.get('field')}: {d.get('message')}" for d in detail)
    text = t("inbox.notes.failed", lang, status=status, detail=detail or NONE)
    return text, "decision decision--refused"


def layout(
    screens: Screens, lang: str | None = None, rep: str | None = None, **_query: Any
) -> html.Div:
    """The signed-in person's notifications, and the tasks of ``rep`` (everyone's when
    empty)."""
    lang = normalize_lang(lang, screens.default_lang)
    rep = (rep or "").strip()[:100] or None
    now = screens.now()
    reading = screens.last_good.read(reading_key(rep), lambda: read_inbox(screens, rep), now)
    notice = outage_notice(reading, lang, screens.tz)
    data = reading.value
    tasks = data["tasks"] if data is not None else None
    notes = data["notes"] if data is not None else None
    everyone = bool(data and data["everyone"])
    actions = may_act(acting())
    shown = reading.fresh or data is not None
    start: dict[str, Any] = {
        "token": new_token(),
        "params": {"lang": lang, "rep": rep},
        "shown": {
            "sig": signature(tasks) if shown else None,
            "notes": signature(notes) if shown else None,
        },
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
                    html.Div(
                        id=ids.INBOX_NOTE_MSG, className="decision decision--none", role="status"
                    ),
                    dcc.Store(id=ids.INBOX_NOTE_RESULT),
                    html.Section(
                        className="panel panel--notes",
                        children=[
                            panel_head(t("inbox.notes", lang)),
                            html.Div(
                                render_notes(
                                    notes,
                                    everyone,
                                    lang,
                                    screens=screens,
                                    now=now,
                                    actions=actions,
                                )
                                if shown
                                else [html.Button(id=ids.INBOX_READ_ALL, n_clicks=0, hidden=True)],
                                id=ids.INBOX_NOTES,
                            ),
                        ],
                    ),
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
                                render_list(tasks, lang, screens=screens, now=now) if shown else [],
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
        self.notes_sig: str | None = shown.get("notes")

    def wants(self, change: Change) -> bool:
        """A delivery or a task opened or done; an inbox entry written or read; an alert
        acknowledged or closed (the entries show its state)."""
        return change.entity in WANTED

    def reading(self) -> tuple[Any, Callable[[], Any]]:
        return reading_key(self.rep), lambda: read_inbox(self.screens, self.rep)

    def show(self, data: InboxData | None) -> None:
        """Redraw each list whose entries changed."""
        now = self.screens.now()
        notes = data["notes"] if data is not None else None
        sig = signature(notes)
        if sig != self.notes_sig:
            children = render_notes(
                notes,
                bool(data and data["everyone"]),
                self.lang,
                screens=self.screens,
                now=now,
                actions=may_act(acting()),
            )
            set_props(ids.INBOX_NOTES, {"children": children})
            self.notes_sig = sig
        tasks = data["tasks"] if data is not None else None
        sig = signature(tasks)
        if sig != self.sig:
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

    _show_result(app, screens, ids.INBOX_RESULT, ids.INBOX_MSG, result_message)
    app.clientside_callback(
        ClientsideFunction(namespace="loopline_inbox", function_name="note"),
        Output(ids.INBOX_NOTE_RESULT, "data"),
        Input(ids.part(ids.NOTE_READ, NOTE_KEY, ALL), "n_clicks"),
        Input(ids.part(ids.NOTE_ACK, NOTE_KEY, ALL), "n_clicks"),
        Input(ids.INBOX_READ_ALL, "n_clicks"),
        prevent_initial_call=True,
    )

    _show_result(app, screens, ids.INBOX_NOTE_RESULT, ids.INBOX_NOTE_MSG, note_message)


def _show_result(
    app: dash.Dash,
    screens: Screens,
    result_id: str,
    message_id: str,
    message: Callable[[dict[str, Any] | None, str], Any],
) -> None:
    """Show what a button's API call answered (kept in ``result_id`` by the clientside
    callback) in ``message_id``, in the page's language."""

    @app.callback(
        Output(message_id, "children"),
        Output(message_id, "className"),
        Input(result_id, "data"),
        State(ids.INBOX.start, "data"),
        prevent_initial_call=True,
    )
    def _shown(result: dict[str, Any] | None, start: dict[str, Any] | None) -> Any:
        lang = normalize_lang(((start or {}).get("params") or {}).get("lang"), screens.default_lang)
        return message(result, lang)
