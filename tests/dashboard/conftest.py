"""Fixtures for the screens: a headless Chromium, and a live server on the in-process store.

Dash keeps its page registry in module globals, so one Dash app serves the whole session
over one seeded live state; each test changes different entities, so order does not matter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import uvicorn
from fastapi import FastAPI

from loopline.models.live import LiveState
from loopline.models.live_store import open_live_store
from tests.dashboard.seed import seed
from tests.servers import free_port

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SERVER_START_TIMEOUT_S = 15


@dataclass
class LiveServer:
    """A running server: where it listens and the live state behind it."""

    url: str
    live: LiveState
    now: datetime


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    """Loopline's screens on a FastAPI app in a background thread, over seeded live state."""
    from loopline.dashboard import create_dash

    store = open_live_store(None)
    live = LiveState(store.sync)
    now = datetime.now(UTC)
    seed(live, now)
    app = FastAPI()
    create_dash(app, live=live, new_async_redis=store.new_async, default_lang="en")
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dash-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the dashboard test server did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", live=live, now=now)
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def browser(chromium_executable: str) -> Iterator[object]:
    """A headless Chromium (Playwright) for the whole session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    """A fresh 1920x1080 tab; console errors are kept on ``page.console_errors``."""
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    tab = context.new_page()
    tab.console_errors = []
    tab.on("console", lambda m: tab.console_errors.append(m.text) if m.type == "error" else None)
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture
def plan_stack(postgres_url, redis_server):
    """A whole stack for the plan and approvals screens (tests/api/test_changes' scenario)."""
    from loopline.models.db import transaction
    from loopline.models.records import BomLine, Material
    from tests.dashboard.test_screens_browser import PLAN_MANAGER, PLAN_ORIGIN
    from tests.stack import start_stack

    s = start_stack(
        database_url=postgres_url,
        redis_url=redis_server,
        mqtt_url=None,
        crm_url=None,
        origin=PLAN_ORIGIN,
        manager_token=PLAN_MANAGER,
        # The scenario needs a promise with no slack, so that a change breaks it.
        promise_policy="earliest",
    )
    with transaction(s.runtime.sessions) as session:
        # Two of M1 in each P1 and ten in stock: an order for 100 P1 is short of it.
        session.add(Material(id="M1", name="Steel bar", unit="kg", on_hand=10, lead_time_days=4))
        session.flush()
        session.add(BomLine(sku="P1", material_id="M1", qty_per_unit=2.0))
    yield s
    s.stop()
