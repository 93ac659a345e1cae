"""The demo's sample factory: one site, five lines, six products, eight customers."""

from __future__ import annotations

from sqlalchemy.orm import Session

from models.records import Customer, Line, LineRate, Product, Site

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


def seed_factory(session: Session) -> None:
    """Create the sample site, products, lines with rates, and customers (idempotent)."""
    if session.get(Site, SITE[0]) is not None:
        return
    session.add(Site(id=SITE[0], name=SITE[1]))
    session.add_all(Product(sku=sku, name=name) for sku, name in PRODUCTS.items())
    session.flush()
    for line_id, (name, rates) in LINES.items():
        line = Line(id=line_id, site_id=SITE[0], name=name)
        line.rates = [LineRate(sku=sku, units_per_hour=uph) for sku, uph in rates.items()]
        session.add(line)
    session.add_all(Customer(id=c, name=n, importance=i) for c, n, i in CUSTOMERS)
