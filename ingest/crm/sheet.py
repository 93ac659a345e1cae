"""Importing orders from a spreadsheet (xlsx or csv): ``loopline import-orders``.

Rows are read with their header row's names (openpyxl in read-only mode; text cells keep
their leading zeros, and so do number cells formatted with zeros such as ``00000``), grouped
into orders by the order-number column and mapped by an import connector file (the column
mapping, kept per source: ``connectors/orders-sheet.yaml`` is the shipped one). Every row is
checked first; any error is listed as ``row 17, column "交期": not a date`` and nothing is
written. Otherwise each order goes into the inbox like a CRM event (versions, the approval
gate, the replan: the worker applies it).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from loopline.ingest.crm.connector import Connector, ConnectorFileError, FieldSpec, MappingError
from loopline.ingest.crm.receive import inbox_source
from loopline.models.events import OrderCancelled, OrderUpserted, parse_crm_event
from loopline.models.intake import Recorded, record_received
from loopline.models.records import Product

ZEROS_FORMAT = re.compile(r"^0+$")
MESSAGES = {
    "requested_date": "not a date",
    "qty": "not a whole number above 0",
    "version": "not a whole number",
}


class SheetError(ValueError):
    """A file that cannot be read as a table at all (not the rows' errors)."""


@dataclass
class Row:
    number: int  # as the spreadsheet numbers it (the header is row 1 usually)
    cells: dict[str, Any]


@dataclass
class ImportPlan:
    """What a file would import: the events by order, and every row-level error."""

    events: list[tuple[OrderUpserted | OrderCancelled, list[int]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    digest: str = ""


def read_rows(path: Path, sheet: str | None = None, data: bytes | None = None) -> list[Row]:
    """The data rows of ``path`` (xlsx/xlsm or csv) keyed by the header row's names;
    ``data``: the file's bytes (an upload), ``path`` then only names it."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        table = list(_xlsx(path, sheet, data))
    elif suffix == ".csv":
        table = list(_csv(path, data))
    else:
        raise SheetError(f"{path.name}: not an .xlsx or .csv file")
    # The header: the first row naming two columns or more (a title row above it names one).
    filled = [sum(_filled(c) for c in cells) for _, cells in table]
    header_at = next((i for i, n in enumerate(filled) if n >= 2), None)
    if header_at is None:
        header_at = next((i for i, n in enumerate(filled) if n), None)
    if header_at is None:
        raise SheetError(f"{path.name}: no header row")
    _, header = table[header_at]
    names = [str(h).strip() if _filled(h) else "" for h in header]
    rows = []
    for number, cells in table[header_at + 1 :]:
        if not any(_filled(c) for c in cells):
            continue  # a blank row between blocks
        rows.append(Row(number, {n: _clean(c) for n, c in zip(names, cells, strict=False) if n}))
    return rows


def _filled(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, datetime) and value.hour == value.minute == value.second == 0:
        return value.date().isoformat()  # a date cell
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _xlsx(path: Path, sheet: str | None, data: bytes | None) -> Iterator[tuple[int, list[Any]]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(
            io.BytesIO(data) if data is not None else path, read_only=True, data_only=True
        )
    except Exception as exc:  # openpyxl raises many kinds for a broken file
        raise SheetError(f"{path.name}: cannot read the workbook: {exc}") from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise SheetError(f"{path.name}: no sheet '{sheet}' (has {', '.join(book.sheetnames)})")
        ws = book[sheet] if sheet else book.worksheets[0]
        for number, cells in enumerate(ws.iter_rows(), start=1):
            yield number, [_xlsx_value(c) for c in cells]
    finally:
        book.close()


def _xlsx_value(cell: Any) -> Any:
    value = getattr(cell, "value", None)
    fmt = getattr(cell, "number_format", "") or ""
    # A number shown with leading zeros ("00123") is a code: keep it as it is shown.
    if isinstance(value, int | float) and ZEROS_FORMAT.match(fmt) and float(value).is_integer():
        return str(int(value)).zfill(len(fmt))
    return value


def _csv(path: Path, data: bytes | None) -> Iterator[tuple[int, list[Any]]]:
    raw = data if data is not None else path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:  # Excel in a Chinese locale saves CSV as GB18030
        text = raw.decode("gb18030")
    for number, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        yield number, list(cells)


def plan_import(
    connector: Connector, rows: list[Row], known_skus: set[str], *, version: int
) -> ImportPlan:
    """Group rows into orders, map and validate each; every error names its row and column."""
    plan = ImportPlan()
    f = connector.fields
    if f is None:
        raise SheetError(f"connector {connector.name} has no field mapping")
    groups: dict[str, list[Row]] = {}
    for row in rows:
        order_id = f.order_id.value({"order": row.cells})
        if order_id in (None, ""):
            plan.errors.append(f"row {row.number}, column {_column(f.order_id, row)}: is empty")
            continue
        groups.setdefault(str(order_id), []).append(row)
    for group in groups.values():
        record = {"order": group[0].cells, "lines": [r.cells for r in group], "_version": version}
        try:
            mapped = connector.map_record(record)
        except MappingError as exc:
            plan.errors += [
                f"row {group[0].number}: {e['field']}: {e['message']}" for e in exc.errors
            ]
            continue
        if mapped.kind == "ignore":
            continue
        try:
            event = parse_crm_event(mapped.body)
        except ValidationError as exc:
            plan.errors += [_row_error(connector, group, err) for err in exc.errors()]
            continue
        if isinstance(event, OrderUpserted):
            unknown = [i for i, ln in enumerate(event.order.lines) if ln.sku not in known_skus]
            for i in unknown:
                column = _column(f.lines.sku if f.lines else None, group[i])
                sku = event.order.lines[i].sku
                plan.errors.append(
                    f"row {group[i].number}, column {column}: unknown product '{sku}'"
                )
            if unknown:
                continue
        plan.events.append((event, [r.number for r in group]))
    return plan


QUOTED = re.compile(r'"((?:[^"\\]|\\.)+)"')


def headers_in(path: str) -> list[str]:
    """The quoted identifiers of a JMESPath (the headers it reads), unescaped."""
    out = []
    for raw in QUOTED.findall(path):
        try:
            out.append(json.loads(f'"{raw}"'))
        except ValueError:
            out.append(raw)
    return out


def _column(spec: FieldSpec | None, row: Row) -> str:
    """The header a field is read from, as the sheet spells it (quoted)."""
    if spec is None or not spec.path:
        return '"?"'
    names = headers_in(spec.path) or [spec.path.rsplit(".", 1)[-1]]
    present = next((n for n in names if n in row.cells), names[0])
    return f'"{present}"'


def _row_error(connector: Connector, group: list[Row], err: Any) -> str:
    loc = [p for p in err["loc"] if p not in ("event", "order.upserted", "order.cancelled")]
    f = connector.fields
    assert f is not None
    row, spec, name = group[0], None, ""
    if loc[:2] == ["order", "lines"] and len(loc) >= 3 and isinstance(loc[2], int) and f.lines:
        row = group[loc[2]] if loc[2] < len(group) else group[-1]
        name = str(loc[3]) if len(loc) > 3 else "sku"
        spec = f.lines.qty if name == "qty" else f.lines.sku
    elif loc[:1] == ["order"] and len(loc) >= 2:
        name = str(loc[1])
        sub = str(loc[2]) if len(loc) > 2 else "id"
        spec = {
            "id": f.order_id,
            "version": f.version,
            "requested_date": f.requested_date,
            "priority": f.priority,
            "sales_rep": f.sales_rep,
            "customer": f.customer_name if sub == "name" else f.customer_id,
        }.get(name)
    message = err["msg"]
    if err["type"] == "missing" or err.get("input") is None:
        message = "is empty"
    elif name in MESSAGES:
        message = MESSAGES[name]
    return f"row {row.number}, column {_column(spec, row)}: {message}"


def known_products(session: Session) -> set[str]:
    return set(session.scalars(select(Product.sku)))


def digest(path: Path, data: bytes | None = None) -> str:
    return hashlib.sha256(data if data is not None else path.read_bytes()).hexdigest()[:16]


@dataclass
class Imported:
    """One import: its plan (errors, events), the rows read, and what the inbox answered
    (empty for a dry run or when any row has an error: then nothing is written)."""

    plan: ImportPlan
    rows: int
    recorded: list[Recorded] = field(default_factory=list)
    dry_run: bool = False

    @property
    def written(self) -> bool:
        return bool(self.recorded)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.recorded:
            out[r.outcome] = out.get(r.outcome, 0) + 1
        return out


def import_sheet(
    sessions: sessionmaker[Session],
    connector: Connector,
    path: Path,
    *,
    actor: str,
    dry_run: bool,
    sheet: str | None = None,
    data: bytes | None = None,
    version: int | None = None,
) -> Imported:
    """Read, check every row, and (unless ``dry_run`` or any error) put the orders in the
    inbox: ``loopline import-orders`` and the /import screen both call this. Raises
    SheetError for a file that is not a table."""
    from loopline.models.clock import utcnow

    rows = read_rows(path, sheet, data)
    with sessions() as session:
        known = known_products(session)
    stamp = version if version is not None else int(utcnow().timestamp() * 1000)
    plan = plan_import(connector, rows, known, version=stamp)
    plan.digest = digest(path, data)
    done = Imported(plan=plan, rows=len(rows), dry_run=dry_run)
    if not plan.errors and not dry_run:
        done.recorded = record_plan(sessions, connector, plan, actor=actor)
    return done


# The Loopline fields a column mapping names a header for (the /import screen's table).
COLUMN_FIELDS = (
    "order_id",
    "customer_id",
    "customer_name",
    "sku",
    "qty",
    "requested_date",
    "priority",
    "sales_rep",
    "status",
    "version",
)
REQUIRED_COLUMNS = ("order_id", "customer_id", "customer_name", "sku", "qty", "requested_date")
PRIORITY_WORDS = {
    "普通": "normal",
    "紧急": "high",
    "加急": "rush",
    "normal": "normal",
    "high": "high",
    "rush": "rush",
}
CANCEL_WORDS = {"取消": "cancel", "已取消": "cancel", "cancel": "cancel", "cancelled": "cancel"}


def _spec_of(connector: Connector, name: str) -> FieldSpec | None:
    f = connector.fields
    if f is None:
        return None
    if name in ("sku", "qty"):
        return getattr(f.lines, name) if f.lines else None
    if name == "status":
        return f.kind
    return getattr(f, name, None)


def columns_of(connector: Connector, headers: list[str]) -> dict[str, str | None]:
    """For each of COLUMN_FIELDS, the header of ``headers`` the mapping reads (or None)."""
    out: dict[str, str | None] = {}
    for name in COLUMN_FIELDS:
        spec = _spec_of(connector, name)
        wanted = headers_in(spec.path or "") if spec else []
        if spec and spec.path and not wanted:
            wanted = [spec.path.rsplit(".", 1)[-1]]
        out[name] = next((h for h in wanted if h in headers), None)
    return out


def _quoted(prefix: str, header: str) -> str:
    return prefix + json.dumps(header, ensure_ascii=False)


def mapping_from_columns(name: str, title: str, columns: dict[str, str | None]) -> Connector:
    """An import connector reading each Loopline field from the header ``columns`` names;
    raises ConnectorFileError naming a missing column or a bad name."""
    missing = [c for c in REQUIRED_COLUMNS if not columns.get(c)]
    if missing:
        raise ConnectorFileError(f"columns.{missing[0]}: choose the column holding it")

    def order(col: str, **kw: Any) -> dict[str, Any] | None:
        header = columns.get(col)
        return {"path": _quoted("order.", header), **kw} if header else None

    status = columns.get("status")
    version = columns.get("version")
    fields: dict[str, Any] = {
        "kind": (
            {"path": _quoted("order.", status), "map": CANCEL_WORDS, "otherwise": "upsert"}
            if status
            else {"const": "upsert"}
        ),
        "order_id": order("order_id", type="str"),
        "version": (
            {"path": f"{_quoted('order.', version)} || _version", "type": "int"}
            if version
            else {"path": "_version", "type": "int"}
        ),
        "customer_id": order("customer_id", type="str"),
        "customer_name": order("customer_name"),
        "lines": {
            "path": "lines",
            "sku": {"path": json.dumps(columns["sku"], ensure_ascii=False), "type": "str"},
            "qty": {"path": json.dumps(columns["qty"], ensure_ascii=False), "type": "int"},
        },
        "requested_date": order("requested_date", type="date"),
    }
    if columns.get("priority"):
        fields["priority"] = order("priority", map=PRIORITY_WORDS, default="normal")
    if columns.get("sales_rep"):
        fields["sales_rep"] = order("sales_rep", type="str")
    data = {"name": name, "title": title, "auth": {"kind": "import"}, "fields": fields}
    try:
        return Connector.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConnectorFileError(
            f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        ) from None


def save_mapping(connector: Connector, folder: Path) -> Path:
    """Write an import connector into the site's connectors folder (``<name>.yaml``)."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{connector.name}.yaml"
    data = connector.model_dump(mode="json", exclude_defaults=True)
    header = (
        f"# Column mapping '{connector.name}' saved on the /import screen; "
        f"`loopline import-orders FILE --mapping {connector.name}` uses it too.\n"
    )
    path.write_text(header + yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def record_plan(
    sessions: sessionmaker[Session], connector: Connector, plan: ImportPlan, *, actor: str
) -> list[Recorded]:
    """Put every planned order into the inbox (the same file again: duplicates)."""
    out = []
    for event, _ in plan.events:
        out.append(
            record_received(
                sessions,
                event=event,
                source=inbox_source(connector.name),
                webhook_id=f"import:{plan.digest}:{event.order.id}"[:200],
                raw=event.model_dump_json(),
                actor=actor,
            )
        )
    return out
