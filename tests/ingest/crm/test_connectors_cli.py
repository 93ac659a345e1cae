"""``loopline connectors list|check``: the shipped files, a sample mapped or its failing field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loopline.ingest.crm.connector import ConnectorFileError, Registry, load_file

SAMPLES = Path(__file__).parent / "samples"


def loopline(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "loopline.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_list_names_every_shipped_connector_and_what_it_needs():
    out = loopline("connectors", "list")
    assert out.returncode == 0, out.stderr
    names = {line.split()[0] for line in out.stdout.splitlines() if not line.startswith(" ")}
    assert {"canonical", "flatcrm", "plain-json"} <= names
    assert "needs LOOPLINE_PLAIN_JSON_TOKEN" in out.stdout


def test_check_prints_the_canonical_event(tmp_path):
    sample = tmp_path / "deal.json"
    body = {"event": "deal.updated", "deal_id": 7, "rev": 2, "account_id": "C-1"}
    body |= {"account_name": "Acme", "items": [{"product_code": "P1", "quantity": 3}]}
    body |= {"need_by": "2026-12-10"}
    sample.write_text(json.dumps(body))
    out = loopline("connectors", "check", "flatcrm", str(sample))
    assert out.returncode == 0, out.stderr
    event = json.loads(out.stdout)
    assert event["order"]["id"] == "7" and event["order"]["lines"] == [{"sku": "P1", "qty": 3}]


def test_check_names_the_failing_field_in_the_crms_words(tmp_path):
    sample = tmp_path / "deal.json"
    body = {"event": "deal.updated", "deal_id": 7, "rev": 2, "account_id": "C-1"}
    body |= {"account_name": "Acme", "items": [{"product_code": "P1", "quantity": "lots"}]}
    body |= {"need_by": "10/12/2026"}
    sample.write_text(json.dumps(body))
    out = loopline("connectors", "check", "ingest/crm/connectors/flatcrm.yaml", str(sample))
    assert out.returncode == 1
    assert "items[0].quantity:" in out.stderr and "need_by:" in out.stderr


def test_a_site_folder_adds_connectors_and_a_bad_file_names_its_field(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "name: mine\ntitle: Mine\nauth: {kind: shared_token, secret_env: X}\n"
        "fields: {kind: {const: upsert}, order_id: num, version: v}\n"
    )
    assert "mine" in Registry(tmp_path).names()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntitle: Bad\nauth: {kind: telepathy}\n")
    with pytest.raises(ConnectorFileError, match="auth.kind"):
        load_file(bad)
    bad.write_text("name: bad\ntitle: B\nauth: {kind: url_token}\nrecords: 'a[?'\n")
    with pytest.raises(ConnectorFileError, match="records"):
        load_file(bad)
    out = loopline("connectors", "list", env={"LOOPLINE_CONNECTORS_DIR": str(tmp_path)})
    assert out.returncode == 2 and "bad.yaml" in out.stderr
