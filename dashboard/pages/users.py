"""``/users``: the admin's screen of people: who they are, their roles, language and scope;
add a user, disable one. Only an admin sees it (others get "not found"); every action is
recorded in the audit under the admin's own name.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import dash
from dash import ALL, Input, Output, State, ctx, dcc, html
from dash.exceptions import PreventUpdate

from loopline.dashboard.components import nav_bar, panel_head
from loopline.dashboard.i18n import normalize_lang
from loopline.dashboard.live_push import Screens
from loopline.models.db import transaction
from loopline.models.scope import acting
from loopline.models.users import LANGS, ROLES, UserError, add_user, disable_user, list_users

PATH = "/users"
TABLE = "users-table"
FORM_USERNAME, FORM_NAME, FORM_ROLES = "users-username", "users-name", "users-roles"
FORM_LANG, FORM_CUSTOMERS, FORM_REPS = "users-lang", "users-customers", "users-reps"
FORM_PASSWORD, FORM_ADD, MESSAGE = "users-password", "users-add", "users-message"
LANG_STORE = "users-lang-store"
DISABLE = "users-disable"

TEXT: dict[str, dict[str, str]] = {
    "title": {"en": "People", "zh-CN": "用户"},
    "add": {"en": "Add a user", "zh-CN": "添加用户"},
    "username": {"en": "User name", "zh-CN": "用户名"},
    "name": {"en": "Full name", "zh-CN": "姓名"},
    "roles": {"en": "Roles", "zh-CN": "角色"},
    "lang": {"en": "Language", "zh-CN": "语言"},
    "customers": {"en": "Customers (sales; comma list)", "zh-CN": "客户（销售；逗号分隔）"},
    "reps": {"en": "CRM reps (sales; comma list)", "zh-CN": "CRM 销售代表（逗号分隔）"},
    "password": {"en": "Password (optional)", "zh-CN": "密码（可选）"},
    "scope": {"en": "Sees", "zh-CN": "可见范围"},
    "state": {"en": "State", "zh-CN": "状态"},
    "all": {"en": "all orders", "zh-CN": "全部订单"},
    "active": {"en": "active", "zh-CN": "启用"},
    "disabled": {"en": "disabled", "zh-CN": "已停用"},
    "disable": {"en": "Disable", "zh-CN": "停用"},
    "added": {"en": "Added {who}.", "zh-CN": "已添加 {who}。"},
    "disabled_msg": {"en": "Disabled {who}.", "zh-CN": "已停用 {who}。"},
    "not_found": {"en": "Not found", "zh-CN": "未找到"},
}


def _t(key: str, lang: str, **kw: str) -> str:
    return TEXT[key][lang].format(**kw)


def _is_admin() -> bool:
    who = acting()
    return who is not None and "admin" in who.roles


def _split(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def user_rows(screens: Screens) -> list[dict[str, Any]]:
    """Every user as the table shows them."""
    if screens.sessions is None:
        return []
    with screens.sessions() as session:
        return [
            {
                "username": u.username,
                "name": u.name,
                "roles": list(u.roles),
                "lang": u.lang,
                "customers": list(u.customers),
                "reps": list(u.reps),
                "active": u.active,
            }
            for u in list_users(session)
        ]


def render_table(rows: list[dict[str, Any]], lang: str) -> html.Table:
    """The users table; each active user but the admin looking has a Disable button."""
    who = acting()
    me = who.name if who is not None else None
    head = html.Tr(
        [html.Th(_t(k, lang)) for k in ("username", "name", "roles", "lang", "scope", "state")]
        + [html.Th("")]
    )
    body = []
    for r in rows:
        sales_only = set(r["roles"]) <= {"sales"}
        scope = (
            ", ".join([*r["customers"], *(f"rep {x}" for x in r["reps"])]) or "—"
            if sales_only
            else _t("all", lang)
        )
        action: Any = (
            html.Button(
                _t("disable", lang),
                id={"kind": DISABLE, "user": r["username"]},
                className="btn btn--reject",
                n_clicks=0,
            )
            if r["active"] and r["username"] != me
            else ""
        )
        body.append(
            html.Tr(
                className="user-row" + ("" if r["active"] else " user-row--disabled"),
                children=[
                    html.Td(r["username"], className="cell-id"),
                    html.Td(r["name"]),
                    html.Td(", ".join(r["roles"])),
                    html.Td(r["lang"]),
                    html.Td(scope),
                    html.Td(_t("active" if r["active"] else "disabled", lang)),
                    html.Td(action),
                ],
            )
        )
    return html.Table([html.Thead(head), html.Tbody(body)], className="table users-table")


def _field(label: str, control: Any) -> html.Label:
    return html.Label([html.Span(label, className="field-label"), control], className="field")


def layout(screens: Screens, lang: str | None = None, **_query: Any) -> html.Div:
    """The people screen (admins only)."""
    lang = normalize_lang(lang, screens.default_lang)
    if not _is_admin():
        return html.Div(_t("not_found", lang), className="page table-empty")
    form = html.Div(
        className="users-form",
        children=[
            _field(_t("username", lang), dcc.Input(id=FORM_USERNAME, type="text")),
            _field(_t("name", lang), dcc.Input(id=FORM_NAME, type="text")),
            _field(
                _t("roles", lang),
                dcc.Checklist(id=FORM_ROLES, options=list(ROLES), value=["sales"], inline=True),
            ),
            _field(
                _t("lang", lang),
                dcc.Dropdown(id=FORM_LANG, options=list(LANGS), value=lang, clearable=False),
            ),
            _field(_t("customers", lang), dcc.Input(id=FORM_CUSTOMERS, type="text")),
            _field(_t("reps", lang), dcc.Input(id=FORM_REPS, type="text")),
            _field(_t("password", lang), dcc.Input(id=FORM_PASSWORD, type="password")),
            html.Button(_t("add", lang), id=FORM_ADD, className="btn btn--approve", n_clicks=0),
        ],
    )
    return html.Div(
        lang=lang,
        className=f"page page--desk page--users lang-{lang}",
        children=[
            nav_bar("users", lang),
            dcc.Store(id=LANG_STORE, data=lang),
            html.Main(
                className="desk",
                children=[
                    html.Section(
                        className="panel",
                        children=[
                            panel_head(_t("title", lang)),
                            html.Div(id=MESSAGE, role="status", className="users-message"),
                            html.Div(render_table(user_rows(screens), lang), id=TABLE),
                        ],
                    ),
                    html.Section(className="panel", children=[panel_head(_t("add", lang)), form]),
                ],
            ),
        ],
    )


def register(app: dash.Dash, screens: Screens) -> None:
    """Register the page and its add and disable callbacks on ``app``."""
    dash.register_page(
        __name__,
        path=PATH,
        title="Loopline · People",
        name="users",
        layout=partial(layout, screens),
    )

    @app.callback(
        Output(TABLE, "children"),
        Output(MESSAGE, "children"),
        Output(MESSAGE, "className"),
        Input(FORM_ADD, "n_clicks"),
        Input({"kind": DISABLE, "user": ALL}, "n_clicks"),
        State(FORM_USERNAME, "value"),
        State(FORM_NAME, "value"),
        State(FORM_ROLES, "value"),
        State(FORM_LANG, "value"),
        State(FORM_CUSTOMERS, "value"),
        State(FORM_REPS, "value"),
        State(FORM_PASSWORD, "value"),
        State(LANG_STORE, "data"),
        prevent_initial_call=True,
    )
    async def _act(
        _add: int | None,
        _disables: list[int | None],
        username: str | None,
        name: str | None,
        roles: list[str] | None,
        user_lang: str | None,
        customers: str | None,
        reps: str | None,
        password: str | None,
        lang: str | None,
    ) -> tuple[Any, str, str]:
        lang = normalize_lang(lang, screens.default_lang)
        who = acting()
        # The callback is checked again: a page is no permission, a request is.
        if who is None or "admin" not in who.roles or screens.sessions is None:
            raise PreventUpdate
        trigger = ctx.triggered_id
        if trigger is None or (isinstance(trigger, dict) and not any(_disables)):
            raise PreventUpdate
        sessions = screens.sessions

        def run() -> str:
            with transaction(sessions) as session:
                if isinstance(trigger, dict):
                    target = str(trigger["user"])
                    disable_user(session, username=target, actor=who.name)
                    return _t("disabled_msg", lang, who=target)
                user = add_user(
                    session,
                    username=username or "",
                    name=name or "",
                    roles=roles or [],
                    lang=user_lang or "en",
                    customers=_split(customers),
                    reps=_split(reps),
                    password=password or None,
                    actor=who.name,
                )
                return _t("added", lang, who=user.username)

        try:
            message, kind = await asyncio.to_thread(run), "users-message users-message--ok"
        except UserError as exc:
            message, kind = str(exc), "users-message users-message--error"
        rows = await asyncio.to_thread(user_rows, screens)
        return render_table(rows, lang), message, kind
