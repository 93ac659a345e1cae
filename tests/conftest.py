"""Session-wide fixtures: real Redis, Mosquitto and PostgreSQL on free ports, artifacts.

Servers start lazily, the first time a test asks for one, and stop at the end of the
session. Their logs are copied to the artifacts dir (``LOOPLINE_TEST_ARTIFACTS``, default
``test-artifacts/`` at the repo root) when the session ends.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from hypothesis import settings
from sqlalchemy.orm import Session, sessionmaker

from loopline.models.db import make_engine, make_sessions, migrate, transaction
from loopline.models.live import LiveState
from tests.factories import seed_small_factory
from tests.servers import (
    MosquittoServer,
    PostgresServer,
    RedisServer,
    Server,
    ensure_installed,
    unique_db_name,
)

# CI replays the same examples every run (a red CI must mean a real change); locally every
# run explores new ones. `.ci/run` sets HYPOTHESIS_PROFILE=ci.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

S = TypeVar("S", bound=Server)

REPO_ROOT = Path(__file__).resolve().parent.parent


def _artifacts_root() -> Path:
    configured = os.environ.get("LOOPLINE_TEST_ARTIFACTS")
    return Path(configured).resolve() if configured else REPO_ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests put files worth keeping after a run (screenshots, server logs)."""
    root = _artifacts_root()
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _running(server: S, artifacts_dir: Path) -> Iterator[S]:
    """Start a server for the session; stop it and keep its log as an artifact."""
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.save_log(artifacts_dir / "servers")
        server.close()


@pytest.fixture(scope="session")
def redis_server(artifacts_dir: Path) -> Iterator[str]:
    """A real redis-server keeping nothing on disk; yields ``redis://127.0.0.1:PORT/0``."""
    with _running(RedisServer(), artifacts_dir) as server:
        yield server.url


@pytest.fixture(scope="session")
def mqtt_broker(artifacts_dir: Path) -> Iterator[MosquittoServer]:
    """A real Mosquitto (anonymous, no persistence, deep queues); has host, port, url."""
    with _running(MosquittoServer(), artifacts_dir) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_cluster(artifacts_dir: Path) -> Iterator[PostgresServer]:
    """The session's PostgreSQL server object (``url``, ``create_database``, ``restart``)."""
    with _running(PostgresServer(), artifacts_dir) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server(postgres_cluster: PostgresServer) -> str:
    """A real PostgreSQL; yields ``postgresql+psycopg://postgres@127.0.0.1:PORT/postgres``."""
    return postgres_cluster.url


@pytest.fixture
def postgres_url(postgres_cluster: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for this test (dropped afterwards); yields its URL."""
    name = postgres_cluster.create_database(unique_db_name(request.node.name))
    try:
        yield postgres_cluster.url_for(name)
    finally:
        if postgres_cluster.running:
            postgres_cluster.drop_database(name)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """The path of Debian's Chromium (installed with apt-get when missing)."""
    return ensure_installed("chromium", "chromium")


# -- the core: a migrated database (SQLite or PostgreSQL) and a real Redis ----------------


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def any_db_url(request, tmp_path) -> str:
    """Each records test runs on both SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("postgres_url")


def _seeded_sessions(url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(url)
    migrate(engine)
    factory = make_sessions(engine)
    with transaction(factory) as session:
        seed_small_factory(session)
    yield factory
    engine.dispose()


@pytest.fixture
def sessions(sqlite_url) -> Iterator[sessionmaker[Session]]:
    """A migrated, seeded SQLite database."""
    yield from _seeded_sessions(sqlite_url)


@pytest.fixture
def any_sessions(any_db_url) -> Iterator[sessionmaker[Session]]:
    """The same, once on SQLite and once on PostgreSQL (override ``sessions`` with it)."""
    yield from _seeded_sessions(any_db_url)


@pytest.fixture
def live(redis_server) -> Iterator[LiveState]:
    client = redis.Redis.from_url(redis_server, decode_responses=True)
    client.flushdb()
    yield LiveState(client)
    client.flushdb()
    client.close()
