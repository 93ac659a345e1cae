"""The server fixtures give real, working servers on private ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
import redis
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from tests import servers
from tests.servers import (
    DEFAULT_PORTS,
    MosquittoServer,
    PostgresServer,
    RedisServer,
    ensure_installed,
    find_binary,
    free_port,
)

ROUND_TRIP_TIMEOUT_S = 10.0


def test_redis_server_set_get(redis_server: str) -> None:
    parts = urlsplit(redis_server)
    assert parts.scheme == "redis" and parts.hostname == "127.0.0.1" and parts.path == "/0"
    assert parts.port not in DEFAULT_PORTS
    client = redis.Redis.from_url(redis_server)
    try:
        client.set("loopline:test", "ok")
        assert client.get("loopline:test") == b"ok"
        # Nothing is kept on disk.
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"
    finally:
        client.close()


def _connected_client(host: str, port: int, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    connected = threading.Event()
    client.on_connect = lambda c, u, flags, reason, props: connected.set()
    client.connect(host, port)
    client.loop_start()
    assert connected.wait(ROUND_TRIP_TIMEOUT_S), "MQTT connect timed out"
    return client


def test_mqtt_broker_round_trip_qos1(mqtt_broker: MosquittoServer) -> None:
    assert mqtt_broker.host == "127.0.0.1"
    assert mqtt_broker.port not in DEFAULT_PORTS
    assert mqtt_broker.url == f"mqtt://127.0.0.1:{mqtt_broker.port}"
    topic = f"loopline/v1/test/{uuid.uuid4().hex[:8]}/progress"
    received: list[mqtt.MQTTMessage] = []
    got = threading.Event()
    subscribed = threading.Event()

    sub = _connected_client(mqtt_broker.host, mqtt_broker.port, "test-sub")

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received.append(msg)
        got.set()

    sub.on_message = on_message
    sub.on_subscribe = lambda c, u, mid, reason_codes, props: subscribed.set()
    pub = _connected_client(mqtt_broker.host, mqtt_broker.port, "test-pub")
    try:
        sub.subscribe(topic, qos=1)
        assert subscribed.wait(ROUND_TRIP_TIMEOUT_S), "SUBACK timed out"
        info = pub.publish(topic, b'{"seq": 1}', qos=1)
        info.wait_for_publish(ROUND_TRIP_TIMEOUT_S)
        assert info.is_published()  # PUBACK received
        assert got.wait(ROUND_TRIP_TIMEOUT_S), "message not delivered"
        assert received[0].payload == b'{"seq": 1}'
        assert received[0].qos == 1
    finally:
        for client in (pub, sub):
            client.disconnect()
            client.loop_stop()


def test_mqtt_broker_config(mqtt_broker: MosquittoServer) -> None:
    config = mqtt_broker.config_path.read_text()
    assert f"listener {mqtt_broker.port} 127.0.0.1" in config
    assert "max_queued_messages 100000" in config
    assert "max_inflight_messages 0" in config
    assert "persistence false" in config


def test_mosquitto_pub_client_reaches_broker(mqtt_broker: MosquittoServer) -> None:
    mosquitto_pub = ensure_installed("mosquitto_pub", "mosquitto-clients")
    subprocess.run(
        [mosquitto_pub, "-h", mqtt_broker.host, "-p", str(mqtt_broker.port),
         "-q", "1", "-t", "loopline/v1/test/L1/state", "-m", "{}"],
        check=True, timeout=ROUND_TRIP_TIMEOUT_S,
    )  # fmt: skip


def test_postgres_server_select_1(postgres_server: str) -> None:
    parts = urlsplit(postgres_server)
    assert parts.scheme == "postgresql+psycopg"
    assert parts.username == "postgres" and parts.hostname == "127.0.0.1"
    assert parts.path == "/postgres"
    assert parts.port not in DEFAULT_PORTS
    engine = sa.create_engine(postgres_server)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
            assert conn.execute(sa.text("show fsync")).scalar_one() == "off"
    finally:
        engine.dispose()


def _database_names(base_url: str) -> set[str]:
    engine = sa.create_engine(base_url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.text("select datname from pg_database")).scalars())
    finally:
        engine.dispose()


_seen_databases: list[str] = []
_left_open: list[sa.Connection] = []


@pytest.mark.parametrize("round_", [1, 2])
def test_postgres_url_is_a_fresh_database(
    postgres_url: str, postgres_server: str, round_: int
) -> None:
    name = urlsplit(postgres_url).path.lstrip("/")
    assert name != "postgres" and name.startswith("t_")
    assert name not in _seen_databases
    _seen_databases.append(name)
    # The previous test's database is gone.
    assert not set(_seen_databases[:-1]) & _database_names(postgres_server)
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        tables = conn.execute(
            sa.text("select count(*) from pg_tables where schemaname = 'public'")
        ).scalar_one()
        assert tables == 0
        conn.execute(sa.text("create table t (x int)"))
        conn.execute(sa.text("insert into t values (1)"))
    # Left open on purpose: teardown drops the database all the same.
    _left_open.append(engine.connect())


def test_free_port_avoids_defaults() -> None:
    ports = {free_port() for _ in range(20)}
    assert not ports & DEFAULT_PORTS
    assert all(1024 < p < 65536 for p in ports)


def test_find_binary_finds_postgres_outside_path() -> None:
    assert find_binary("initdb") is not None
    assert find_binary("definitely-not-a-binary-xyz") is None


def test_servers_restart_on_same_port() -> None:
    with RedisServer() as server:
        port = server.port
        client = redis.Redis(host=server.host, port=port)
        client.set("k", "v")
        server.kill()
        assert not server.running
        server.restart()
        assert server.port == port
        assert client.get("k") is None  # nothing kept on disk
        client.close()


@pytest.mark.parametrize("kind", ["RedisServer", "MosquittoServer"])
def test_servers_die_with_their_parent(kind: str) -> None:
    """A server outlives no test process: killed parent, killed server (setpriv pdeathsig).

    Mosquitto started as root switches to its own user, which clears the death signal,
    unless its config keeps the user it was started as."""
    if find_binary("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    port = free_port()
    code = (
        "import time\n"
        f"from tests.servers import {kind}\n"
        f"s = {kind}(port={port}).start()\n"
        "print(s.proc.pid, s.workdir, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert parent.stdout is not None
    pid_text, workdir = parent.stdout.readline().split()
    server_pid = int(pid_text)
    parent.kill()
    parent.wait()
    parent.stdout.close()
    shutil.rmtree(workdir, ignore_errors=True)
    for _ in range(200):
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.025)
    else:
        os.kill(server_pid, signal.SIGKILL)
        pytest.fail("the server outlived its parent")


def test_startup_failure_reports_the_log() -> None:
    blocker = MosquittoServer()
    with blocker:
        clash = MosquittoServer(port=blocker.port)
        try:
            with pytest.raises(Exception, match=r"mosquitto exited .*log"):
                clash.start()
        finally:
            clash.close()


def test_postgres_cluster_create_and_drop(postgres_cluster: PostgresServer) -> None:
    name = postgres_cluster.create_database("Some Test-Name")
    assert name == "some_test_name"
    engine = sa.create_engine(postgres_cluster.url_for(name))
    with engine.connect() as conn:
        assert conn.execute(sa.text("select current_database()")).scalar_one() == name
    engine.dispose()
    postgres_cluster.drop_database(name)
    assert "some_test_name" not in _database_names(postgres_cluster.url)


def test_start_retries_when_the_chosen_port_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    with MosquittoServer() as blocker:
        ports = iter([blocker.port, free_port()])
        monkeypatch.setattr(servers, "free_port", lambda: next(ports))
        with MosquittoServer() as server:
            assert server.port != blocker.port
            assert server.running
