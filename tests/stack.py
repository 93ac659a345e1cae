"""A whole Loopline stack in the test process, on the real servers the fixtures started."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import uvicorn
from standardwebhooks import Webhook

from loopline.models.clock import Clock
from loopline.models.db import transaction
from loopline.models.loop import Loop
from loopline.runtime import Runtime, build_app, build_consumer, build_loop, build_runtime
from loopline.settings import Settings, new_webhook_secret
from tests.factories import seed_small_factory

API_TOKEN = "test-admin-token"
DISPLAY_TOKEN = "test-display-token"


def run_async(coro: Any) -> Any:
    """Run a coroutine to completion in a thread of its own (the browser tests' Playwright
    keeps an event loop running in the main thread)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, step: float = 0.02) -> Any:
    """Poll until ``predicate`` returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


@dataclass
class Stack:
    runtime: Runtime
    url: str
    loop: Loop
    secret: str
    stop: Callable[[], None]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_TOKEN}"}

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=self.auth, timeout=10, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", headers=self.auth, timeout=10, **kw)

    def send_crm(
        self,
        body: dict[str, Any],
        webhook_id: str,
        source: str | None = None,
        secret: str | None = None,
        timestamp: float | None = None,
    ) -> httpx.Response:
        """POST a Standard-Webhooks-signed CRM event like a CRM would."""
        raw = json.dumps(body)
        return post_signed(
            f"{self.url}/api/v1/crm/{source + '/' if source else ''}events",
            raw,
            webhook_id,
            secret or self.secret,
            timestamp,
        )


def post_signed(
    url: str, raw: str, webhook_id: str, secret: str, timestamp: float | None = None
) -> httpx.Response:
    from datetime import UTC, datetime

    ts = datetime.fromtimestamp(timestamp if timestamp is not None else time.time(), tz=UTC)
    signature = Webhook(secret).sign(webhook_id, ts, raw)
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(ts.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
    return httpx.post(url, content=raw, headers=headers, timeout=10)


def start_stack(
    *,
    database_url: str,
    redis_url: str,
    mqtt_url: str | None,
    crm_url: str | None,
    secret: str | None = None,
    speed: float = 1.0,
    origin: datetime | None = None,
    **overrides: Any,
) -> Stack:
    """serve + ingest + worker of one process, against real PostgreSQL, Redis and MQTT."""
    secret = secret or new_webhook_secret()
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        mqtt_url=mqtt_url,
        crm_url=crm_url,
        crm_secret=secret,
        api_token=API_TOKEN,
        display_token=DISPLAY_TOKEN,
        **{
            "replan_debounce_ms": 50,
            # Persistent MQTT sessions outlive a test: each stack gets its own.
            "mqtt_client_id": f"loopline-test-{uuid.uuid4().hex[:8]}",
            "outbox_backoff_base_s": 0.05,
            "outbox_backoff_max_s": 0.2,
            **overrides,
        },
    )
    rt = build_runtime(settings, demo=False, clock=Clock(speed=speed, origin=origin))
    rt.live.redis.flushdb()
    with transaction(rt.sessions) as session:
        seed_small_factory(session)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(rt), host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _up(url), timeout=20)
    loop = build_loop(rt)
    loop.replan_now("test start")
    loop.start()
    consumer = build_consumer(rt, mqtt_url) if mqtt_url else None
    if consumer:
        consumer.start()
        wait_until(lambda: consumer.connected, timeout=10)

    def stop() -> None:
        if consumer:
            consumer.stop()
        loop.stop()
        server.should_exit = True
        thread.join(10)
        rt.close()

    return Stack(rt, url, loop, secret, stop)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v1/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
