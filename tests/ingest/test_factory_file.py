"""Importing factory master data from a file."""

from __future__ import annotations

import pytest

from ingest.factory_file import FactoryFileError, import_factory, parse_factory
from loopline.seed import factory_data
from models.db import transaction
from models.records import Line


def test_import_is_an_upsert(sessions):
    data = factory_data()
    with transaction(sessions) as s:
        assert import_factory(s, parse_factory(data), actor="t")["lines"] == 5
    data["lines"][0]["rates"] = {"GEAR-A": 10.0}
    with transaction(sessions) as s:
        import_factory(s, parse_factory(data), actor="t")
    with sessions() as s:
        assert [(r.sku, r.units_per_hour) for r in s.get(Line, "L1").rates] == [("GEAR-A", 10.0)]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["lines"][0]["rates"].update({"NOPE": 1.0}), "lines[0].rates.NOPE"),
        (lambda d: d["lines"][1].update(site="nowhere"), "lines[1].site"),
        (lambda d: d["lines"][0]["rates"].update({"GEAR-A": -5}), "lines[0].rates.GEAR-A"),
        (lambda d: d["products"][0].pop("name"), "products[0].name"),
    ],
)
def test_bad_file_names_the_field(mutate, field):
    data = factory_data()
    mutate(data)
    with pytest.raises(FactoryFileError) as err:
        parse_factory(data)
    assert field in {e["field"] for e in err.value.errors}
