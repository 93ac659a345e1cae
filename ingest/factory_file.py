"""File import of factory master data: sites, products, lines, customers and materials.

The format (JSON)::

    {"sites": [{"id": "plant-1", "name": "Suzhou"}],
     "products": [{"sku": "GEAR-A", "name": "Spur gear"}],
     "lines": [{"id": "L1", "site": "plant-1", "name": "Gear cell", "rates": {"GEAR-A": 120},
                "calendar": {"timezone": "Asia/Shanghai",
                             "shifts": [{"days": ["mon", "tue"], "start": "06:00",
                                         "end": "22:00"}],
                             "breaks": [{"days": ["mon", "tue"], "start": "12:00",
                                         "end": "12:30"}],
                             "holidays": ["2026-12-25"],
                             "closures": [{"start": "2026-12-02T08:00:00Z",
                                           "end": "2026-12-02T12:00:00Z",
                                           "reason": "maintenance"}]},
                "changeovers": {"GEAR-A": {"GEAR-B": 0.5}}}],
     "customers": [{"id": "C-1", "name": "Acme", "importance": 2}],
     "materials": {"items": {"STEEL": {"name": "Steel bar", "unit": "kg",
                                       "on_hand": 900, "lead_time_days": 7}},
                   "bom": {"GEAR-A": {"STEEL": 0.4}},
                   "purchase_orders": [{"id": "PO-1", "material": "STEEL", "qty": 500,
                                        "arrives": "2026-12-03T08:00:00Z"}]},
     "downtime": {"small_stop_max_s": 300,
                  "shifts": [{"name": "early", "start": "06:00", "end": "14:00"}],
                  "reasons": [{"code": "BD", "name": "Breakdown", "loss": "breakdown",
                               "children": [{"code": "BD-MECH", "name": "Mechanical"}]}]}}

Every part is optional. ``downtime`` replaces the downtime reason tree (the form of
``loopline.models.downtime.DowntimeConfig``: each code belongs to one of the six big
losses; ``shifts`` are the daily shifts of lines whose calendar names none).

A line's ``calendar`` has the form of the planner's ``calendars``
entries (no calendar: the line works around the clock); ``changeovers`` are hours per
product pair. ``materials`` has the form of the planner's ``materials``.

The file is checked strictly, and every problem is listed at once: numbers are JSON numbers
(``60``, never ``"60"``); timestamps are RFC 3339 with a zone (``Z`` or ``+08:00``); site
and line ids become MQTT topic segments, so they match ``[A-Za-z0-9_-]+`` (at most 64
characters); SKUs, customer, material and purchase-order ids match ``[A-Za-z0-9_.-]+``
(at most 64); names, units and reasons carry no control characters (NUL, newline, ...)
and are bounded; ids are unique within their list.

Importing is an upsert: existing rows are updated; rates of a listed line are replaced, and
so are its calendar and changeovers when the file gives them; a product listed in ``bom``
gets exactly the BOM lines the file gives.
"""

from __future__ import annotations

import contextlib
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, ValidationError
from pydantic_core import PydanticCustomError
from sqlalchemy import select
from sqlalchemy.orm import Session

from loopline.models.audit import record
from loopline.models.downtime import DowntimeConfig, save_tree
from loopline.models.events import format_path
from loopline.models.planning.problem import (
    MAX_TOPIC_NAME_CHARS,
    Days,
    Hours,
    NonNegative,
    ProblemError,
    Quantity,
    Text,
    Timestamp,
    TopicName,
    error_message,
    parse_calendar,
    printable,
)
from loopline.models.records import (
    BomLine,
    Customer,
    Line,
    LineRate,
    Material,
    Product,
    PurchaseOrder,
    Site,
)

_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")
MAX_KEY_CHARS = 64  # the id columns
MAX_UNIT_CHARS = 20


def _key_text(value: str) -> str:
    printable(value)
    if not _KEY.match(value):
        raise PydanticCustomError(
            "key", "must match [A-Za-z0-9_.-]+, got {value}", {"value": repr(value)[:40]}
        )
    return value


# SKUs, customers, materials, purchase orders: stored ids, never topic segments.
Id = Annotated[str, Field(min_length=1, max_length=MAX_KEY_CHARS), AfterValidator(_key_text)]

Importance = Annotated[int, Strict(), Field(ge=1, le=10)]
assert MAX_TOPIC_NAME_CHARS <= MAX_KEY_CHARS  # site and line ids fit their columns


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteIn(_In):
    id: TopicName
    name: Text


class ProductIn(_In):
    sku: Id
    name: Text


class LineIn(_In):
    id: TopicName
    site: TopicName
    name: Text
    rates: dict[Id, Quantity]
    # Checked with the planner's own calendar parser (``parse_factory``).
    calendar: dict[str, Any] | None = None
    changeovers: dict[Id, dict[Id, Hours]] | None = None


class CustomerIn(_In):
    id: Id
    name: Text
    importance: Importance = 1


class MaterialIn(_In):
    name: Text = ""
    unit: Annotated[Text, Field(max_length=MAX_UNIT_CHARS)] = ""
    on_hand: NonNegative = 0.0
    lead_time_days: Days = 0.0


class PurchaseOrderIn(_In):
    id: Id
    material: Id
    qty: Quantity
    arrives: Timestamp  # RFC 3339 with a zone
    status: Literal["open", "received"] = "open"


class MaterialsIn(_In):
    items: dict[Id, MaterialIn] = {}
    bom: dict[Id, dict[Id, Quantity]] = {}
    purchase_orders: list[PurchaseOrderIn] = []


class FactoryFile(_In):
    sites: list[SiteIn] = []
    products: list[ProductIn] = []
    lines: list[LineIn] = []
    customers: list[CustomerIn] = []
    materials: MaterialsIn | None = None
    downtime: DowntimeConfig | None = None


class FactoryFileError(ValueError):
    """The file is not valid; ``errors`` name each failing field."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def parse_factory(data: Any) -> FactoryFile:
    """Validate a decoded factory file, naming failing fields like ``lines[0].rates.X``.

    Every problem is listed: bad fields, and the references and calendars of the rest of
    the file. References are checked against the file's own lists when it has them;
    ``import_factory`` checks the rest against the database.
    """
    try:
        factory = FactoryFile.model_validate(data)
    except ValidationError as exc:
        errors = [_error(_path(e["loc"]), error_message(e)) for e in exc.errors()]
        rest, kept, names = _without_failing(data, exc.errors())
        if rest is not None:
            # When what is left still fails, the field errors must do.
            with contextlib.suppress(ValidationError):
                errors += _remapped(_file_errors(FactoryFile.model_validate(rest), names), kept)
        raise FactoryFileError(_unique(errors)) from None
    errors = _file_errors(factory, _Names())
    if errors:
        raise FactoryFileError(_unique(errors))
    return factory


class _Names:
    """Ids of failing parts, still known to references (a bad site is no unknown site)."""

    def __init__(self) -> None:
        self.skus: set[str] = set()
        self.sites: set[str] = set()
        self.materials: set[str] = set()


_LISTS = ("sites", "products", "lines", "customers")


def _without_failing(
    data: Any, errors: list[Any]
) -> tuple[dict[str, Any] | None, dict[str, list[int]], _Names]:
    """The file without its failing items, which items were kept, and the failing ids."""
    names = _Names()
    if not isinstance(data, dict):
        return None, {}, names
    doc = dict(data)
    out: dict[str, set[int]] = {name: set() for name in (*_LISTS, "purchase_orders")}
    for error in errors:
        loc = tuple(error["loc"])
        head = loc[0] if loc else None
        if head == "lines" and len(loc) > 2 and isinstance(doc.get(head), list):
            if not _salvage_line(doc, loc):
                out[head].add(loc[1])
        elif head in _LISTS and len(loc) > 1 and isinstance(doc.get(head), list):
            out[head].add(loc[1])
        elif head == "materials" and len(loc) > 2 and isinstance(doc.get(head), dict):
            materials = doc["materials"] = dict(doc["materials"])
            if loc[1] == "purchase_orders":
                out["purchase_orders"].add(loc[2])
            elif isinstance(materials.get(loc[1]), dict):
                if loc[1] == "items" and isinstance(loc[2], str):
                    names.materials.add(loc[2])
                materials[loc[1]] = {k: v for k, v in materials[loc[1]].items() if k != loc[2]}
        elif head is not None:
            doc.pop(head, None)
    kept: dict[str, list[int]] = {}
    for name in _LISTS:
        items = doc.get(name)
        if isinstance(items, list):
            kept[name] = [i for i in range(len(items)) if i not in out[name]]
            for i in out[name]:
                item = items[i]
                if (
                    isinstance(item, dict)
                    and name == "products"
                    and isinstance(item.get("sku"), str)
                ):
                    names.skus.add(item["sku"])
                if isinstance(item, dict) and name == "sites" and isinstance(item.get("id"), str):
                    names.sites.add(item["id"])
            doc[name] = [items[i] for i in kept[name]]
    kept_materials = doc.get("materials")
    if isinstance(kept_materials, dict) and isinstance(kept_materials.get("purchase_orders"), list):
        orders = kept_materials["purchase_orders"]
        kept["purchase_orders"] = [k for k in range(len(orders)) if k not in out["purchase_orders"]]
        doc["materials"] = {
            **kept_materials,
            "purchase_orders": [orders[k] for k in kept["purchase_orders"]],
        }
    return doc, kept, names


def _salvage_line(doc: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    """Make a failing line field valid in place, so the line's references are still
    checked; False when the line must be left out (no object, or a bad site)."""
    lines = doc["lines"] = list(doc["lines"])
    index, name = loc[1], loc[2]
    if not isinstance(lines[index], dict) or name == "site":
        return False
    line = lines[index] = dict(lines[index])
    if name == "id":
        line["id"] = f"line-{index}"
    elif name == "name":
        line["name"] = ""
    elif name == "rates" and len(loc) > 3 and isinstance(line.get("rates"), dict):
        rates = line["rates"] = dict(line["rates"])
        if loc[-1] == "[key]":
            rates.pop(loc[3], None)
        else:
            rates[loc[3]] = 1.0
    elif name == "rates":
        line["rates"] = {}
    else:  # calendar, changeovers (optional) or an unknown field
        line.pop(name, None)
    return True


_INDEXED = re.compile(r"^(sites|products|lines|customers|materials\.purchase_orders)\[(\d+)\]")


def _remapped(errors: list[dict[str, str]], kept: dict[str, list[int]]) -> list[dict[str, str]]:
    """Errors of the reduced file with the original list indices."""
    out = []
    for e in errors:
        match = _INDEXED.match(e["field"])
        if match:
            indices = kept[match.group(1).removeprefix("materials.")]
            field = f"{match.group(1)}[{indices[int(match.group(2))]}]" + e["field"][match.end() :]
            e = _error(field, e["message"])
        out.append(e)
    return out


def _path(loc: Any) -> str:
    return format_path([part for part in loc if part != "[key]"]) or "(root)"


def _file_errors(factory: FactoryFile, failing: _Names) -> list[dict[str, str]]:
    """References, calendars and duplicate ids of a file whose fields are valid."""
    skus = {p.sku for p in factory.products}
    sites = {s.id for s in factory.sites}
    file_skus = (skus | failing.skus) if skus or failing.skus else None
    file_sites = (sites | failing.sites) if sites or failing.sites else None
    errors = _duplicates(factory)
    for i, line in enumerate(factory.lines):
        errors += _line_references(i, line, file_skus, file_sites)
        if line.calendar is not None:
            try:
                parse_calendar(line.id, line.calendar, naive_is_utc=False)
            except ProblemError as exc:
                errors += [
                    _error(
                        f"lines[{i}].calendar.{issue.path}".removesuffix(".(root)"), issue.message
                    )
                    for issue in exc.errors
                ]
    if factory.materials is not None:
        known = failing.materials or None
        errors += _check_materials(factory.materials, file_skus, known_materials=known)
    return errors


def _duplicates(factory: FactoryFile) -> list[dict[str, str]]:
    """The same id twice in one list (the upsert would store one and fail on the other)."""
    errors = []
    lists: list[tuple[str, list[str]]] = [
        ("sites", [s.id for s in factory.sites]),
        ("products", [p.sku for p in factory.products]),
        ("lines", [ln.id for ln in factory.lines]),
        ("customers", [c.id for c in factory.customers]),
    ]
    if factory.materials is not None:
        lists.append(
            ("materials.purchase_orders", [po.id for po in factory.materials.purchase_orders])
        )
    for name, ids in lists:
        seen: set[str] = set()
        for i, key in enumerate(ids):
            if key in seen:
                field = "sku" if name == "products" else "id"
                errors.append(_error(f"{name}[{i}].{field}", f"duplicate id '{key}'"))
            seen.add(key)
    return errors


def _check_materials(
    materials: MaterialsIn, skus: set[str] | None, *, known_materials: set[str] | None
) -> list[dict[str, str]]:
    """Unknown products in the BOM and unknown materials. ``skus`` None skips products;
    ``known_materials`` None checks materials only when the file lists some."""
    names = set(materials.items) | (known_materials or set())
    check = known_materials is not None or bool(materials.items)
    errors = []
    for sku, parts in materials.bom.items():
        if skus is not None and sku not in skus:
            errors.append(_error(f"materials.bom.{sku}", f"unknown product '{sku}'"))
        for material in parts:
            if check and material not in names:
                errors.append(
                    _error(f"materials.bom.{sku}.{material}", f"unknown material '{material}'")
                )
    for k, po in enumerate(materials.purchase_orders):
        if check and po.material not in names:
            errors.append(
                _error(
                    f"materials.purchase_orders[{k}].material",
                    f"unknown material '{po.material}'",
                )
            )
    return errors


def _line_references(
    i: int, line: LineIn, skus: set[str] | None, sites: set[str] | None
) -> list[dict[str, str]]:
    """A line's unknown site and products (None skips that check: the file alone may
    rely on master data the database already has)."""
    errors = []
    if sites is not None and line.site not in sites:
        errors.append(_error(f"lines[{i}].site", f"unknown site '{line.site}'"))
    if skus is None:
        return errors
    for sku in line.rates:
        if sku not in skus:
            errors.append(_error(f"lines[{i}].rates.{sku}", f"unknown product '{sku}'"))
    for before, row in (line.changeovers or {}).items():
        if before not in skus:
            errors.append(_error(f"lines[{i}].changeovers.{before}", f"unknown product '{before}'"))
        for after in row:
            if after not in skus:
                errors.append(
                    _error(f"lines[{i}].changeovers.{before}.{after}", f"unknown product '{after}'")
                )
    return errors


def _unique(errors: list[dict[str, str]]) -> list[dict[str, str]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for e in errors:
        if (e["field"], e["message"]) not in seen:
            seen.add((e["field"], e["message"]))
            out.append(e)
    return out


def import_factory(session: Session, factory: FactoryFile, *, actor: str) -> dict[str, int]:
    """Upsert the file's rows in the caller's transaction; counts per kind.

    Raises ``FactoryFileError`` for references that neither the file nor the database know
    (the caller's transaction then rolls back).
    """
    _check_against_database(session, factory)
    for s in factory.sites:
        _upsert(session, Site, s.id, name=s.name)
    for p in factory.products:
        _upsert(session, Product, p.sku, name=p.name)
    for c in factory.customers:
        _upsert(session, Customer, c.id, name=c.name, importance=c.importance)
    session.flush()
    for ln in factory.lines:
        fields: dict[str, Any] = {"site_id": ln.site, "name": ln.name}
        if ln.calendar is not None:
            fields["calendar"] = ln.calendar
        if ln.changeovers is not None:
            fields["changeovers"] = {b: dict(row) for b, row in ln.changeovers.items()}
        line = _upsert(session, Line, ln.id, **fields)
        line.rates = [LineRate(sku=sku, units_per_hour=uph) for sku, uph in ln.rates.items()]
    counts = {
        "sites": len(factory.sites),
        "products": len(factory.products),
        "lines": len(factory.lines),
        "customers": len(factory.customers),
    }
    if factory.materials is not None:
        counts.update(_import_materials(session, factory.materials))
    if factory.downtime is not None:
        save_tree(session, factory.downtime)
        counts["downtime_reasons"] = _count_reasons(factory.downtime.reasons)
    record(
        session,
        actor=actor,
        action="factory.imported",
        entity="factory",
        entity_id="-",
        details=counts,
    )
    return counts


def _count_reasons(nodes: list[Any]) -> int:
    return sum(1 + _count_reasons(n.children) for n in nodes)


def _import_materials(session: Session, materials: MaterialsIn) -> dict[str, int]:
    for material_id, m in materials.items.items():
        _upsert(
            session,
            Material,
            material_id,
            name=m.name or material_id,
            unit=m.unit,
            on_hand=m.on_hand,
            lead_time_days=m.lead_time_days,
        )
    session.flush()
    for sku, parts in materials.bom.items():
        for old in session.scalars(select(BomLine).where(BomLine.sku == sku)):
            session.delete(old)
        session.flush()
        session.add_all(
            BomLine(sku=sku, material_id=material, qty_per_unit=qty)
            for material, qty in parts.items()
        )
    for po in materials.purchase_orders:
        _upsert(
            session,
            PurchaseOrder,
            po.id,
            material_id=po.material,
            qty=po.qty,
            arrives_at=po.arrives,
            status=po.status,
        )
    session.flush()
    return {
        "materials": len(materials.items),
        "boms": len(materials.bom),
        "purchase_orders": len(materials.purchase_orders),
    }


def _check_against_database(session: Session, factory: FactoryFile) -> None:
    skus = {p.sku for p in factory.products} | set(session.scalars(select(Product.sku)))
    sites = {s.id for s in factory.sites} | set(session.scalars(select(Site.id)))
    errors = []
    for i, line in enumerate(factory.lines):
        errors += _line_references(i, line, skus, sites)
    if factory.materials is not None:
        known = set(session.scalars(select(Material.id)))
        errors += _check_materials(factory.materials, skus, known_materials=known)
    if errors:
        raise FactoryFileError(_unique(errors))


def _upsert(session: Session, model: Any, key: str, **fields: Any) -> Any:
    row = session.get(model, key)
    if row is None:
        pk = "sku" if model is Product else "id"
        row = model(**{pk: key}, **fields)
        session.add(row)
    else:
        for k, v in fields.items():
            setattr(row, k, v)
    return row
