"""``loopline demo``: the whole loop in one process on embedded defaults, with a simulated
factory and a simulated CRM, so a newcomer sees it work with one command."""

from __future__ import annotations

import json
import logging
import random
import secrets
import shlex
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from urllib.parse import urlsplit

import httpx
import uvicorn
from rich.console import Console
from sqlalchemy.orm import Session

from loopline.history import backfill_history
from loopline.ingest.mqtt.broker import EmbeddedBroker
from loopline.ingest.mqtt.publisher import LinePublisher
from loopline.models.clock import Clock, utcnow
from loopline.models.db import transaction
from loopline.models.notify_rules import NotifyConfig, parse_rules
from loopline.models.planning import backend as planner_backend
from loopline.runtime import (
    Runtime,
    build_app,
    build_consumer,
    build_loop,
    build_notifier,
    build_runtime,
    build_status_watcher,
)
from loopline.seed import CUSTOMERS, PRODUCTS, SITE, seed_factory
from loopline.settings import Settings
from loopline.simulators.crm import CrmFeedbackServer, CrmSimulator
from loopline.simulators.factory import FactorySimulator

log = logging.getLogger("loopline.demo")

INITIAL_ORDERS = 30
# Real seconds between simulated CRM changes, whatever the clock speed.
CRM_EVENT_EVERY_S = 5.0


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on host:port yet."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Demo:
    """A running demo; ``stop`` takes it down in reverse order."""

    runtime: Runtime
    url: str
    mqtt_url: str
    crm_feedback_url: str
    stop_event: threading.Event = field(default_factory=threading.Event)
    stoppers: list[Callable[[], object]] = field(default_factory=list)
    planner_compile: planner_backend.BackgroundCompile | None = None
    # Demo people and their generated passwords (username -> (password, what they see)).
    people: dict[str, tuple[str, str]] = field(default_factory=dict)

    def stop(self) -> None:
        self.stop_event.set()
        for stopper in reversed(self.stoppers):
            try:
                stopper()
            except Exception:  # keep stopping the rest
                log.exception("while stopping the demo")
        self.runtime.close()


def start_demo(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8050,
    mqtt_port: int = 1883,
    speed: float = 60.0,
    seed: int = 7,
    orders: int = INITIAL_ORDERS,
    simulate: bool = True,
) -> Demo:
    """Start every part of the loop in this process and return once the server answers.

    The planner's one-time compile (about a minute) runs in a child process meanwhile;
    until it is loaded, replans run the same kernel as plain Python.
    """
    if not port_free(host, port):
        raise SystemExit(f"port {port} on {host} is in use; choose another with --port")
    # Also when the cache is warm: loading it then takes the child a few seconds.
    compiling = planner_backend.compile_in_background(
        on_ready=lambda s: log.info("planner compiled in %.0f s; replans use it now", s)
    )
    try:
        return _start(settings, compiling, host, port, mqtt_port, speed, seed, orders, simulate)
    except BaseException:
        compiling.stop()
        raise


def _start(
    settings: Settings,
    compiling: planner_backend.BackgroundCompile,
    host: str,
    port: int,
    mqtt_port: int,
    speed: float,
    seed: int,
    orders: int,
    simulate: bool,
) -> Demo:
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db_file = (settings.data_dir / "demo.db").resolve()
        for suffix in ("", "-wal", "-shm"):
            db_file.with_name(db_file.name + suffix).unlink(missing_ok=True)
        settings = settings.model_copy(update={"database_url": f"sqlite:///{db_file}"})
    rt = build_runtime(settings, demo=True, clock=Clock(speed=speed))
    with transaction(rt.sessions) as session:
        seed_factory(session)
        # Weeks of delivered orders before today, so the KPI trends are not empty.
        backfill_history(session, now=utcnow(), rng=random.Random(seed))
        people = seed_people(session)
    demo = Demo(rt, url=f"http://{host}:{port}", mqtt_url="", crm_feedback_url="", people=people)
    stoppers = demo.stoppers
    demo.planner_compile = compiling
    stoppers.append(compiling.stop)

    # MQTT: the embedded broker unless a real one is configured.
    if rt.resolved.mqtt_url:
        demo.mqtt_url = rt.resolved.mqtt_url
    else:
        if not port_free("127.0.0.1", mqtt_port):
            chosen = free_port()
            log.warning("MQTT port %d is taken; the embedded broker uses %d", mqtt_port, chosen)
            mqtt_port = chosen
        broker = EmbeddedBroker(host="127.0.0.1", port=mqtt_port)
        broker.start()
        stoppers.append(broker.stop)
        demo.mqtt_url = f"mqtt://127.0.0.1:{mqtt_port}"

    # CRM feedback: the configured CRM, or the simulator's receiving end.
    feedback_server: CrmFeedbackServer | None = None
    if rt.resolved.crm_url:
        demo.crm_feedback_url = rt.resolved.crm_url
    else:
        feedback = feedback_server = CrmFeedbackServer(rt.resolved.crm_secret)
        feedback.start()
        stoppers.append(feedback.stop)
        demo.crm_feedback_url = feedback.url

    app = build_app(rt)
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", ws="websockets-sansio")
    )
    thread = threading.Thread(target=server.run, name="loopline-http", daemon=True)
    thread.start()

    def stop_server() -> None:
        server.should_exit = True
        thread.join(10)

    stoppers.append(stop_server)
    _wait_http(f"{demo.url}/api/v1/healthz")

    loop = build_loop(rt, crm_url=demo.crm_feedback_url, warm_planner=False)
    consumer = build_consumer(rt, demo.mqtt_url)
    consumer.start()
    stoppers.append(consumer.stop)
    watcher = build_status_watcher(rt, demo.mqtt_url)
    watcher.start()
    stoppers.append(watcher.stop)

    rng = random.Random(seed)
    crm = CrmSimulator(
        demo.url,
        rt.resolved.crm_secret,
        rng=rng,
        products=list(PRODUCTS),
        speed=speed,
        now=rt.clock.now,
        interval_s=CRM_EVENT_EVERY_S * speed,
    )
    today = rt.clock.now().date()
    for event in crm.initial_orders(orders, [(c, n) for c, n, _ in CUSTOMERS], today):
        crm.send(event)
    # The worker starts after the initial backlog is in: no promise exists while it loads, so
    # none of it waits for approval (models/approvals.py); later CRM changes may.
    loop.replan_now("demo start")
    loop.start()
    stoppers.append(loop.stop)
    # Without a rules file the demo tells its in-app inbox (GET /api/v1/notifications).
    notifier = build_notifier(rt, None if settings.notify_rules else demo_rules())
    if notifier is not None:
        notifier.start()
        stoppers.append(notifier.stop)
    if simulate:
        publisher = LinePublisher(demo.mqtt_url, client_id="loopline-demo-lines")
        publisher.start()
        factory = FactorySimulator(rt.live, publisher, rt.clock, site=SITE[0], rng=rng)
        runs = [(factory.run, "factory"), (crm.run, "crm")]
        if isinstance(feedback_server, CrmFeedbackServer):
            runs.append((partial(ship_completed, crm, feedback_server, rng), "shipping"))
        for target, name in runs:
            t = threading.Thread(
                target=target, args=(demo.stop_event,), name=f"sim-{name}", daemon=True
            )
            t.start()
            stoppers.append(partial(t.join, 5))
        stoppers.append(publisher.stop)
    return demo


def ship_completed(
    crm: CrmSimulator, feedback: CrmFeedbackServer, rng: random.Random, stop: threading.Event
) -> None:
    """The simulated CRM's logistics: an order Loopline reports completed reaches its
    customer a while later, and the CRM says so (status ``delivered``), which opens the
    sales rep's follow-up and moves the KPIs."""
    seen = 0
    due: dict[str, float] = {}
    while not stop.wait(CRM_EVENT_EVERY_S):
        received = feedback.received
        for delivery in received[seen:]:
            try:
                body = delivery.json()
            except ValueError:
                continue
            data = body.get("data") or {}
            if body.get("type") == "order.updated" and data.get("status") == "completed":
                due.setdefault(str(data.get("order_id")), time.monotonic() + rng.uniform(20, 90))
        seen = len(received)
        for order_id, at in list(due.items()):
            if time.monotonic() < at:
                continue
            del due[order_id]
            # Records keep wall-clock time (models/followup.py); the demo's clock runs fast.
            event = crm.delivered_event(order_id, at=utcnow())
            if event is None:
                continue
            try:
                crm.send(event)
            except Exception:
                log.exception("the CRM simulator could not deliver %s", order_id)


def seed_people(session: Session) -> dict[str, tuple[str, str]]:
    """A demo admin and a sales rep who sees only their own orders (CRM rep li.na), each
    with a password generated for this run."""
    from loopline.models.users import add_user, get_user

    made: dict[str, tuple[str, str]] = {}
    for username, name, roles, reps, sees in (
        ("demo.admin", "Demo Admin", ["admin"], [], "everything"),
        ("li.na", "Li Na", ["sales"], ["li.na"], "only li.na's orders"),
    ):
        if get_user(session, username=username) is None:
            password = secrets.token_urlsafe(9)
            add_user(
                session,
                username=username,
                name=name,
                roles=roles,
                reps=reps,
                password=password,
                actor="demo",
            )
            made[username] = (password, sees)
    return made


def demo_rules() -> NotifyConfig:
    """The demo's notification rules: every event to the inbox of the roles the demo's
    tokens sign in as, and critical alerts escalated up to the plant manager."""
    to = {
        "line_down": ["role:production_manager"],
        "order_at_risk": ["role:sales", "role:production_manager"],
        "promise_broken": ["role:sales"],
        "rush_accepted": ["role:production_manager"],
        "change_waiting": ["role:production_manager"],
        "material_short": ["role:purchasing"],
        "crm_unreachable": ["role:admin"],
    }
    return parse_rules(
        {
            "rules": [{"name": event, "event": event, "to": who} for event, who in to.items()],
            "escalation": [
                {
                    "severity": "critical",
                    "ack_within_min": 15,
                    "levels": [["role:production_manager"], ["role:plant_manager"]],
                }
            ],
        },
        source="demo rules",
    )


def _wait_http(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the web server did not answer at {url}")


def print_banner(demo: Demo, console: Console) -> None:
    """Tell the user where everything is and how to poke it."""
    rt = demo.runtime
    token = rt.resolved.api_token
    console.print("\n[bold green]Loopline demo is ready[/]  (Ctrl-C stops it)\n")
    for name, path in (
        ("Wall screen", "/wall"),
        ("Orders board", "/board"),
        ("Alerts", "/alerts"),
        ("Sales lookup", "/orders"),
        ("Approvals", "/approvals"),
        ("KPIs", "/kpi"),
        ("Follow-up", "/inbox"),
    ):
        console.print(f"  {name:<13} {demo.url}{path}?token={token}")
    console.print(f"  {'API docs':<13} {demo.url}/docs")
    console.print(f"\n  API token      {token}")
    console.print(f"  Display token  {rt.resolved.display_token}  (read-only, for wall screens)")
    if rt.resolved.manager_token:
        console.print(
            f"  Manager token  {rt.resolved.manager_token}  (production manager: approves changes)"
        )
    for username, (password, sees) in demo.people.items():
        console.print(f"  Sign in        {demo.url}/signin  {username} / {password}  (sees {sees})")
    console.print(f"  CRM secret     {rt.resolved.crm_secret}")
    console.print(f"  MQTT broker    {demo.mqtt_url}")
    console.print(f"  CRM feedback   {demo.crm_feedback_url}")
    console.print(f"  Clock speed    x{rt.clock.speed:g}")
    if planner_backend.compiled_ready():
        console.print("  Planner        compiled\n")
    else:
        console.print(
            "  Planner        plain Python while its one-time compile runs in the background"
            " (about a minute; a line says when it is done)\n"
        )
    console.print("  Try:  curl -H 'Authorization: Bearer " + token + f"' {demo.url}/api/v1/lines")
    sku = next(iter(PRODUCTS))
    console.print(
        "        curl -H 'Authorization: Bearer " + token + "' -H 'Content-Type: application/json'"
        f' -d \'{{"sku": "{sku}", "qty": 300, "requested_date": '
        f'"{(rt.clock.now() + timedelta(days=5)).date()}", "priority": "rush"}}\''
        f" {demo.url}/api/v1/quotes"
    )
    console.print(f"        {mosquitto_example(demo.mqtt_url, rt.clock.now())}\n")


def mosquitto_example(mqtt_url: str, now: datetime) -> str:
    """A ready-to-paste ``mosquitto_pub`` that sets line L2 down on the demo's real broker.

    It names its own ``source``, so its ``seq`` is a stream of its own (the first message
    of a source is never a gap, and the simulated sensor's count is untouched); raise the
    seq for each further message from that source, a repeated one is ignored.
    """
    url = urlsplit(mqtt_url)
    auth = ""
    if url.username:
        auth = f" -u {shlex.quote(url.username)} -P {shlex.quote(url.password or '')}"
    body = json.dumps(
        {
            "seq": 1,
            "ts": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "state": "down",
            "reason": "jam",
            "source": "manual",
        }
    )
    return (
        f"mosquitto_pub -h {url.hostname} -p {url.port or 1883}{auth} -q 1"
        f" -t loopline/v1/{SITE[0]}/L2/state -m {shlex.quote(body)}"
    )
