"""Importing factory master data from a file."""

from __future__ import annotations

import copy
import json

import pytest
from sqlalchemy import select

from loopline.ingest.factory_file import FactoryFileError, import_factory, parse_factory
from loopline.models.db import make_engine, make_sessions, migrate, transaction
from loopline.models.records import BomLine, Line, Material, PurchaseOrder
from loopline.seed import factory_data


def test_import_is_an_upsert(sessions):
    data = factory_data()
    with transaction(sessions) as s:
        assert import_factory(s, parse_factory(data), actor="t")["lines"] == 5
    data["lines"][0]["rates"] = {"GEAR-A": 10.0}
    with transaction(sessions) as s:
        import_factory(s, parse_factory(data), actor="t")
    with sessions() as s:
        assert [(r.sku, r.units_per_hour) for r in s.get(Line, "L1").rates] == [("GEAR-A", 10.0)]


def test_import_stores_calendars_changeovers_and_materials(sessions):
    data = factory_data()
    with transaction(sessions) as s:
        counts = import_factory(s, parse_factory(data), actor="t")
    assert counts["materials"] == 5 and counts["purchase_orders"] == 2
    with sessions() as s:
        l1, l3 = s.get(Line, "L1"), s.get(Line, "L3")
        assert l1.calendar["shifts"][0]["start"] == "06:00"
        assert l1.changeovers["GEAR-A"] == {"GEAR-B": 0.75}
        assert l3.calendar == {
            "timezone": "Asia/Shanghai",
            "holidays": ["2026-12-25", "2026-12-26"],
        }
        assert l3.changeovers is None
        seal = s.get(Material, "SEAL-KIT-P7")
        assert (seal.unit, seal.lead_time_days) == ("pcs", 8.0)
        bom = {(b.sku, b.material_id): b.qty_per_unit for b in s.scalars(select(BomLine))}
        assert bom[("PUMP-P7", "SEAL-KIT-P7")] == 1.0
        po = s.get(PurchaseOrder, "PO-4711")
        assert po.status == "open" and po.arrives_at.tzinfo is not None
    # Importing again replaces a product's BOM instead of adding to it.
    data["materials"]["bom"]["PUMP-P7"] = {"SEAL-KIT-P7": 2.0}
    with transaction(sessions) as s:
        import_factory(s, parse_factory(data), actor="t")
    with sessions() as s:
        rows = s.scalars(select(BomLine).where(BomLine.sku == "PUMP-P7")).all()
        assert [(b.material_id, b.qty_per_unit) for b in rows] == [("SEAL-KIT-P7", 2.0)]


def test_old_files_without_calendars_or_materials_stay_valid(sessions):
    data = factory_data()
    del data["materials"]
    for line in data["lines"]:
        line.pop("calendar")
        line.pop("changeovers", None)
    with transaction(sessions) as s:
        counts = import_factory(s, parse_factory(data), actor="t")
    assert "materials" not in counts
    with sessions() as s:
        assert s.get(Line, "L1").calendar is None


def _set(path, value):
    """A mutation setting ``data[path...] = value``."""

    def mutate(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["lines"][0]["rates"].update({"NOPE": 1.0}), "lines[0].rates.NOPE"),
        (lambda d: d["lines"][1].update(site="nowhere"), "lines[1].site"),
        (lambda d: d["lines"][0]["rates"].update({"GEAR-A": -5}), "lines[0].rates.GEAR-A"),
        (lambda d: d["products"][0].pop("name"), "products[0].name"),
        # calendars, checked by the planner's own parser
        (_set(["lines", 0, "calendar", "timezone"], "Mars/Base"), "lines[0].calendar.timezone"),
        (
            _set(["lines", 0, "calendar", "shifts", 0, "days"], ["funday"]),
            "lines[0].calendar.shifts[0].days[0]",
        ),
        (
            _set(["lines", 0, "calendar", "shifts", 0, "start"], "25:99"),
            "lines[0].calendar.shifts[0].start",
        ),
        (_set(["lines", 0, "calendar", "holidays"], ["someday"]), "lines[0].calendar.holidays[0]"),
        (_set(["lines", 0, "calendar", "weekends"], True), "lines[0].calendar.weekends"),
        # changeovers
        (
            _set(["lines", 0, "changeovers", "GEAR-A", "NOPE"], 1.0),
            "lines[0].changeovers.GEAR-A.NOPE",
        ),
        (
            _set(["lines", 0, "changeovers", "GEAR-A", "GEAR-B"], -1.0),
            "lines[0].changeovers.GEAR-A.GEAR-B",
        ),
        # materials
        (_set(["materials", "bom", "NOPE"], {"ALU-A380": 1.0}), "materials.bom.NOPE"),
        (
            _set(["materials", "bom", "GEAR-A", "UNOBTAINIUM"], 1.0),
            "materials.bom.GEAR-A.UNOBTAINIUM",
        ),
        (
            _set(["materials", "bom", "GEAR-A", "CUTTING-OIL"], 0),
            "materials.bom.GEAR-A.CUTTING-OIL",
        ),
        (
            _set(["materials", "items", "ALU-A380", "on_hand"], -1),
            "materials.items.ALU-A380.on_hand",
        ),
        (
            _set(["materials", "items", "ALU-A380", "lead_time_days"], -2),
            "materials.items.ALU-A380.lead_time_days",
        ),
        (
            _set(["materials", "purchase_orders", 0, "material"], "NOPE"),
            "materials.purchase_orders[0].material",
        ),
        (_set(["materials", "purchase_orders", 0, "qty"], -10), "materials.purchase_orders[0].qty"),
        (
            _set(["materials", "purchase_orders", 0, "arrives"], "soon"),
            "materials.purchase_orders[0].arrives",
        ),
    ],
)
def test_bad_file_names_the_field(mutate, field):
    data = copy.deepcopy(factory_data())
    mutate(data)
    with pytest.raises(FactoryFileError) as err:
        parse_factory(data)
    assert field in {e["field"] for e in err.value.errors}, err.value.errors


def test_references_unknown_to_file_and_database_are_refused_on_import(sessions):
    # A file with materials only: its BOM names a product the database does not have.
    data = {
        "materials": {
            "items": {"M1": {"unit": "kg", "on_hand": 5}},
            "bom": {"P1": {"M1": 1.0}, "P9": {"M1": 1.0}},
        }
    }
    factory = parse_factory(data)  # the file alone cannot tell
    with pytest.raises(FactoryFileError) as err, transaction(sessions) as s:
        import_factory(s, factory, actor="t")
    assert {e["field"] for e in err.value.errors} == {"materials.bom.P9"}
    with sessions() as s:
        assert s.get(Material, "M1") is None  # nothing of the bad file was kept
    # A later file may name materials imported before.
    with transaction(sessions) as s:
        import_factory(s, parse_factory({"materials": {"items": {"M1": {}}}}), actor="t")
    with transaction(sessions) as s:
        import_factory(s, parse_factory({"materials": {"bom": {"P1": {"M1": 0.5}}}}), actor="t")
    with pytest.raises(FactoryFileError) as err, transaction(sessions) as s:
        import_factory(s, parse_factory({"materials": {"bom": {"P1": {"M2": 1.0}}}}), actor="t")
    assert err.value.errors[0]["field"] == "materials.bom.P1.M2"


# --- strict input (issue 8, item 12; issue 10) ----------------------------------------


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (_set(["lines", 0, "rates", "GEAR-A"], "60"), "lines[0].rates.GEAR-A", "must be a number"),
        (_set(["customers", 0, "importance"], "2"), "customers[0].importance", "integer"),
        (
            _set(["materials", "items", "ALU-A380", "on_hand"], "900"),
            "materials.items.ALU-A380.on_hand",
            "must be a number",
        ),
        # ids that become MQTT topic segments
        (_set(["lines", 0, "id"], "L.1"), "lines[0].id", "[A-Za-z0-9_-]"),
        (_set(["sites", 0, "id"], "plant.1"), "sites[0].id", "[A-Za-z0-9_-]"),
        (_set(["lines", 0, "site"], "plant/1"), "lines[0].site", "[A-Za-z0-9_-]"),
        (_set(["lines", 0, "id"], "L" * 65), "lines[0].id", "at most 64"),
        # NUL and control characters anywhere a name is stored
        (_set(["sites", 0, "name"], "Suzhou\x00"), "sites[0].name", "control characters"),
        (_set(["lines", 0, "name"], "Cell\x1b[31m"), "lines[0].name", "control characters"),
        (_set(["customers", 0, "id"], "C\x00-1"), "customers[0].id", "control characters"),
        (_set(["customers", 0, "name"], "Acme\ud800"), "customers[0].name", "control characters"),
        (_set(["customers", 0, "name"], "A" * 201), "customers[0].name", "at most 200"),
        (_set(["products", 0, "name"], "Gear\x00"), "products[0].name", "control characters"),
        (
            _set(["materials", "items", "ALU-A380", "unit"], "k\x00g"),
            "materials.items.ALU-A380.unit",
            "control characters",
        ),
        # timestamps carry a zone
        (
            _set(["materials", "purchase_orders", 0, "arrives"], "2026-12-03T08:00:00"),
            "materials.purchase_orders[0].arrives",
            "needs a time zone",
        ),
        (
            _set(
                ["lines", 0, "calendar", "closures"],
                [{"start": "2026-12-02T08:00:00", "end": "2026-12-02T12:00:00Z"}],
            ),
            "lines[0].calendar.closures[0].start",
            "needs a time zone",
        ),
        (
            _set(
                ["lines", 0, "calendar", "closures"],
                [{"start": "2026-12-02T08:00:00Z", "end": "2026-12-02T12:00:00Z", "reason": "\0"}],
            ),
            "lines[0].calendar.closures[0].reason",
            "control characters",
        ),
    ],
)
def test_strict_fields_are_refused_by_name(mutate, field, message):
    data = copy.deepcopy(factory_data())
    mutate(data)
    with pytest.raises(FactoryFileError) as err:
        parse_factory(data)
    messages = {e["field"]: e["message"] for e in err.value.errors}
    assert field in messages, err.value.errors
    assert message in messages[field]


def test_field_errors_and_reference_errors_are_listed_together():
    data = json.loads(json.dumps(factory_data()))  # lines share calendar objects
    data["lines"][0]["rates"]["GEAR-A"] = "60"  # a field error
    data["lines"][0]["rates"]["NOPE"] = 1.0  # and a reference error of the same line
    data["lines"][1]["site"] = "nowhere"  # reference errors
    data["materials"]["bom"]["NOPE"] = {"ALU-A380": 1.0}
    data["lines"][2]["calendar"]["timezone"] = "Mars/Base"  # a calendar error
    with pytest.raises(FactoryFileError) as err:
        parse_factory(data)
    assert sorted(e["field"] for e in err.value.errors) == [
        "lines[0].rates.GEAR-A",
        "lines[0].rates.NOPE",
        "lines[1].site",
        "lines[2].calendar.timezone",
        "materials.bom.NOPE",
    ]


def test_a_line_on_a_site_nobody_defined_is_refused_not_a_traceback(postgres_url):
    """Found by the fuzz test: a file with lines but no sites, into an empty database,
    passed the file check (no sites named: nothing to check against) and then broke the
    site foreign key inside the import."""
    data = {
        "products": [{"sku": "GEAR-A", "name": "Gear A"}],
        "lines": [{"id": "L9", "site": "plant-9", "name": "Cell", "rates": {"GEAR-A": 60}}],
    }
    engine = make_engine(postgres_url)  # empty, and it enforces foreign keys
    migrate(engine)
    with pytest.raises(FactoryFileError) as refused, transaction(make_sessions(engine)) as s:
        import_factory(s, parse_factory(data), actor="t")
    engine.dispose()
    assert {"field": "lines[0].site", "message": "unknown site 'plant-9'"} in refused.value.errors


def test_a_downtime_section_replaces_the_reason_tree(sessions):
    from loopline.models.downtime import load_tree

    data = factory_data()
    data["downtime"] = {
        "small_stop_max_s": 120,
        "shifts": [{"name": "day", "start": "07:00", "end": "19:00"}],
        "reasons": [
            {"code": "BD", "name": "Breakdown", "loss": "breakdown",
             "children": [{"code": "BD-HYD", "name": "Hydraulics"}]},
            {"code": "CO", "name": "Changeover", "loss": "setup"},
        ],
    }  # fmt: skip
    with transaction(sessions) as s:
        assert import_factory(s, parse_factory(data), actor="t")["downtime_reasons"] == 3
    with sessions() as s:
        tree = load_tree(s)
    assert tree.small_stop_max_s == 120 and tree.get("BD-HYD").loss == "breakdown"
    assert [s.name for s in tree.shifts] == ["day"]


@pytest.mark.parametrize(
    ("downtime", "field", "message"),
    [
        ({"reasons": []}, "downtime.reasons", "must not be empty"),
        ({"reasons": [{"code": "A", "name": "a", "loss": "lunch"}]}, "downtime.reasons[0].loss",
         "breakdown"),
        ({"reasons": [{"code": "A", "name": "a"}]}, "downtime", "reasons[0].loss"),
        ({"small_stop_max_s": 0, "reasons": [{"code": "A", "name": "a", "loss": "setup"}]},
         "downtime.small_stop_max_s", "must be > 0"),
    ],
)  # fmt: skip
def test_a_bad_downtime_section_names_the_field(downtime, field, message):
    data = factory_data()
    data["downtime"] = downtime
    with pytest.raises(FactoryFileError) as exc:
        parse_factory(data)
    assert any(e["field"] == field and message in e["message"] for e in exc.value.errors), (
        exc.value.errors
    )
