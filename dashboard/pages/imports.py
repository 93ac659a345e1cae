"""``/import``: orders from a spreadsheet, uploaded on a screen (admins only).

Upload an .xlsx or .csv file, pick the column mapping of its source (an import connector:
the shipped ``orders-sheet`` or one saved here), adjust which column holds each field and
save that as the source's mapping (a connector file in ``LOOPLINE_CONNECTORS_DIR``), run a
dry run that lists every row-level error (``row 17, column "交期": not a date``) with nothing
written, then import. Dry run and import are ``ingest.crm.sheet.import_sheet``, the code of
``loopline import-orders``: the orders take the CRM events' path (versions, approvals).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
from functools import partial
from pathlib import Path
from typing import Any

import dash
from dash import ALL, Input, Output, State, ctx, dcc, html

from loopline.dashboard.components import nav_bar, panel_head
from loopline.dashboard.i18n import normalize_lang
from loopline.dashboard.live_push import Screens
from loopline.ingest.crm.connector import Connector, ConnectorFileError, Registry, default_registry
from loopline.ingest.crm.sheet import (
    COLUMN_FIELDS,
    REQUIRED_COLUMNS,
    SheetError,
    columns_of,
    import_sheet,
    mapping_from_columns,
    read_rows,
    save_mapping,
)
from loopline.models.scope import acting

PATH = "/import"
ROOT = "import-root"
LANG = "import-lang"
UPLOAD = "import-upload"
FILE = "import-file"
FILE_NAME = "import-file-name"
MAPPING = "import-mapping"
COLUMNS = "import-columns"
COLUMN = "import-column"  # pattern-matching id type: {"type": COLUMN, "field": name}
SOURCE = "import-source"
SAVE = "import-save"
DRY_RUN = "import-dry-run"
APPLY = "import-apply"
CHECKED = "import-checked"
RESULT = "import-result"
MESSAGE = "import-message"
MAX_UPLOAD_BYTES = 10 << 20

WORDS: dict[str, dict[str, str]] = {
    "title": {"en": "Import orders from a spreadsheet", "zh-CN": "从表格导入订单"},
    "not_found": {"en": "Page not found.", "zh-CN": "页面不存在。"},
    "upload": {
        "en": "Drop an .xlsx or .csv file here, or click to choose one",
        "zh-CN": "将 .xlsx 或 .csv 文件拖到此处，或点击选择文件",
    },
    "no_file": {"en": "No file yet.", "zh-CN": "尚未选择文件。"},
    "mapping": {"en": "Column mapping (source)", "zh-CN": "列映射（来源）"},
    "columns": {"en": "Which column holds each field", "zh-CN": "各字段所在的列"},
    "field": {"en": "Loopline field", "zh-CN": "Loopline 字段"},
    "column": {"en": "Column in the file", "zh-CN": "文件中的列"},
    "required": {"en": "required", "zh-CN": "必填"},
    "source": {"en": "Save this mapping as source", "zh-CN": "将此映射保存为来源"},
    "save": {"en": "Save mapping", "zh-CN": "保存映射"},
    "saved": {"en": "Saved mapping {name} ({path}).", "zh-CN": "已保存映射 {name}（{path}）。"},
    "no_folder": {
        "en": "Set LOOPLINE_CONNECTORS_DIR to save mappings.",
        "zh-CN": "请设置 LOOPLINE_CONNECTORS_DIR 以保存映射。",
    },
    "dry_run": {"en": "Dry run", "zh-CN": "试运行"},
    "apply": {"en": "Import", "zh-CN": "导入"},
    "errors": {
        "en": "{n} error(s): nothing was written",
        "zh-CN": "{n} 处错误：未写入任何数据",
    },
    "would": {
        "en": "Dry run: {orders} orders from {rows} rows would be imported; nothing written yet.",
        "zh-CN": "试运行：{rows} 行中的 {orders} 个订单可以导入；尚未写入。",
    },
    "rows": {"en": "rows", "zh-CN": "行"},
    "imported": {
        "en": "Imported {orders} orders from {rows} rows ({counts}); the worker applies them.",
        "zh-CN": "已从 {rows} 行导入 {orders} 个订单（{counts}）；由后台进程应用。",
    },
    "dry_first": {
        "en": "Run a dry run of this file and mapping first.",
        "zh-CN": "请先对此文件和映射进行试运行。",
    },
    "too_large": {"en": "The file is larger than 10 MB.", "zh-CN": "文件超过 10 MB。"},
    "no_db": {"en": "This server has no database.", "zh-CN": "此服务器未连接数据库。"},
    "f.order_id": {"en": "Order number", "zh-CN": "订单号"},
    "f.customer_id": {"en": "Customer ID", "zh-CN": "客户编号"},
    "f.customer_name": {"en": "Customer name", "zh-CN": "客户名称"},
    "f.sku": {"en": "Product code (SKU)", "zh-CN": "物料编码"},
    "f.qty": {"en": "Quantity", "zh-CN": "数量"},
    "f.requested_date": {"en": "Due date", "zh-CN": "交期"},
    "f.priority": {"en": "Priority", "zh-CN": "优先级"},
    "f.sales_rep": {"en": "Sales rep", "zh-CN": "销售"},
    "f.status": {"en": "Status (cancelled)", "zh-CN": "状态（取消）"},
    "f.version": {"en": "Version", "zh-CN": "版本"},
}


def w(key: str, lang: str, **kw: Any) -> str:
    text = WORDS[key].get(lang) or WORDS[key]["en"]
    return text.format(**kw) if kw else text


def _is_admin() -> bool:
    who = acting()
    return who is not None and "admin" in who.roles


def import_mappings(registry: Registry) -> list[str]:
    """The connectors that are column mappings (``auth.kind: import``)."""
    return [n for n in registry.names() if registry.get(n).auth.kind == "import"]


def decode_upload(contents: str | None) -> bytes | None:
    """A dcc.Upload's ``data:...;base64,...`` as bytes (None: nothing or not base64)."""
    if not contents or "," not in contents:
        return None
    try:
        return base64.b64decode(contents.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        return None


def headers_of(name: str, data: bytes) -> list[str]:
    """The file's column names (its header row), in order of first use."""
    rows = read_rows(Path(name), None, data)
    seen: dict[str, None] = {}
    for row in rows[:200]:
        for key in row.cells:
            seen.setdefault(key, None)
    return list(seen)


def render_columns(
    connector: Connector | None, headers: list[str], lang: str, chosen: dict[str, Any] | None
) -> Any:
    """The table of Loopline fields and a dropdown of the file's columns for each."""
    if not headers:
        return html.P(w("no_file", lang), className="muted")
    preset = columns_of(connector, headers) if connector is not None else {}
    options = [{"label": h, "value": h} for h in headers]
    rows = []
    for name in COLUMN_FIELDS:
        value = (chosen or {}).get(name) or preset.get(name)
        label = w(f"f.{name}", lang)
        if name in REQUIRED_COLUMNS:
            label += f" ({w('required', lang)})"
        rows.append(
            html.Tr(
                [
                    html.Td(label),
                    html.Td(
                        dcc.Dropdown(
                            id={"type": COLUMN, "field": name},
                            options=options,
                            value=value if value in headers else None,
                            clearable=True,
                        )
                    ),
                ]
            )
        )
    return html.Table(
        className="table import-columns",
        children=[
            html.Thead(html.Tr([html.Th(w("field", lang)), html.Th(w("column", lang))])),
            html.Tbody(rows),
        ],
    )


def _columns(ids: list[dict[str, str]], values: list[str | None]) -> dict[str, str | None]:
    return {i["field"]: v for i, v in zip(ids, values, strict=False)}


def token(name: str, data: bytes, columns: dict[str, str | None]) -> str:
    """What a dry run checked: the file's bytes and the columns it was read with."""
    h = hashlib.sha256(data)
    h.update(json.dumps([name, columns], sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()


def run_import(
    screens: Screens,
    mapping: str,
    name: str,
    data: bytes,
    columns: dict[str, str | None],
    *,
    dry_run: bool,
    lang: str,
) -> tuple[Any, bool]:
    """Dry-run or import ``data`` (``import_sheet``, as the CLI); the result, and whether it
    is clean (no row errors)."""
    if screens.sessions is None:
        return html.P(w("no_db", lang), className="import-error"), False
    try:
        connector = mapping_from_columns(mapping, mapping, columns)
    except ConnectorFileError as exc:
        return html.P(str(exc), className="import-error"), False
    who = acting()
    actor = f"import:{who.name if who else '?'}:{name}"[:100]
    try:
        done = import_sheet(
            screens.sessions, connector, Path(name), actor=actor, dry_run=dry_run, data=data
        )
    except SheetError as exc:
        return html.P(str(exc), className="import-error"), False
    plan = done.plan
    if plan.errors:
        return html.Div(
            [
                html.H3(w("errors", lang, n=len(plan.errors))),
                html.Ul([html.Li(e, className="import-error") for e in plan.errors]),
            ]
        ), False
    orders = len(plan.events)
    if dry_run:
        listed = [
            html.Li(
                f"{e.type} {e.order.id} v{e.order.version} "
                f"({w('rows', lang)} {', '.join(map(str, rows))})",
                className="import-order",
            )
            for e, rows in plan.events
        ]
        return html.Div(
            [
                html.P(w("would", lang, orders=orders, rows=done.rows), className="import-ok"),
                html.Ul(listed),
            ]
        ), True
    counts = ", ".join(f"{n} {k}" for k, n in sorted(done.counts().items()))
    text = w("imported", lang, orders=orders, rows=done.rows, counts=counts)
    return html.P(text, className="import-done"), True


def layout(screens: Screens, registry_of: Any, lang: str | None = None, **_: Any) -> Any:
    lang = normalize_lang(lang, screens.default_lang)
    if not _is_admin():
        return html.Div(w("not_found", lang), className="page table-empty")
    registry: Registry = registry_of()
    names = import_mappings(registry)
    return html.Div(
        id=ROOT,
        lang=lang,
        className=f"page page--desk page--import lang-{lang}",
        children=[
            dcc.Store(id=LANG, data=lang),
            dcc.Store(id=CHECKED, data=None),
            nav_bar("import", lang),
            html.Main(
                className="desk",
                children=html.Section(
                    className="panel",
                    children=[
                        panel_head(w("title", lang)),
                        dcc.Upload(
                            id=UPLOAD,
                            children=html.Div(w("upload", lang)),
                            className="import-upload",
                            accept=".xlsx,.xlsm,.csv",
                            max_size=MAX_UPLOAD_BYTES,
                            multiple=False,
                        ),
                        html.P(w("no_file", lang), id=FILE_NAME, className="muted"),
                        html.Label(w("mapping", lang), htmlFor=MAPPING),
                        dcc.Dropdown(
                            id=MAPPING,
                            options=names,
                            value="orders-sheet" if "orders-sheet" in names else None,
                            clearable=False,
                        ),
                        html.H3(w("columns", lang)),
                        html.Div(html.P(w("no_file", lang), className="muted"), id=COLUMNS),
                        html.Label(w("source", lang), htmlFor=SOURCE),
                        html.Div(
                            [
                                dcc.Input(id=SOURCE, type="text", placeholder="my-erp-sheet"),
                                html.Button(w("save", lang), id=SAVE, n_clicks=0, className="btn"),
                            ],
                            className="import-save",
                        ),
                        html.Div(
                            [
                                html.Button(
                                    w("dry_run", lang), id=DRY_RUN, n_clicks=0, className="btn"
                                ),
                                html.Button(
                                    w("apply", lang),
                                    id=APPLY,
                                    n_clicks=0,
                                    disabled=True,
                                    className="btn btn--approve",
                                ),
                            ],
                            className="import-actions",
                        ),
                        html.Div(id=MESSAGE, role="status"),
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
        title="Loopline · Import",
        name="import",
        layout=partial(layout, screens, registry_of),
    )

    @app.callback(
        Output(COLUMNS, "children"),
        Output(FILE_NAME, "children"),
        Input(UPLOAD, "contents"),
        Input(MAPPING, "value"),
        State(UPLOAD, "filename"),
        State(LANG, "data"),
        prevent_initial_call=True,
    )
    async def _columns_of(
        contents: str | None, mapping: str | None, filename: str | None, lang: str | None
    ) -> tuple[Any, Any]:
        lang = normalize_lang(lang, screens.default_lang)
        if not _is_admin():
            return dash.no_update, dash.no_update
        data = decode_upload(contents)
        if data is None or not filename:
            return html.P(w("no_file", lang), className="muted"), w("no_file", lang)
        registry: Registry = registry_of()
        connector = registry.connectors.get(mapping or "")
        try:
            headers = await asyncio.to_thread(headers_of, filename, data)
        except SheetError as exc:
            return html.P(str(exc), className="import-error"), filename
        return render_columns(connector, headers, lang, None), filename

    @app.callback(
        Output(RESULT, "children"),
        Output(CHECKED, "data"),
        Output(APPLY, "disabled"),
        Input(DRY_RUN, "n_clicks"),
        Input(APPLY, "n_clicks"),
        State(UPLOAD, "contents"),
        State(UPLOAD, "filename"),
        State(MAPPING, "value"),
        State({"type": COLUMN, "field": ALL}, "id"),
        State({"type": COLUMN, "field": ALL}, "value"),
        State(CHECKED, "data"),
        State(LANG, "data"),
        prevent_initial_call=True,
    )
    async def _run(
        _dry: int,
        _apply: int,
        contents: str | None,
        filename: str | None,
        mapping: str | None,
        col_ids: list[dict[str, str]],
        col_values: list[str | None],
        checked: str | None,
        lang: str | None,
    ) -> tuple[Any, Any, bool]:
        lang = normalize_lang(lang, screens.default_lang)
        if not _is_admin():
            return html.P(w("not_found", lang)), None, True
        data = decode_upload(contents)
        if data is None or not filename:
            return html.P(w("no_file", lang), className="import-error"), None, True
        if len(data) > MAX_UPLOAD_BYTES:
            return html.P(w("too_large", lang), className="import-error"), None, True
        columns = _columns(col_ids, col_values)
        now = token(mapping or "", data, columns)
        dry = ctx.triggered_id != APPLY
        if not dry and checked != now:
            return html.P(w("dry_first", lang), className="import-error"), None, True
        shown, clean = await asyncio.to_thread(
            run_import,
            screens,
            mapping or "import",
            filename,
            data,
            columns,
            dry_run=dry,
            lang=lang,
        )
        if dry and clean:
            return shown, now, False
        return shown, None, True

    @app.callback(
        Output(MESSAGE, "children"),
        Output(MAPPING, "options"),
        Output(MAPPING, "value"),
        Input(SAVE, "n_clicks"),
        State(SOURCE, "value"),
        State({"type": COLUMN, "field": ALL}, "id"),
        State({"type": COLUMN, "field": ALL}, "value"),
        State(LANG, "data"),
        prevent_initial_call=True,
    )
    def _save(
        _: int,
        source: str | None,
        col_ids: list[dict[str, str]],
        col_values: list[str | None],
        lang: str | None,
    ) -> tuple[Any, Any, Any]:
        lang = normalize_lang(lang, screens.default_lang)
        if not _is_admin():
            return w("not_found", lang), dash.no_update, dash.no_update
        from loopline.settings import Settings

        folder = Settings().connectors_dir
        if folder is None:
            return html.Span(w("no_folder", lang), className="import-error"), *(dash.no_update,) * 2
        name = (source or "").strip()
        try:
            connector = mapping_from_columns(name, name, _columns(col_ids, col_values))
        except ConnectorFileError as exc:
            message = str(exc).replace("name:", "source:", 1)
            return html.Span(message, className="import-error"), *(dash.no_update,) * 2
        path = save_mapping(connector, Path(folder))
        registry: Registry = registry_of()
        registry.add(connector)
        registry.files[connector.name] = path
        text = w("saved", lang, name=name, path=path.name)
        return html.Span(text, className="import-ok"), import_mappings(registry), name
