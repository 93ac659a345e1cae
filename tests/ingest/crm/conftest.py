"""Fixtures for the CRM way in: a migrated SQLite database with the small factory, a secret."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from loopline.models.db import make_engine, make_sessions, migrate, transaction
from loopline.settings import new_webhook_secret
from tests.factories import seed_small_factory


@pytest.fixture
def secret() -> str:
    return new_webhook_secret()


@pytest.fixture
def sessions(tmp_path) -> Iterator[sessionmaker[Session]]:
    """SQLite in a temp dir, migrated, with products P1 and P2."""
    engine = make_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    migrate(engine)
    factory = make_sessions(engine)
    with transaction(factory) as session:
        seed_small_factory(session)
    yield factory
    engine.dispose()
