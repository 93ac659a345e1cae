"""The demo's sample factory: one site, five lines, six products, eight customers."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from ingest.factory_file import import_factory, parse_factory
from models.records import Site

SITE = ("plant-1", "Suzhou Gearworks")
PRODUCTS = {
    "GEAR-A": "Spur gear 40T",
    "GEAR-B": "Helical gear 56T",
    "SHAFT-S": "Drive shaft, short",
    "SHAFT-L": "Drive shaft, long",
    "HOUSING-X": "Gearbox housing",
    "PUMP-P7": "Oil pump P7",
}
# Units per hour; a line makes only what it has a rate for.
LINES = {
    "L1": ("Gear cell 1", {"GEAR-A": 120.0, "GEAR-B": 90.0}),
    "L2": ("Gear cell 2", {"GEAR-A": 100.0, "GEAR-B": 110.0, "PUMP-P7": 40.0}),
    "L3": ("Shaft line", {"SHAFT-S": 80.0, "SHAFT-L": 60.0}),
    "L4": ("Housing line", {"HOUSING-X": 45.0, "PUMP-P7": 35.0}),
    "L5": ("Flex line", {"SHAFT-S": 50.0, "HOUSING-X": 30.0, "GEAR-B": 60.0}),
}
CUSTOMERS = [
    ("C-1", "Acme Gears", 2),
    ("C-2", "Nordic Drives", 1),
    ("C-3", "Huatai Machinery", 1),
    ("C-4", "Rhein Automotive", 3),
    ("C-5", "Pacific Pumps", 1),
    ("C-6", "Osaka Robotics", 2),
    ("C-7", "Delta Agritech", 1),
    ("C-8", "Sierra Mining", 1),
]


def factory_data() -> dict[str, Any]:
    """The sample factory in the factory-file format (``loopline import-factory``)."""
    return {
        "sites": [{"id": SITE[0], "name": SITE[1]}],
        "products": [{"sku": sku, "name": name} for sku, name in PRODUCTS.items()],
        "lines": [
            {"id": i, "site": SITE[0], "name": n, "rates": dict(r)} for i, (n, r) in LINES.items()
        ],
        "customers": [{"id": c, "name": n, "importance": imp} for c, n, imp in CUSTOMERS],
    }


def seed_factory(session: Session) -> None:
    """Create the sample site, products, lines with rates, and customers (idempotent)."""
    if session.get(Site, SITE[0]) is None:
        import_factory(session, parse_factory(factory_data()), actor="demo")
