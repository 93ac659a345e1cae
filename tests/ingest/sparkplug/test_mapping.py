"""A plant's mapping file: accepted as documented, refused with every problem named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from loopline.ingest.sparkplug.mapping import MappingFileError, load_mapping, parse_mapping
from tests.ingest.sparkplug.conftest import mapping_doc

DOCS = Path(__file__).resolve().parents[3] / "docs" / "sparkplug-mapping.example.yaml"


def test_the_documented_example_loads(tmp_path):
    m = load_mapping(DOCS)
    assert m.subscriptions() == ["spBv1.0/Plant1/+/Press-Cell-3/#", "spBv1.0/Plant1/+/Assembly/#"]
    assert m.device("Plant1", "Press-Cell-3", "PLC1").line == "L1"


def test_every_problem_is_listed_with_its_field(tmp_path):
    doc = mapping_doc()
    dev = doc["nodes"][0]["devices"][0]
    dev["line"] = "L 1"
    dev["states"] = {1: "runing"}
    dev["metrics"] = {"scrap": "x"}
    doc["nodes"][0]["devices"][1]["colour"] = "red"
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(MappingFileError) as exc:
        load_mapping(path)
    problems = exc.value.problems
    assert str(path) in str(exc.value)
    assert any(p.startswith("nodes[0].devices[0].line:") for p in problems), problems
    assert any(p.startswith("nodes[0].devices[0].states.1:") for p in problems), problems
    assert any(
        p.startswith("nodes[0].devices[0].metrics:") and "scrap needs good" in p for p in problems
    )
    assert any(p.startswith("nodes[0].devices[1].colour:") for p in problems), problems


def test_a_line_mapped_twice_is_refused():
    doc = mapping_doc()
    doc["nodes"][0]["devices"][1]["line"] = "L1"
    with pytest.raises(
        MappingFileError, match=r"devices\[1\]\.line 'L1' is also nodes\[0\]\.devices\[0\]"
    ):
        parse_mapping(doc)


def test_unreadable_files_say_so(tmp_path):
    with pytest.raises(MappingFileError, match="cannot read"):
        load_mapping(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: [unclosed")
    with pytest.raises(MappingFileError, match="not valid YAML"):
        load_mapping(bad)
