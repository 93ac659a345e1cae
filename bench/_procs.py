"""Shared pieces of the process-level benchmarks (bench/chaos.py, bench/webhook.py).

Everything here drives Loopline the way its users do: ``python -m loopline.cli`` processes
(``import-factory``, ``serve``, ``ingest``, ``worker``) configured through ``LOOPLINE_*``
variables, the signed CRM webhook, the REST API and MQTT. Only loopback traffic. Every
child is started through ``setpriv --pdeathsig KILL`` where available, so it dies with the
bench even when the bench itself is killed; ``Procs.stop_all`` stops the rest in order.

Not a benchmark itself (``scripts/bench`` skips ``bench/_*.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

ROOT = Path(__file__).resolve().parents[1]
LOOPLINE = [sys.executable, "-m", "loopline.cli"]
FACTORY_FILE = ROOT / "deploy" / "factory.example.json"
API_TOKEN = "bench-admin-token"
EVENTS_PATH = "/api/v1/crm/events"
HTTP_TIMEOUT_S = 10.0
START_TIMEOUT_S = 90.0  # serve imports Dash and migrates; slow on a loaded 2-core machine
STOP_TIMEOUT_S = 10.0
IMPORT_TIMEOUT_S = 120.0
# paho stalls silently past 65,535 unacknowledged QoS 1 messages (DESIGN.md): stay far below.
MAX_IN_FLIGHT = 1000
PUBLISH_ACK_TIMEOUT_S = 30.0


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def wait_for(
    predicate: Callable[[], Any], timeout_s: float, step_s: float = 0.2
) -> tuple[Any, float]:
    """Poll ``predicate`` until it returns something truthy or ``timeout_s`` passes.

    Returns ``(value, seconds waited)``; the value is the last falsy one on timeout. An
    exception in the predicate counts as "not yet" (the system may be recovering).
    """
    began = time.monotonic()
    value: Any = None
    while True:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - a store outage answers errors until it recovers
            value = None
        if value:
            return value, time.monotonic() - began
        if time.monotonic() - began >= timeout_s:
            return value, time.monotonic() - began
        time.sleep(step_s)


def free_port() -> int:
    """A free loopback port that is none of the machine's default ports."""
    from tests.servers import free_port as _free_port

    return _free_port()


# --- signing -------------------------------------------------------------------------------


def signed_headers(secret: str, webhook_id: str, body: str) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, signed now (the receiver checks the time)."""
    stamp = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, stamp, body),
    }


def new_webhook_id(prefix: str = "evt") -> str:
    """A webhook id as a CRM would make one (unique per event, kept on every retry)."""
    return f"{prefix}_{uuid.uuid4().hex}"


# --- processes -----------------------------------------------------------------------------


SEED_THREADS = 4  # concurrent clients seeding orders through the webhook


def seed_orders(url: str, order_ids: list[str], event: Callable[[str], str], secret: str) -> int:
    """POST each order's signed event (``event(order_id)``, the raw body) to ``url`` from
    ``SEED_THREADS`` keep-alive clients, each event tried up to 5 times until a 202; returns
    how many never got one."""
    failures = [0]

    def run(chunk: list[str]) -> None:
        with httpx.Client() as client:
            for order_id in chunk:
                raw = event(order_id)
                for _attempt in range(5):
                    try:
                        headers = signed_headers(secret, new_webhook_id(), raw)
                        resp = client.post(url, content=raw, headers=headers, timeout=30)
                        if resp.status_code == 202:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.5)
                else:
                    failures[0] += 1

    threads = [
        threading.Thread(target=run, args=(order_ids[k::SEED_THREADS],), daemon=True)
        for k in range(SEED_THREADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    return failures[0]


def _death_prefix() -> list[str]:
    setpriv = shutil.which("setpriv") or next(
        (p for p in ("/usr/bin/setpriv", "/bin/setpriv") if os.access(p, os.X_OK)), None
    )
    return [setpriv, "--pdeathsig", "KILL"] if setpriv else []


class Procs:
    """The ``loopline`` processes one scenario started, by name; all stopped on ``stop_all``."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._counts: dict[str, int] = {}

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """Start ``loopline <args>`` as ``name`` (a previous one of that name must be gone)."""
        old = self.procs.get(name)
        if old is not None and old.poll() is None:
            raise RuntimeError(f"{name} is still running (pid {old.pid})")
        n = self._counts[name] = self._counts.get(name, 0) + 1
        log = (self.logdir / f"{name}-{n}.log").open("wb")
        # Why the pid of setpriv is the process's own: setpriv execs.
        proc = subprocess.Popen(
            [*_death_prefix(), *LOOPLINE, *args],
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def kill9(self, name: str) -> None:
        """``kill -9`` the process ``name``, as a crash would, and reap it."""
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(STOP_TIMEOUT_S)

    def stop(self, name: str, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """Stop ``name`` as an operator would (SIGTERM), killing it after ``timeout_s``."""
        proc = self.procs.get(name)
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        return proc.returncode

    def alive(self, name: str) -> bool:
        """Whether ``name`` runs now."""
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def stop_all(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop every process this object started: SIGTERM to all, then wait, then kill."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)

    def log_tail(self, name: str, lines: int = 30) -> str:
        """The end of the newest log of ``name``."""
        n = self._counts.get(name)
        if not n:
            return "(no log)"
        text = (self.logdir / f"{name}-{n}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def loopline_env(
    *,
    database_url: str,
    redis_url: str,
    mqtt_url: str | None,
    crm_url: str | None,
    secret: str,
    data_dir: Path,
    **extra: str,
) -> dict[str, str]:
    """The environment of a Loopline process: only our ``LOOPLINE_*`` settings, none inherited."""
    # LOOPLINE_SRC is no setting: a worktree's wrapper names the checkout to import from.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_") or k == "LOOPLINE_SRC"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(
        LOOPLINE_DATABASE_URL=database_url,
        LOOPLINE_REDIS_URL=redis_url,
        LOOPLINE_CRM_SECRET=secret,
        LOOPLINE_API_TOKEN=API_TOKEN,
        LOOPLINE_DATA_DIR=str(data_dir),
    )
    if mqtt_url:
        env["LOOPLINE_MQTT_URL"] = mqtt_url
    if crm_url:
        env["LOOPLINE_CRM_URL"] = crm_url
    env.update({f"LOOPLINE_{k.upper()}": v for k, v in extra.items()})
    return env


def import_factory(env: dict[str, str], path: Path = FACTORY_FILE) -> None:
    """``loopline import-factory <path>`` (migrates the database first); raises on failure."""
    done = subprocess.run(
        [*LOOPLINE, "import-factory", str(path)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=IMPORT_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise RuntimeError(f"import-factory failed ({done.returncode}): {done.stderr[-2000:]}")


# --- the API as a client sees it -------------------------------------------------------------


@dataclass
class Api:
    """The REST API and the CRM webhook of one ``loopline serve``."""

    url: str
    secret: str
    token: str = API_TOKEN
    _local: threading.local = field(default_factory=threading.local)

    @property
    def client(self) -> httpx.Client:
        """One keep-alive client per thread."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(
                timeout=HTTP_TIMEOUT_S, headers={"Authorization": f"Bearer {self.token}"}
            )
        return client

    def healthy(self) -> bool:
        """``GET /api/v1/healthz`` answers 200."""
        try:
            return self.client.get(f"{self.url}/api/v1/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def get_json(self, path: str, timeout_s: float = HTTP_TIMEOUT_S, **params: Any) -> Any:
        """``GET /api/v1<path>``; None for a 404; raises on other errors."""
        resp = self.client.get(f"{self.url}/api/v1{path}", params=params or None, timeout=timeout_s)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()

    def order(self, order_id: str) -> dict[str, Any] | None:
        """``GET /api/v1/orders/{id}``, None when there is no such order."""
        result: dict[str, Any] | None = self.get_json(f"/orders/{order_id}")
        return result

    def orders(self) -> list[dict[str, Any]]:
        """``GET /api/v1/orders`` (all of them, up to the API's 5,000)."""
        result: list[dict[str, Any]] = self.get_json("/orders", timeout_s=60.0, limit=5000)
        return result

    def post_event(self, body: dict[str, Any], webhook_id: str) -> httpx.Response:
        """One signed ``POST /api/v1/crm/events``, as a CRM sends it."""
        raw = json.dumps(body, separators=(",", ":"))
        headers = signed_headers(self.secret, webhook_id, raw)
        return self.client.post(f"{self.url}{EVENTS_PATH}", content=raw, headers=headers)

    def send_until_accepted(
        self, body: dict[str, Any], webhook_id: str, deadline: float, backoff_s: float = 0.2
    ) -> tuple[int | None, int]:
        """POST until a 2xx, like a real CRM: same ``webhook_id`` every time, backoff between.

        Returns ``(last status or None if never answered, non-2xx answers seen)``; gives up at
        ``deadline`` (``time.monotonic()``).
        """
        refused = 0
        status: int | None = None
        wait = backoff_s
        while True:
            try:
                status = self.post_event(body, webhook_id).status_code
            except httpx.HTTPError:
                status = None
            if status is not None and 200 <= status < 300:
                return status, refused
            refused += 1
            if time.monotonic() + wait > deadline:
                return status, refused
            time.sleep(wait)
            wait = min(wait * 2, 2.0)


def start_serve(procs: Procs, secret: str, timeout_s: float = START_TIMEOUT_S) -> Api:
    """Start ``loopline serve`` on a free port and wait until it answers ``/healthz``."""
    port = free_port()
    procs.start("serve", ["serve", "--host", "127.0.0.1", "--port", str(port)])
    api = Api(f"http://127.0.0.1:{port}", secret)
    up, _ = wait_for(lambda: api.healthy() or not procs.alive("serve"), timeout_s, 0.25)
    if not up or not procs.alive("serve"):
        raise RuntimeError(f"serve did not start:\n{procs.log_tail('serve')}")
    return api


# --- a CRM played locally -------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One signed POST the local CRM received."""

    webhook_id: str
    at: float  # time.time(), wall clock: comparable with the outbox's timestamps
    data: dict[str, Any]
    status: int
    arrived: float = 0.0  # when the request came in (``at`` is when it was answered)


class RecordingCrm:
    """A real HTTP server playing the CRM's webhook endpoint (``LOOPLINE_CRM_URL``).

    It verifies each Standard Webhooks signature, answers ``status`` (401 when the
    signature is bad) after ``delay_s`` (a CRM takes time to answer), and records every
    delivery. ``busy`` counts requests being answered right now.
    """

    def __init__(self, secret: str, *, status: int = 204, delay_s: float = 0.0) -> None:
        self.secret = secret
        self.status = status
        self.delay_s = delay_s
        self.deliveries: list[Delivery] = []
        self.busy = 0
        self.bad_signatures = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/crm/webhooks"

    def start(self) -> RecordingCrm:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> RecordingCrm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        crm = self
        webhook = Webhook(self.secret)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real CRM's server would

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                arrived = time.time()
                with crm._lock:
                    crm.busy += 1
                try:
                    body = self.rfile.read(int(self.headers.get("content-length") or 0))
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    try:
                        webhook.verify(body.decode(), headers, json_parse=False)
                        status = crm.status
                    except (WebhookVerificationError, ValueError, UnicodeDecodeError):
                        status = 401
                    if crm.delay_s:
                        time.sleep(crm.delay_s)
                    try:
                        data = json.loads(body)
                    except ValueError:
                        data = {}
                    with crm._lock:
                        if status == 401:
                            crm.bad_signatures += 1
                        crm.deliveries.append(
                            Delivery(
                                headers.get("webhook-id", ""), time.time(), data, status, arrived
                            )
                        )
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                finally:
                    with crm._lock:
                        crm.busy -= 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


# --- an MQTT line sensor ---------------------------------------------------------------------


class Publisher:
    """A QoS 1 paho publisher that never has more than ``max_in_flight`` messages unacked."""

    def __init__(self, host: str, port: int, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.max_in_flight = max_in_flight
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-sensor-{uuid.uuid4().hex[:8]}"
        )
        self.client.max_inflight_messages_set(max_in_flight)
        self.client.connect(host, port)
        self.client.loop_start()
        self._pending: list[mqtt.MQTTMessageInfo] = []
        self.sent = 0

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Publish one message at QoS 1, first waiting for acks when the window is full."""
        if len(self._pending) >= self.max_in_flight:
            self.flush(keep=self.max_in_flight // 2)
        self._pending.append(self.client.publish(topic, json.dumps(payload), qos=1))
        self.sent += 1

    def flush(self, keep: int = 0, timeout_s: float = PUBLISH_ACK_TIMEOUT_S) -> None:
        """Wait until at most ``keep`` messages are unacknowledged by the broker."""
        deadline = time.monotonic() + timeout_s
        while len(self._pending) > keep:
            info = self._pending[0]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"broker did not ack {len(self._pending)} messages")
            info.wait_for_publish(timeout=left)
            if info.is_published():
                self._pending.pop(0)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.flush(timeout_s=5)
        self.client.loop_stop()
        self.client.disconnect()


# --- the baseline: a trivial signed-webhook receiver --------------------------------------------


def baseline_app() -> Callable[..., Any]:
    """An ASGI app that verifies a Standard Webhooks signature and answers 202 (nothing else).

    Run by uvicorn, like ``loopline serve``: ``uvicorn --factory bench._procs:baseline_app``
    with ``LOOPLINE_CRM_SECRET`` set.
    """
    webhook = Webhook(os.environ["LOOPLINE_CRM_SECRET"])

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            webhook.verify(body.decode(), headers, json_parse=False)
            status, answer = 202, b'{"outcome":"accepted"}'
        except (WebhookVerificationError, ValueError, UnicodeDecodeError):
            status, answer = 401, b'{"detail":"signature"}'
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    return app


def start_baseline(env: dict[str, str], logdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The baseline receiver in its own uvicorn process; its URL once it answers."""
    port = free_port()
    log = (logdir / "baseline.log").open("wb")
    proc = subprocess.Popen(
        [
            *_death_prefix(),
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench._procs:baseline_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--app-dir",
            str(ROOT),
        ],  # fmt: skip
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    url = f"http://127.0.0.1:{port}/hook"

    def up() -> bool:
        try:
            httpx.post(url, content=b"{}", timeout=1)
            return True
        except httpx.HTTPError:
            return proc.poll() is not None

    wait_for(up, 30, 0.1)
    if proc.poll() is not None:
        raise RuntimeError(f"baseline server exited: {(logdir / 'baseline.log').read_text()}")
    return proc, url


@contextlib.contextmanager
def terminated_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so ``finally`` blocks stop what we started."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
