"""Fixtures for the core: a migrated database (SQLite or PostgreSQL) and a real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from models.db import make_engine, make_sessions, migrate, transaction
from models.live import LiveState
from tests.factories import seed_small_factory


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def any_db_url(request, tmp_path) -> str:
    """Each records test runs on both SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def sessions(sqlite_url) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(sqlite_url)
    migrate(engine)
    factory = make_sessions(engine)
    with transaction(factory) as session:
        seed_small_factory(session)
    yield factory
    engine.dispose()


@pytest.fixture
def live(redis_server) -> Iterator[LiveState]:
    client = redis.Redis.from_url(redis_server, decode_responses=True)
    client.flushdb()
    yield LiveState(client)
    client.flushdb()
    client.close()
