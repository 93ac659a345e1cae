"""The demo's sample factory: one site, five lines, six products, eight customers, and the
materials they are made of.

Two gear cells work two shifts on weekdays with a lunch break; the other lines run around
the clock. All close for Christmas. The gear cells and the flex line lose time changing
over between products. Oil pumps need a seal kit that runs short (stock and one open
purchase order cover only part of the demand), so the demo's plan raises a purchase request.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from loopline.ingest.factory_file import import_factory, parse_factory
from loopline.models.clock import utcnow
from loopline.models.records import Site

SITE = ("plant-1", "Suzhou Gearworks")
TIMEZONE = "Asia/Shanghai"
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
HOLIDAYS = ["2026-12-25", "2026-12-26"]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
# Early and late shift on weekdays, with a half-hour lunch (and supper) break.
TWO_SHIFTS = {
    "timezone": TIMEZONE,
    "shifts": [{"days": WEEKDAYS, "start": "06:00", "end": "22:00"}],
    "breaks": [
        {"days": WEEKDAYS, "start": "11:30", "end": "12:00"},
        {"days": WEEKDAYS, "start": "17:30", "end": "18:00"},
    ],
    "holidays": HOLIDAYS,
}
AROUND_THE_CLOCK = {"timezone": TIMEZONE, "holidays": HOLIDAYS}
CALENDARS = {"L1": TWO_SHIFTS, "L2": TWO_SHIFTS}
# Hours to change a line over, from product to product (missing pairs: none).
CHANGEOVERS = {
    "L1": {"GEAR-A": {"GEAR-B": 0.75}, "GEAR-B": {"GEAR-A": 0.5}},
    "L2": {
        "GEAR-A": {"GEAR-B": 0.75, "PUMP-P7": 2.0},
        "GEAR-B": {"GEAR-A": 0.5, "PUMP-P7": 2.0},
        "PUMP-P7": {"GEAR-A": 1.5, "GEAR-B": 1.5},
    },
    "L5": {
        "SHAFT-S": {"HOUSING-X": 1.5, "GEAR-B": 1.0},
        "HOUSING-X": {"SHAFT-S": 1.5, "GEAR-B": 1.5},
        "GEAR-B": {"SHAFT-S": 1.0, "HOUSING-X": 1.5},
    },
}
# id: (name, unit, on hand, supplier lead time in days)
MATERIALS = {
    "STEEL-42CRMO4": ("Steel bar 42CrMo4", "kg", 150_000.0, 7.0),
    "ALU-A380": ("Aluminium ingot A380", "kg", 90_000.0, 10.0),
    "BEARING-6204": ("Ball bearing 6204", "pcs", 90_000.0, 5.0),
    "CUTTING-OIL": ("Cutting oil", "l", 8_000.0, 3.0),
    "SEAL-KIT-P7": ("Seal kit for P7 pumps", "pcs", 1_500.0, 8.0),
}
# Material per unit of product.
BOM = {
    "GEAR-A": {"STEEL-42CRMO4": 0.8, "CUTTING-OIL": 0.02},
    "GEAR-B": {"STEEL-42CRMO4": 1.1, "CUTTING-OIL": 0.02},
    "SHAFT-S": {"STEEL-42CRMO4": 1.5, "BEARING-6204": 2.0},
    "SHAFT-L": {"STEEL-42CRMO4": 2.4, "BEARING-6204": 2.0},
    "HOUSING-X": {"ALU-A380": 3.2, "BEARING-6204": 2.0},
    "PUMP-P7": {"ALU-A380": 0.9, "SEAL-KIT-P7": 1.0},
}
# (id, material, qty, days from now it arrives): too few seal kits for the pump orders.
PURCHASE_ORDERS = [
    ("PO-4711", "SEAL-KIT-P7", 1_000.0, 3),
    ("PO-4712", "BEARING-6204", 20_000.0, 2),
]
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


def factory_data(now: datetime | None = None) -> dict[str, Any]:
    """The sample factory in the factory-file format (``loopline import-factory``);
    purchase orders arrive some days after ``now`` (default: the wall clock)."""
    today = (now or utcnow()).date()
    return {
        "sites": [{"id": SITE[0], "name": SITE[1]}],
        "products": [{"sku": sku, "name": name} for sku, name in PRODUCTS.items()],
        "lines": [
            {
                "id": i,
                "site": SITE[0],
                "name": n,
                "rates": dict(r),
                "calendar": CALENDARS.get(i, AROUND_THE_CLOCK),
                **({"changeovers": CHANGEOVERS[i]} if i in CHANGEOVERS else {}),
            }
            for i, (n, r) in LINES.items()
        ],
        "customers": [{"id": c, "name": n, "importance": imp} for c, n, imp in CUSTOMERS],
        "materials": {
            "items": {
                m: {"name": name, "unit": unit, "on_hand": qty, "lead_time_days": days}
                for m, (name, unit, qty, days) in MATERIALS.items()
            },
            "bom": BOM,
            "purchase_orders": [
                {
                    "id": po,
                    "material": m,
                    "qty": qty,
                    "arrives": f"{(today + timedelta(days=days)).isoformat()}T08:00:00Z",
                }
                for po, m, qty, days in PURCHASE_ORDERS
            ],
        },
    }


def seed_factory(session: Session, now: datetime | None = None) -> None:
    """Create the sample site, products, lines, customers and materials (idempotent)."""
    if session.get(Site, SITE[0]) is None:
        import_factory(session, parse_factory(factory_data(now)), actor="demo")
