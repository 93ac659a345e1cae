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
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from loopline.ingest.crm.connector import Connector, FieldSpec, MappingError
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


def read_rows(path: Path, sheet: str | None = None) -> list[Row]:
    """The data rows of ``path`` (xlsx/xlsm or csv) keyed by the header row's names."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        table = list(_xlsx(path, sheet))
    elif suffix == ".csv":
        table = list(_csv(path))
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


def _xlsx(path: Path, sheet: str | None) -> Iterator[tuple[int, list[Any]]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
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


def _csv(path: Path) -> Iterator[tuple[int, list[Any]]]:
    raw = path.read_bytes()
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


def _column(spec: FieldSpec | None, row: Row) -> str:
    """The header a field is read from, as the sheet spells it (quoted)."""
    if spec is None or not spec.path:
        return '"?"'
    names = re.findall(r'"([^"]+)"', spec.path) or [spec.path.rsplit(".", 1)[-1]]
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


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


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
