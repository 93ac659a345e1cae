"""Per-line broker accounts (ingest/devices.py, `loopline devices`) on a real Mosquitto.

The broker admits only the accounts in its password file (allow_anonymous false) and
applies its ACL file; `loopline devices add/remove` edit both and SIGHUP it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from loopline.ingest.devices import (
    DeviceError,
    DeviceFiles,
    hash_password,
    line_topic,
    verify_password,
)
from loopline.models.db import make_engine, make_sessions, migrate, transaction
from loopline.models.records import Line
from tests.factories import seed_small_factory
from tests.servers import MosquittoServer, ensure_installed

ROOT = Path(__file__).resolve().parents[2]
LOOPLINE = [sys.executable, "-m", "loopline.cli"]
INGEST_USER = "loopline-ingest"
INGEST_PASSWORD = "ingest-secret"
WAIT_S = 5.0
NOT_AUTHORIZED = 0x87  # MQTT 5 reason code, PUBACK and CONNACK
# MQTT 5 CONNACK refusals: Mosquitto 2.0 answers a bad password with 0x87 Not authorized,
# the spec also allows 0x86 Bad user name or password.
REFUSED = (0x86, 0x87)


# --- the files on their own --------------------------------------------------------------


def test_hash_matches_mosquitto_passwd_both_ways(tmp_path: Path) -> None:
    """A hash mosquitto_passwd made verifies here; ours has its exact shape."""
    tool = ensure_installed("mosquitto_passwd", "mosquitto-clients")
    passwd = tmp_path / "passwd"
    subprocess.run([tool, "-c", "-b", str(passwd), "L3", "s3cret"], check=True)
    theirs = passwd.read_text().strip().split(":", 1)[1]
    assert verify_password("s3cret", theirs)
    assert not verify_password("s3cre", theirs)
    salt = b"\x01" * 12
    ours = hash_password("s3cret", salt=salt)
    assert ours.startswith("$7$101$AQEBAQEBAQEBAQEB$")
    assert len(ours.split("$")[4]) == len(theirs.split("$")[4])  # a 64-byte key, base64
    assert verify_password("s3cret", ours)
    assert not verify_password("s3cret", "$6$abc$def")


def test_add_and_remove_keep_what_they_did_not_write(tmp_path: Path) -> None:
    """Hand-written password lines and ACL sections survive; a second add is refused."""
    files = DeviceFiles(tmp_path / "passwd", tmp_path / "acl")
    files.password_file.write_text("# ops\nadmin:$7$101$x$y\n")
    files.password_file.chmod(0o600)
    files.acl_file.write_text("topic read $SYS/#\n\n# the admin\nuser admin\ntopic readwrite #\n")
    files.add_line(line="L3", site="s1")
    files.add_line(line="L2", site="s1")
    assert [a.username for a in files.accounts()] == ["L3", "L2"]
    assert files.accounts()[0].writes == ("loopline/v1/s1/L3/#",)
    with pytest.raises(DeviceError, match="already has a broker account"):
        files.add_line(line="L3", site="s1")
    with pytest.raises(DeviceError, match="did not make for a line"):
        files.add_line(line="admin", site="s1", rotate=True)
    with pytest.raises(DeviceError, match="site 'a/b'"):
        files.add_line(line="L4", site="a/b")
    files.remove_line("L3")
    with pytest.raises(DeviceError, match="L3 has no broker account"):
        files.remove_line("L3")
    assert files.password_file.read_text().startswith("# ops\nadmin:$7$101$x$y\nL2:$7$101$")
    acl = files.acl_file.read_text()
    assert acl.startswith("topic read $SYS/#\n\n# the admin\nuser admin\ntopic readwrite #\n")
    assert "user L3" not in acl and "user L2\ntopic write loopline/v1/s1/L2/#" in acl
    assert oct(files.password_file.stat().st_mode & 0o777) == "0o600"  # kept as it was


def test_ensure_ingest_changes_nothing_the_second_time(tmp_path: Path) -> None:
    files = DeviceFiles(tmp_path / "passwd", tmp_path / "acl")
    assert files.ensure_ingest(username=INGEST_USER, password="pw")
    before = files.password_file.read_text(), files.acl_file.read_text()
    assert not files.ensure_ingest(username=INGEST_USER, password="pw")
    assert (files.password_file.read_text(), files.acl_file.read_text()) == before
    assert files.ensure_ingest(username=INGEST_USER, password="new")  # a changed password
    (ingest,) = files.accounts()
    assert ingest.role == "ingest" and ingest.reads == ("#",)
    assert oct(files.acl_file.stat().st_mode & 0o777) == "0o640"


def test_the_deploy_acl_keeps_its_own_rules(tmp_path: Path) -> None:
    """deploy/mosquitto/acl's hand-written `loopline` section is the operator's: untouched."""
    files = DeviceFiles(tmp_path / "passwd", tmp_path / "acl")
    original = (ROOT / "deploy" / "mosquitto" / "acl").read_text()
    files.acl_file.write_text(original)
    assert files.ensure_ingest(username="loopline", password="pw")  # the password only
    assert files.acl_file.read_text() == original
    files.add_line(line="L3", site="plant-1")
    assert files.acl_file.read_text().startswith(original.rstrip("\n") + "\n\n# loopline line\n")
    files.remove_line("L3")
    assert files.acl_file.read_text() == original
    assert [a.username for a in files.accounts()] == []


# --- on a real broker, through the command line -------------------------------------------


@pytest.fixture
def secured_broker(artifacts_dir: Path) -> Iterator[MosquittoServer]:
    """A Mosquitto with allow_anonymous false, a password file and an ACL file (empty)."""
    server = MosquittoServer.with_accounts()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.save_log(artifacts_dir / "servers")
        server.close()


@pytest.fixture
def env(secured_broker: MosquittoServer, tmp_path: Path) -> dict[str, str]:
    """The settings of `loopline devices`: a database with lines L1..L3 at site s1."""
    db = f"sqlite:///{tmp_path / 'loopline.db'}"
    engine = make_engine(db)
    migrate(engine)
    with transaction(make_sessions(engine)) as session:
        seed_small_factory(session)
        session.add(Line(id="L3", site_id="s1", name="Line L3"))
    engine.dispose()
    b = secured_broker
    return {
        **os.environ,
        "LOOPLINE_DATABASE_URL": db,
        "LOOPLINE_MQTT_URL": f"mqtt://{INGEST_USER}:{INGEST_PASSWORD}@{b.host}:{b.port}",
        "LOOPLINE_MQTT_PASSWORD_FILE": str(b.password_file),
        "LOOPLINE_MQTT_ACL_FILE": str(b.acl_file),
        "LOOPLINE_MQTT_PID_FILE": str(b.pid_file),
    }


Connect = Callable[..., "Client"]


@pytest.fixture
def connect(secured_broker: MosquittoServer) -> Iterator[Connect]:
    """Open MQTT 5 clients on the secured broker (``connect(user, password)``), closed after."""
    opened: list[Client] = []

    def open_client(username: str | None, password: str | None, **kw: object) -> Client:
        opened.append(Client(secured_broker, username, password, **kw))  # type: ignore[arg-type]
        return opened[-1]

    yield open_client
    for client in opened:
        client.close()


def _loopline(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LOOPLINE, "devices", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def _password(out: str) -> str:
    return next(
        ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("password:")
    )


class Client:
    """A paho MQTT 5 client that records CONNACK, PUBACK reason codes and messages."""

    def __init__(
        self,
        broker: MosquittoServer,
        username: str | None,
        password: str | None,
        protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
    ) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"t-{username}-{uuid.uuid4().hex[:6]}",
            protocol=protocol,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connack: ReasonCode | None = None
        self.pubacks: dict[int, ReasonCode] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        self.disconnected = threading.Event()
        self.changed = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_disconnect = lambda *_: self.disconnected.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def _on_connect(self, _c: object, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        self.connack = rc
        self._notify()

    def _on_publish(self, _c: object, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
        self.pubacks[mid] = rc
        self._notify()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.append((msg.topic, msg.payload))
        self._notify()

    def wait(self, predicate: object) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, WAIT_S)  # type: ignore[arg-type]

    def connected(self) -> ReasonCode:
        assert self.wait(lambda: self.connack is not None), "no CONNACK"
        assert self.connack is not None
        return self.connack

    def publish(self, topic: str) -> ReasonCode:
        """Publish QoS 1 and wait for the PUBACK; its reason code."""
        info = self.client.publish(topic, b'{"seq": 1}', qos=1)
        assert self.wait(lambda: info.mid in self.pubacks), f"no PUBACK for {topic}"
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_line_publishes_only_to_its_own_topics(
    secured_broker: MosquittoServer, env: dict[str, str], connect: Connect
) -> None:
    added = _loopline(env, "add", "L3")
    assert added.returncode == 0, added.stdout + added.stderr
    assert "publish:  loopline/v1/s1/L3/#" in added.stdout
    assert "reloaded Mosquitto" in added.stderr
    password = _password(added.stdout)
    assert password not in secured_broker.password_file.read_text()  # only its hash is kept

    ingest = connect(INGEST_USER, INGEST_PASSWORD)
    sensor = connect("L3", password)
    assert ingest.connected() == 0 and sensor.connected() == 0
    ingest.client.subscribe("loopline/v1/#", qos=1)
    assert ingest.subscribed.wait(WAIT_S)

    assert sensor.publish("loopline/v1/s1/L3/progress") == 0
    assert ingest.wait(lambda: ("loopline/v1/s1/L3/progress", b'{"seq": 1}') in ingest.messages)

    # Another line's topic: Mosquitto drops it and says so in the MQTT 5 PUBACK.
    assert sensor.publish("loopline/v1/s1/L2/progress") == NOT_AUTHORIZED
    assert sensor.publish("loopline/v1/s2/L3/state") == NOT_AUTHORIZED
    assert sensor.publish("loopline/v1/_system/ingest/status") == NOT_AUTHORIZED
    assert sensor.publish("loopline/v1/s1/L3/state") == 0  # a marker after the refusals
    assert ingest.wait(lambda: ingest.messages[-1][0] == "loopline/v1/s1/L3/state")
    # MQTT 3.1.1 has no reason codes: the PUBACK says nothing, the message is dropped.
    old_sensor = connect("L3", password, protocol=mqtt.MQTTv311)
    assert old_sensor.connected() == 0
    assert old_sensor.publish("loopline/v1/s1/L2/progress") == 0
    assert old_sensor.publish("loopline/v1/s1/L3/state") == 0
    assert ingest.wait(lambda: len(ingest.messages) == 3)
    assert [t for t, _ in ingest.messages] == [
        "loopline/v1/s1/L3/progress",
        "loopline/v1/s1/L3/state",
        "loopline/v1/s1/L3/state",
    ]
    # The ingest may publish its status (and its Will) and subscribe to a shared group.
    assert ingest.publish("loopline/v1/_system/ingest/status") == 0
    assert ingest.publish("loopline/v1/s1/L3/progress") == NOT_AUTHORIZED
    shared = connect(INGEST_USER, INGEST_PASSWORD)
    shared.client.subscribe("$share/loopline/loopline/v1/+/+/+", qos=1)
    assert shared.subscribed.wait(WAIT_S)
    assert sensor.publish("loopline/v1/s1/L3/progress") == 0
    assert shared.wait(lambda: len(shared.messages) == 1)

    # Refused at CONNECT: a wrong password, no account at all.
    assert connect("L3", password + "x").connected() in REFUSED
    assert connect("L9", password).connected() in REFUSED
    assert connect(None, None).connected() in REFUSED

    listed = _loopline(env, "list")
    assert listed.returncode == 0, listed.stderr
    rows = {ln.split()[0]: ln for ln in listed.stdout.splitlines()}
    assert "write loopline/v1/s1/L3/#" in rows["L3"]
    assert "read #" in rows[INGEST_USER]
    assert "no account" in rows["L1"] and "no account" in rows["L2"]

    # Removed: the connected sensor is put out at the reload and cannot sign in again.
    removed = _loopline(env, "remove", "L3")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert sensor.disconnected.wait(WAIT_S)
    assert connect("L3", password).connected() in REFUSED
    assert ingest.publish("loopline/v1/_system/ingest/status") == 0  # the ingest stays


def test_unknown_line_and_missing_settings_are_refused(env: dict[str, str]) -> None:
    unknown = _loopline(env, "add", "L9")
    assert unknown.returncode == 2
    assert "unknown line 'L9'" in unknown.stderr and "L1, L2, L3" in unknown.stderr
    assert _loopline(env, "remove", "L9").returncode == 2
    twice = [_loopline(env, "add", "L1").returncode, _loopline(env, "add", "L1").returncode]
    assert twice == [0, 2]
    rotated = _loopline(env, "add", "L1", "--rotate")
    assert rotated.returncode == 0 and _password(rotated.stdout)
    anonymous = {**env, "LOOPLINE_MQTT_URL": "mqtt://127.0.0.1:1"}
    assert "must name the ingest's account" in _loopline(anonymous, "add", "L2").stderr
    unset = {k: v for k, v in env.items() if k != "LOOPLINE_MQTT_ACL_FILE"}
    refused = _loopline(unset, "list")
    assert refused.returncode == 2 and "LOOPLINE_MQTT_ACL_FILE" in refused.stderr
    no_pid = {k: v for k, v in env.items() if k != "LOOPLINE_MQTT_PID_FILE"}
    hint = _loopline(no_pid, "add", "L2")
    assert hint.returncode == 0 and "kill -HUP" in hint.stderr


def test_line_topic() -> None:
    assert line_topic("plant-1", "L3") == "loopline/v1/plant-1/L3/#"
