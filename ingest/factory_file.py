"""File import of factory master data: sites, products, lines with rates, customers.

The format (JSON)::

    {"sites": [{"id": "plant-1", "name": "Suzhou"}],
     "products": [{"sku": "GEAR-A", "name": "Spur gear"}],
     "lines": [{"id": "L1", "site": "plant-1", "name": "Gear cell", "rates": {"GEAR-A": 120}}],
     "customers": [{"id": "C-1", "name": "Acme", "importance": 2}]}

Importing is an upsert: existing rows are updated, rates of a listed line are replaced.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy.orm import Session

from models.audit import record
from models.events import format_path
from models.records import Customer, Line, LineRate, Product, Site

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+$", min_length=1, max_length=64)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteIn(_In):
    id: Id
    name: str


class ProductIn(_In):
    sku: Id
    name: str


class LineIn(_In):
    id: Id
    site: Id
    name: str
    rates: dict[Id, Annotated[float, Field(gt=0)]]


class CustomerIn(_In):
    id: Id
    name: str
    importance: int = Field(default=1, ge=1, le=10)


class FactoryFile(_In):
    sites: list[SiteIn] = []
    products: list[ProductIn] = []
    lines: list[LineIn] = []
    customers: list[CustomerIn] = []


class FactoryFileError(ValueError):
    """The file is not valid; ``errors`` name each failing field."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


def parse_factory(data: Any) -> FactoryFile:
    """Validate a decoded factory file, naming failing fields like ``lines[0].rates.X``."""
    try:
        factory = FactoryFile.model_validate(data)
    except ValidationError as exc:
        raise FactoryFileError(
            [{"field": format_path(list(e["loc"])), "message": e["msg"]} for e in exc.errors()]
        ) from exc
    skus = {p.sku for p in factory.products}
    sites = {s.id for s in factory.sites}
    errors = []
    for i, line in enumerate(factory.lines):
        if sites and line.site not in sites:
            errors.append({"field": f"lines[{i}].site", "message": f"unknown site '{line.site}'"})
        for sku in line.rates:
            if skus and sku not in skus:
                errors.append(
                    {"field": f"lines[{i}].rates.{sku}", "message": f"unknown product '{sku}'"}
                )
    if errors:
        raise FactoryFileError(errors)
    return factory


def import_factory(session: Session, factory: FactoryFile, *, actor: str) -> dict[str, int]:
    """Upsert the file's rows in the caller's transaction; counts per kind."""
    for s in factory.sites:
        _upsert(session, Site, s.id, name=s.name)
    for p in factory.products:
        _upsert(session, Product, p.sku, name=p.name)
    for c in factory.customers:
        _upsert(session, Customer, c.id, name=c.name, importance=c.importance)
    session.flush()
    for ln in factory.lines:
        line = _upsert(session, Line, ln.id, site_id=ln.site, name=ln.name)
        line.rates = [LineRate(sku=sku, units_per_hour=uph) for sku, uph in ln.rates.items()]
    counts = {
        "sites": len(factory.sites),
        "products": len(factory.products),
        "lines": len(factory.lines),
        "customers": len(factory.customers),
    }
    record(
        session,
        actor=actor,
        action="factory.imported",
        entity="factory",
        entity_id="-",
        details=counts,
    )
    return counts


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
