"""`loopline ingest --sparkplug FILE` as users run it: a real process, broker, Redis, SQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis
import yaml

from loopline.ingest.sparkplug import schema
from loopline.models.live import LiveState
from loopline.seed import factory_data
from loopline.settings import new_webhook_secret
from loopline.simulators.sparkplug_edge import SparkplugEdge
from tests.ingest.sparkplug.conftest import GOOD, STATE, mapping_doc
from tests.stack import wait_until

LOOPLINE = [sys.executable, "-m", "loopline.cli"]
ROOT = Path(__file__).resolve().parents[3]


def _env(tmp_path: Path, redis_url: str, mqtt_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "LOOPLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'l.db'}",
        "LOOPLINE_REDIS_URL": redis_url,
        "LOOPLINE_MQTT_URL": mqtt_url,
        "LOOPLINE_CRM_SECRET": new_webhook_secret(),
        "LOOPLINE_API_TOKEN": "t",
        "LOOPLINE_MQTT_CLIENT_ID": f"spb-cli-{os.getpid()}",
    }


def test_a_bad_mapping_file_stops_ingest_naming_the_field(tmp_path, redis_server, mqtt_broker):
    doc = mapping_doc()
    doc["nodes"][0]["devices"][0]["metrics"]["god"] = "typo"
    bad = tmp_path / "plant.yaml"
    bad.write_text(yaml.safe_dump(doc))
    run = subprocess.run(
        LOOPLINE + ["ingest", "--sparkplug", str(bad)],
        env=_env(tmp_path, redis_server, mqtt_broker.url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "nodes[0].devices[0].metrics.god" in run.stderr


def test_ingest_with_a_mapping_file_follows_a_real_edge_node(tmp_path, redis_server, mqtt_broker):
    env = _env(tmp_path, redis_server, mqtt_broker.url)
    factory = tmp_path / "factory.json"
    factory.write_text(json.dumps(factory_data()))
    imported = subprocess.run(
        LOOPLINE + ["import-factory", str(factory)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    client = redis.Redis.from_url(redis_server, decode_responses=True)
    client.flushdb()  # empty: ingest builds the live model from SQL on the first report
    live = LiveState(client)
    doc = mapping_doc(site="plant-1")
    doc["nodes"][0]["group"] = "CliPlant"
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(doc))
    log = (tmp_path / "ingest.log").open("w")
    proc = subprocess.Popen(
        LOOPLINE + ["ingest", "--sparkplug", str(path)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    edge = SparkplugEdge(
        mqtt_broker.url,
        "CliPlant",
        "E1",
        {"PLC1": {GOOD: (schema.UINT64, 0), STATE: (schema.INT32, 3)}},
    )
    try:
        # Both consumers connected (the Loopline topics' and Sparkplug's); the machine may be
        # loaded, so the process gets its time to start.
        wait_until(
            lambda: (tmp_path / "ingest.log").read_text().count("MQTT connected to") >= 2,
            timeout=120,
            step=0.5,
        )
        # Ingest may subscribe after the births went out: it asks for them again then.
        edge.start()
        wait_until(lambda: edge.born.is_set(), timeout=20)
        wait_until(
            lambda: (
                (edge.set_many("PLC1", {STATE: 3}) or True)
                and (live.get("line", "L1") or {}).get("state") == "down"
            ),
            timeout=30,
            step=0.5,
        )
        edge.die()
        wait_until(lambda: (live.get("line", "L1") or {}).get("state") == "unavailable", timeout=20)
    finally:
        edge.die()
        proc.terminate()
        proc.wait(20)
        log.close()
        client.close()
    assert proc.returncode in (0, -15), (tmp_path / "ingest.log").read_text()[-3000:]
