"""``/connectors``: the field mapping screen for the IT person.

Pick a connector, paste a sample body from the CRM, see the canonical event Loopline would
receive, or each failing field in the CRM's own names. The same code as
``loopline connectors check`` (``ingest.crm.check.check_sample``); nothing is stored and no
signature is checked. ``?connector=`` preselects one.
"""

from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import Any

import dash
from dash import Input, Output, State, dcc, html

from loopline.dashboard.components import nav_bar, panel_head
from loopline.dashboard.i18n import normalize_lang
from loopline.dashboard.live_push import Screens
from loopline.ingest.crm.check import check_sample
from loopline.ingest.crm.connector import Connector, Registry, default_registry

PATH = "/connectors"
ROOT = "connectors-root"
LANG = "connectors-lang"
PICK = "connectors-pick"
SAMPLE = "connectors-sample"
CHECK = "connectors-check"
RESULT = "connectors-result"
FIELDS = "connectors-fields"
MAX_SAMPLE_BYTES = 1 << 20

# This page's words (kept here: the screen is the IT person's, not the shop floor's).
WORDS: dict[str, dict[str, str]] = {
    "title": {"en": "CRM field mapping", "zh-CN": "CRM 字段映射"},
    "connector": {"en": "Connector", "zh-CN": "连接器"},
    "sample": {"en": "Sample body from the CRM", "zh-CN": "CRM 推送的示例报文"},
    "placeholder": {
        "en": "Paste a webhook body (JSON, or XML for SOAP)",
        "zh-CN": "粘贴一条推送报文（JSON，SOAP 为 XML）",
    },
    "check": {"en": "Map it", "zh-CN": "映射"},
    "ok": {"en": "Canonical event", "zh-CN": "标准事件"},
    "ignored": {"en": "Ignored by this connector", "zh-CN": "此连接器忽略该记录"},
    "errors": {"en": "Cannot be accepted", "zh-CN": "无法接收"},
    "empty": {"en": "Paste a sample body first.", "zh-CN": "请先粘贴示例报文。"},
    "too_large": {"en": "The sample is larger than 1 MB.", "zh-CN": "示例报文超过 1 MB。"},
    "mapping": {"en": "Where each field is read", "zh-CN": "字段来源"},
    "field": {"en": "Loopline field", "zh-CN": "Loopline 字段"},
    "path": {"en": "In the CRM's body", "zh-CN": "CRM 报文中的位置"},
    "auth": {"en": "Authenticity", "zh-CN": "验证方式"},
    "writeback": {"en": "Write-back", "zh-CN": "回写"},
    "canonical": {"en": "(the canonical event itself)", "zh-CN": "（即标准事件本身）"},
    "none": {"en": "none", "zh-CN": "无"},
    "reconcile": {"en": "Reconciliation reads", "zh-CN": "对账读取"},
    "all": {"en": "every record", "zh-CN": "全部记录"},
}


def w(key: str, lang: str) -> str:
    """This page's word ``key`` in ``lang`` (English when missing)."""
    return WORDS[key].get(lang) or WORDS[key]["en"]


def mapping_rows(connector: Connector) -> list[tuple[str, str]]:
    """(Loopline field, where the connector reads it) for the mapping table."""
    f = connector.fields
    if f is None:
        return []
    rows = []
    for name, spec in (
        ("kind", f.kind),
        ("order.id", f.order_id),
        ("order.version", f.version),
        ("occurred_at", f.occurred_at),
        ("order.customer.id", f.customer_id),
        ("order.customer.name", f.customer_name),
        ("order.requested_date", f.requested_date),
        ("order.priority", f.priority),
        ("order.sales_rep", f.sales_rep),
    ):
        if spec is not None:
            where = spec.path or f"= {spec.const!r}"
            if spec.map:
                where += "  (" + ", ".join(f"{k}→{v}" for k, v in spec.map.items()) + ")"
            rows.append((name, where))
    if f.lines is not None:
        rows.append(("order.lines[].sku", f"{f.lines.path}[].{f.lines.sku.path}"))
        rows.append(("order.lines[].qty", f"{f.lines.path}[].{f.lines.qty.path}"))
    return rows


def describe(connector: Connector, lang: str) -> list[Any]:
    """The connector's authenticity, write-back and field table."""
    rows = mapping_rows(connector)
    table: Any = (
        html.Table(
            className="table",
            children=[
                html.Thead(html.Tr([html.Th(w("field", lang)), html.Th(w("path", lang))])),
                html.Tbody([html.Tr([html.Td(a), html.Td(html.Code(b))]) for a, b in rows]),
            ],
        )
        if rows
        else html.P(w("canonical", lang))
    )
    writeback = connector.writeback.kind if connector.writeback else w("none", lang)
    spec, api = connector.reconcile, connector.read_api
    reads = w("none", lang)
    if spec is not None and api is not None:
        which = w("all", lang)
        if spec.open_field and (spec.open_in or spec.open_not_in):
            op = "in" if spec.open_in else "not in"
            which = f"{spec.open_field} {op} {', '.join(spec.open_in or spec.open_not_in)}"
        reads = f"{api.kind} ({which})"
    return [
        html.P(connector.description or connector.title, className="muted"),
        html.P(
            f"{w('auth', lang)}: {connector.auth.kind} · {w('writeback', lang)}: {writeback}"
            f" · {w('reconcile', lang)}: {reads}",
            className="connector-apis",
        ),
        html.H3(w("mapping", lang)),
        table,
    ]


def render_check(registry: Registry, name: str | None, sample: str | None, lang: str) -> Any:
    """What the screen shows for ``sample`` through connector ``name``."""
    if not name or name not in registry.connectors:
        return html.P("")
    text = (sample or "").strip()
    if not text:
        return html.P(w("empty", lang), className="muted")
    body = text.encode()
    if len(body) > MAX_SAMPLE_BYTES:
        return html.P(w("too_large", lang), className="check-error")
    result = check_sample(registry.get(name), body)
    parts: list[Any] = []
    for event, ref in zip(result.events, result.refs, strict=True):
        if event is None:
            parts.append(html.P(w("ignored", lang), className="check-ignored"))
            continue
        shown = {**event, "ref": ref} if ref is not None else event
        parts += [
            html.H3(w("ok", lang)),
            html.Pre(json.dumps(shown, ensure_ascii=False, indent=2), className="check-event"),
        ]
    if result.errors:
        parts += [
            html.H3(w("errors", lang)),
            html.Ul(
                [
                    html.Li([html.Code(e["field"]), f": {e['message']}"], className="check-error")
                    for e in result.errors
                ]
            ),
        ]
    return html.Div(parts)


def layout(
    registry_of: Any, lang: str | None = None, connector: str | None = None, **_: Any
) -> Any:
    registry: Registry = registry_of()
    lang = normalize_lang(lang)
    names = registry.names()
    chosen = connector if connector in names else (names[0] if names else None)
    return html.Div(
        id=ROOT,
        lang=lang,
        className=f"page page--desk lang-{lang}",
        children=[
            dcc.Store(id=LANG, data=lang),
            nav_bar("connectors", lang),
            html.Main(
                className="desk",
                children=html.Section(
                    className="panel",
                    children=[
                        panel_head(w("title", lang)),
                        html.Label(w("connector", lang), htmlFor=PICK),
                        dcc.Dropdown(
                            id=PICK,
                            options=[
                                {"label": f"{n} — {registry.get(n).title}", "value": n}
                                for n in names
                            ],
                            value=chosen,
                            clearable=False,
                        ),
                        html.Div(describe(registry.get(chosen), lang) if chosen else [], id=FIELDS),
                        html.Label(w("sample", lang), htmlFor=SAMPLE),
                        dcc.Textarea(
                            id=SAMPLE,
                            placeholder=w("placeholder", lang),
                        ),
                        html.Button(w("check", lang), id=CHECK, n_clicks=0, className="button"),
                        html.Div(id=RESULT),
                    ],
                ),
            ),
        ],
    )


def register(app: dash.Dash, screens: Screens, registry_of: Any = default_registry) -> None:
    """Register the page and its callbacks on ``app``."""
    dash.register_page(
        __name__,
        path=PATH,
        title="Loopline · Connectors",
        name="connectors",
        layout=partial(layout, registry_of),
    )

    @app.callback(
        Output(FIELDS, "children"),
        Input(PICK, "value"),
        State(LANG, "data"),
        prevent_initial_call=True,
    )
    def _describe(name: str | None, lang: str | None) -> list[Any]:
        registry: Registry = registry_of()
        lang = normalize_lang(lang, screens.default_lang)
        return describe(registry.get(name), lang) if name in registry.connectors else []

    @app.callback(
        Output(RESULT, "children"),
        Input(CHECK, "n_clicks"),
        Input(PICK, "value"),
        State(SAMPLE, "value"),
        State(LANG, "data"),
        prevent_initial_call=True,
    )
    async def _check(_: int, name: str | None, sample: str | None, lang: str | None) -> Any:
        lang = normalize_lang(lang, screens.default_lang)
        # In a thread: a connector that fetches calls the CRM's API.
        return await asyncio.to_thread(render_check, registry_of(), name, sample, lang)
