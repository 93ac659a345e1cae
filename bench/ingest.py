"""Shop-floor ingest throughput on real servers: ``loopline ingest`` against a bare paho receiver.

A real PostgreSQL, Redis and Mosquitto on free ports (tests/servers.py). The factory comes
from ``loopline import-factory deploy/factory.example.json``; orders are recorded and planned
once (the planner fills the line queues, so every batch pays for the ETAs it changes).

Burst: ``--messages`` QoS 1 progress messages (200k; ``--quick`` 20k), round robin over the
planned work orders, each adding one good unit (every 50th one scrap), ``seq`` per line.

1. **Drain** (one process). Each receiver's persistent session exists first; the burst is
   queued in the broker while it is away, then it connects and drains the backlog:
   - baseline: a bare paho QoS 1 receiver (3.1.1, auto-ack, counts messages), its own process;
   - ``loopline ingest`` (3.1.1, acks after storing), its own process.
   Rate = messages / (last applied - first applied); the ingest side is read off Redis.
2. **Shared** (``--shared``, 1 vs 2 processes). Members subscribe through
   ``$share/loopline/...`` with clean sessions, the burst is published live (a shared group
   with clean sessions keeps nothing while no member is there), and with ``--kill`` one of
   two members is ``kill -9``-ed halfway. Lost = units missing from the final counters.

Checked every time: the final good/scrap of every work order equals the last value sent
(0 lost, 0 in excess), and every line's seq in Redis is the last one sent.

Publishing: ``--publishers`` processes (3), the lines split among them so that each line's
messages keep their order (one paho publisher tops out near 3k msg/s here, below what two
members take).

Run: ``.venv/bin/python bench/ingest.py [--quick] [--messages N] [--shared] [--kill]
[--publishers K] [--profile DIR]``. Exits 1 on any loss or mismatch, or a ratio below
``--min-ratio``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._procs import (  # noqa: E402
    LOOPLINE,
    ROOT,
    Procs,
    free_port,
    import_factory,
    loopline_env,
    wait_for,
)
from loopline.models.clock import utcnow  # noqa: E402
from loopline.models.db import make_engine, make_sessions, transaction  # noqa: E402
from loopline.models.events import parse_crm_event  # noqa: E402
from loopline.models.live import LiveState  # noqa: E402
from loopline.models.orders import apply_crm_event  # noqa: E402
from loopline.models.replan import replan  # noqa: E402
from loopline.runtime import plan_window  # noqa: E402
from loopline.settings import Settings, new_webhook_secret  # noqa: E402
from tests.servers import MosquittoServer, PostgresServer, RedisServer  # noqa: E402

SITE = "plant-1"
SKUS = ["GEAR-A", "SHAFT-S", "HOUSING-X", "GEAR-B", "SHAFT-L", "PUMP-P7"]
ORDERS = 24
TOPIC = "loopline/v1/+/+/+"
BARE_ID = "bench-bare-receiver"
POLL_S = 0.02
DRAIN_TIMEOUT_S = 600.0


@dataclass
class Target:
    work_order: str
    line: str
    good: int = 0
    scrap: int = 0


@dataclass
class Burst:
    """What was sent: the last counters per work order and the last seq per line."""

    targets: list[Target]
    seq: dict[str, int]
    sent: int = 0

    def payloads(self, n: int) -> list[tuple[str, bytes]]:
        out = []
        for i in range(n):
            t = self.targets[(self.sent + i) % len(self.targets)]
            t.good += 1
            t.scrap = t.good // 50
            self.seq[t.line] = self.seq.get(t.line, 0) + 1
            ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            body = {
                "seq": self.seq[t.line],
                "ts": ts,
                "work_order": t.work_order,
                "good": t.good,
                "scrap": t.scrap,
            }
            out.append((f"loopline/v1/{SITE}/{t.line}/progress", json.dumps(body).encode()))
        self.sent += n
        return out


# --- the baseline: a bare paho QoS 1 receiver, in its own process --------------------------


def bare_receiver(host: str, port: int, n: int, clean: bool, share: str | None) -> None:
    """Count ``n`` QoS 1 messages (auto-ack); print the first and last receive times as JSON."""
    seen = {"n": 0, "first": 0.0, "last": 0.0}
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.startswith("loopline/v1/_system/"):
            return  # ingest's own retained status, not part of the burst
        now = time.time()
        if not seen["n"]:
            seen["first"] = now
        seen["n"] += 1
        seen["last"] = now
        if seen["n"] >= n:
            done.set()

    def on_connect(client: mqtt.Client, *args: Any) -> None:
        client.subscribe(f"$share/{share}/{TOPIC}" if share else TOPIC, qos=1)

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=BARE_ID if not share else f"{BARE_ID}-{os.getpid()}",
        clean_session=clean,
    )
    client.on_message = on_message
    client.on_connect = on_connect
    client.connect(host, port)
    client.loop_start()
    print("ready", flush=True)
    done.wait(DRAIN_TIMEOUT_S)
    client.loop_stop()
    client.disconnect()
    print(json.dumps(seen), flush=True)


def _make_session(host: str, port: int, client_id: str) -> None:
    """Connect once with a persistent session and subscribe, so the broker queues for it."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    subscribed = threading.Event()
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect(host, port)
    client.loop_start()
    client.subscribe(TOPIC, qos=1)
    if not subscribed.wait(10):
        raise RuntimeError("broker never confirmed the subscription")
    client.loop_stop()
    client.disconnect()


def run_bare(broker: MosquittoServer, n: int, *, queued: bool) -> float:
    """The bare receiver's rate over ``n`` messages (queued before it connects, or live)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--bare-receiver", broker.host, str(broker.port), str(n)]
        + ([] if queued else ["--clean"]),
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "ready"
    out, _ = proc.communicate(timeout=DRAIN_TIMEOUT_S)
    seen = json.loads(out.strip().splitlines()[-1])
    if seen["n"] != n:
        raise RuntimeError(f"bare receiver got {seen['n']} of {n}")
    return n / max(seen["last"] - seen["first"], 1e-9)


# --- the world -------------------------------------------------------------------------------


class World:
    """Servers, a planned factory, and the environment ``loopline`` processes run in."""

    def __init__(self, workdir: Path, messages: int) -> None:
        self.workdir = workdir
        self.pg = PostgresServer(port=free_port()).start()
        self.redis = RedisServer(port=free_port()).start()
        self.broker = MosquittoServer(
            port=free_port(), options={"max_queued_messages": str(4 * messages + 1000)}
        ).start()
        dbname = self.pg.create_database(f"bench_ingest_{uuid.uuid4().hex[:8]}")
        self.client_id = f"bench-ingest-{uuid.uuid4().hex[:8]}"
        self.env = loopline_env(
            database_url=self.pg.url_for(dbname),
            redis_url=self.redis.url,
            mqtt_url=self.broker.url,
            crm_url=None,
            secret=new_webhook_secret(),
            data_dir=workdir,
            mqtt_client_id=self.client_id,
        )
        self.procs = Procs(self.env, workdir)
        self.rds = redis.Redis.from_url(self.redis.url, decode_responses=True)
        self.live = LiveState(self.rds)
        import_factory(self.env)
        self.engine = make_engine(self.env["LOOPLINE_DATABASE_URL"])
        self.sessions = make_sessions(self.engine)

    def plan_orders(self, qty: int) -> list[Target]:
        """Record and plan ``ORDERS`` orders of ``qty`` units; the planned work orders."""
        requested = (datetime.now(UTC) + timedelta(days=60)).date()
        with transaction(self.sessions) as session:
            for i in range(ORDERS):
                event = {
                    "type": "order.upserted",
                    "occurred_at": utcnow().isoformat(),
                    "order": {
                        "id": f"SO-B{i:03d}",
                        "version": 1,
                        "customer": {"id": "C-1", "name": "Acme Gears"},
                        "lines": [{"sku": SKUS[i % len(SKUS)], "qty": qty}],
                        "requested_date": requested.isoformat(),
                    },
                }
                apply_crm_event(
                    session,
                    event=parse_crm_event(event),
                    source="canonical",
                    webhook_id=f"bench-{i}",
                    raw=json.dumps(event),
                    actor="bench",
                )
        replan(
            self.sessions,
            self.live,
            now=utcnow(),
            trigger="bench",
            window=plan_window(Settings()),
        )
        targets = [
            Target(wo["id"], wo["line"])
            for wo in self.live.all("work_order")
            if wo.get("line") and wo.get("status") != "cancelled"
        ]
        if not targets:
            raise RuntimeError("the plan put no work order on a line")
        return sorted(targets, key=lambda t: t.work_order)

    def good_total(self, targets: list[Target]) -> int:
        pipe = self.rds.pipeline(transaction=False)
        for t in targets:
            pipe.hget(f"ll:work_order:{t.work_order}", "good")
        return sum(int(json.loads(v)) for v in pipe.execute() if v is not None)

    def check(self, burst: Burst) -> tuple[int, int, int, int]:
        """``(units lost, units in excess, work orders differing, lines whose seq differs)``."""
        lost = excess = differ = 0
        wos = dict(zip([t.work_order for t in burst.targets],
                       self.live.get_many("work_order", [t.work_order for t in burst.targets]),
                       strict=True))  # fmt: skip
        for t in burst.targets:
            wo = wos.get(t.work_order) or {}
            good, scrap = int(wo.get("good") or 0), int(wo.get("scrap") or 0)
            lost += max(0, t.good - good)
            excess += max(0, good - t.good)
            differ += (good, scrap) != (t.good, t.scrap)
        lines = self.live.get_many("line", sorted(burst.seq))
        seq_off = sum(
            (ln or {}).get("seq") != burst.seq[lid]
            for lid, ln in zip(sorted(burst.seq), lines, strict=True)
        )
        return lost, excess, differ, seq_off

    def close(self) -> None:
        self.procs.stop_all()
        self.engine.dispose()
        for server in (self.broker, self.redis, self.pg):
            server.stop()
            server.close()


class FastPublisher:
    """A QoS 1 publisher keeping up to ``window`` messages unacked (paho's own cap is 65,535)."""

    def __init__(self, host: str, port: int, window: int = 2000) -> None:
        self.window = window
        self.sent = self.acked = 0
        self.cond = threading.Condition()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-sensor-{uuid.uuid4().hex[:8]}"
        )
        self.client.max_inflight_messages_set(window)
        self.client.max_queued_messages_set(0)
        self.client.on_publish = self._on_publish
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_publish(self, *args: Any) -> None:
        with self.cond:
            self.acked += 1
            self.cond.notify_all()

    def publish(self, topic: str, payload: bytes) -> None:
        with self.cond:
            while self.sent - self.acked >= self.window:
                self.cond.wait(1.0)
        self.client.publish(topic, payload, qos=1)
        self.sent += 1

    def close(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while self.acked < self.sent and time.monotonic() < deadline:
                self.cond.wait(1.0)
        self.client.loop_stop()
        self.client.disconnect()
        if self.acked < self.sent:
            raise TimeoutError(f"broker acked {self.acked} of {self.sent}")


def publish(world: World, burst: Burst, n: int, publishers: int) -> tuple[float, float]:
    """Publish ``n`` messages of the burst at QoS 1 (all acked by the broker); the rate and
    when the first publisher began (epoch s: its process start-up is not counted).

    ``publishers`` processes, each with the lines of its own (a line's messages keep their
    order: MQTT orders per publisher): one paho publisher tops out near 3k msg/s here.
    """
    messages = burst.payloads(n)
    lines = sorted({topic.split("/")[3] for topic, _ in messages})
    share = {line: k % publishers for k, line in enumerate(lines)}
    files = []
    for k in range(min(publishers, len(lines))):
        path = world.workdir / f"publisher-{k}.jsonl"
        with path.open("w") as lines_out:
            for topic, payload in messages:
                if share[topic.split("/")[3]] == k:
                    lines_out.write(json.dumps([topic, payload.decode()]) + "\n")
        files.append(path)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--publisher",
                world.broker.host,
                str(world.broker.port),
                str(path),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )  # fmt: skip
        for path in files
    ]
    spans = []
    for proc in procs:
        out, _ = proc.communicate(timeout=DRAIN_TIMEOUT_S)
        if proc.returncode:
            raise RuntimeError(f"a publisher failed (exit {proc.returncode})")
        spans.append(json.loads(out.strip().splitlines()[-1]))
    sent = sum(span["n"] for span in spans)
    if sent != n:
        raise RuntimeError(f"publishers sent {sent} of {n}")
    began = min(s["start"] for s in spans)
    return n / (max(s["end"] for s in spans) - began), began


def publisher(host: str, port: int, path: Path) -> None:
    """Publish every ``[topic, payload]`` line of ``path`` at QoS 1; print the span as JSON."""
    messages = [json.loads(line) for line in path.read_text().splitlines()]
    pub = FastPublisher(host, port)
    start = time.time()
    for topic, payload in messages:
        pub.publish(topic, payload.encode())
    pub.close()
    print(json.dumps({"n": len(messages), "start": start, "end": time.time()}), flush=True)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_applied(world: World, targets: list[Target], start: int, want: int) -> tuple[float, float]:
    """Poll Redis until ``want`` units above ``start`` are applied: (first, last) change times."""
    first = last = 0.0
    seen = start
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        total = world.good_total(targets)
        now = time.time()
        if total != seen:
            if not first:
                first = now - POLL_S / 2
            last = now - POLL_S / 2
            seen = total
        if total >= start + want:
            return first, last
        time.sleep(POLL_S)
    raise RuntimeError(f"ingest applied {seen - start} of {want} units in {DRAIN_TIMEOUT_S}s")


def start_ingest(world: World, name: str, profile: Path | None, extra: dict[str, str]) -> int:
    """Start one ``loopline ingest`` (under pyinstrument with ``profile``); its pid."""
    env = {**world.env, **extra}
    log = (world.workdir / f"{name}.log").open("wb")
    argv = [*LOOPLINE, "ingest"]
    proc = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    world.procs.procs[name] = proc
    if profile is not None:
        # py-spy, not pyinstrument, for the whole process: pyinstrument samples only the
        # main thread, and ingest's work happens in paho's thread and the worker thread.
        profile.mkdir(parents=True, exist_ok=True)
        world.procs.procs[f"{name}-py-spy"] = subprocess.Popen(
            [str(Path(sys.executable).with_name("py-spy")), "record", "--threads",
             "--format", "raw", "--rate", "250", "--pid", str(proc.pid),
             "-o", str(profile / f"{name}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return proc.pid


def wait_online(world: World, client_id: str | None = None) -> None:
    """Wait until a consumer's subscription is in place (its retained status says online)."""
    got = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex}")

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.payload == b"online":
            got.set()

    client.on_message = on_message
    client.connect(world.broker.host, world.broker.port)
    client.subscribe("loopline/v1/_system/ingest/status/#", qos=1)
    client.loop_start()
    ok = got.wait(60)
    client.loop_stop()
    client.disconnect()
    if not ok:
        raise RuntimeError("ingest never came online")
    time.sleep(0.5)  # its SUBACK follows the online status


def stop(world: World, name: str) -> None:
    spy = world.procs.procs.pop(f"{name}-py-spy", None)
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # writes the profile
        spy.wait(60)
    proc = world.procs.procs[name]
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


def drain(
    world: World, burst: Burst, n: int, profile: Path | None, publishers: int
) -> dict[str, float]:
    """Scenario 1: bare receiver and one ingest, each draining ``n`` queued messages."""
    _make_session(world.broker.host, world.broker.port, BARE_ID)
    # Ingest's own persistent session: start it once, let it subscribe, stop it.
    start_ingest(world, "ingest-setup", None, {})
    wait_online(world)
    stop(world, "ingest-setup")
    pub_rate, _ = publish(world, burst, n, publishers)
    print(
        f"{publishers} publisher processes sent {n} msgs at QoS 1 into both sessions: "
        f"{pub_rate:,.0f} msg/s"
    )
    bare = run_bare(world.broker, n, queued=True)
    print(f"bare paho QoS 1 receiver drained {n} msgs: {bare:,.0f} msg/s")
    before = time.time()
    pid = start_ingest(world, "ingest", profile, {})
    first, last = wait_applied(world, burst.targets, 0, n)
    cores = cpu_s(pid)
    stop(world, "ingest")
    rate = n / max(last - first, 1e-9)
    print(
        f"loopline ingest drained {n} msgs: {rate:,.0f} msg/s "
        f"(first applied {first - before:.1f}s after start; {cores:.1f} CPU s in all, "
        f"{cores / max(last - before, 1e-9):.2f} cores over start+drain)"
    )
    return {"bare": bare, "ingest": rate}


def shared(
    world: World, burst: Burst, n: int, members: int, kill: bool, publishers: int
) -> dict[str, float]:
    """Scenario 2: ``members`` ingest processes in one shared group, the burst sent live."""
    extra = {"mqtt_shared_group": "loopline"}
    env_extra = {f"LOOPLINE_{k.upper()}": v for k, v in extra.items()}
    names = []
    for k in range(members):
        name = f"shared{members}-{k}"
        start_ingest(world, name, None, {**env_extra, "LOOPLINE_MQTT_CLIENT_ID": f"m{k}-{name}"})
        names.append(name)
    wait_online(world)
    time.sleep(2.0)  # every member's SUBACK
    start = world.good_total(burst.targets)
    killed = []

    def killer() -> None:
        wait_for(lambda: world.good_total(burst.targets) - start >= n // 2, 120, 0.05)
        proc = world.procs.procs[names[0]]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        killed.append(names[0])

    thread = threading.Thread(target=killer, daemon=True) if kill else None
    if thread:
        thread.start()
    # From the first message sent: the publishers' start-up (imports) is not counted.
    pub_rate, began = publish(world, burst, n, publishers)
    first, last = wait_applied(world, burst.targets, start, n)
    if thread:
        thread.join(5)
    for name in names:
        if name not in killed:
            stop(world, name)
    rate = n / max(last - began, 1e-9)
    return {"rate": rate, "killed": len(killed), "published": pub_rate}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k messages instead of 200k")
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--shared", action="store_true", help="also 1 vs 2 shared members")
    parser.add_argument("--kill", action="store_true", help="kill -9 one of 2 shared members")
    parser.add_argument("--profile", type=Path, default=None, help="pyinstrument HTML here")
    parser.add_argument("--min-ratio", type=float, default=0.0)
    parser.add_argument(
        "--publishers", type=int, default=3, help="publisher processes (lines split among them)"
    )
    parser.add_argument("--bare-receiver", nargs=3, metavar=("HOST", "PORT", "N"))
    parser.add_argument("--publisher", nargs=3, metavar=("HOST", "PORT", "FILE"))
    parser.add_argument("--clean", action="store_true")
    args = parser.parse_args()
    if args.bare_receiver:
        host, port, n = args.bare_receiver
        bare_receiver(host, int(port), int(n), args.clean, None)
        return 0
    if args.publisher:
        host, port, path = args.publisher
        publisher(host, int(port), Path(path))
        return 0
    n = args.messages or (20_000 if args.quick else 200_000)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    world = World(workdir, n)
    failed = False
    try:
        targets = world.plan_orders(qty=2 * n // ORDERS + 100)  # none completes
        burst = Burst(targets, {})
        lines = sorted({t.line for t in targets})
        print(f"{len(targets)} work orders on {len(lines)} lines ({', '.join(lines)})")
        rates = drain(world, burst, n, args.profile, args.publishers)
        ratio = rates["ingest"] / rates["bare"]
        lost, excess, differ, seq_off = world.check(burst)
        print(
            f"ratio ingest / bare: {ratio:.2f}   lost {lost}, excess {excess}, "
            f"work orders differing {differ}, lines with wrong seq {seq_off}"
        )
        failed |= bool(lost or excess or differ or seq_off) or ratio < args.min_ratio
        if args.shared:
            shared_rates = {}
            for members in (1, 2):
                got = shared(world, burst, n, members, kill=False, publishers=args.publishers)
                lost, excess, differ, seq_off = world.check(burst)
                print(
                    f"shared group, {members} member(s), live burst of {n}: "
                    f"{got['rate']:,.0f} msg/s end to end (published at "
                    f"{got['published']:,.0f} msg/s); lost {lost}, excess {excess}, "
                    f"differing {differ}, wrong seq {seq_off}"
                )
                failed |= bool(lost or excess or differ or seq_off)
                shared_rates[members] = got["rate"]
            print(f"ratio 2 members / 1 member: {shared_rates[2] / shared_rates[1]:.2f}")
        if args.kill:
            got = shared(world, burst, n, 2, kill=True, publishers=args.publishers)
            lost, excess, differ, seq_off = world.check(burst)
            print(
                f"shared group, 2 members, one kill -9 halfway ({got['killed']} killed): "
                f"{got['rate']:,.0f} msg/s; lost {lost}, excess {excess}, differing {differ}, "
                f"wrong seq {seq_off}"
            )
            failed |= bool(lost or excess or differ or seq_off)
    except Exception:
        for log in sorted(workdir.glob("*.log")):
            print(f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-15:]))
        raise
    finally:
        world.close()
    print("FAILED" if failed else "ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
