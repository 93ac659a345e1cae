"""Alembic environment: runs migrations on the engine the caller hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

# Tables kept in modules of their own join Base.metadata when imported.
import loopline.models.notify_records  # noqa: F401, E402
from loopline.models import (
    oee_records,  # noqa: F401  (its tables join Base.metadata)
    users,  # noqa: F401  # its tables join Base.metadata
)
from loopline.models.records import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    """Run migrations online against the configured engine."""
    engine = config.attributes.get("engine") or create_engine(
        config.get_main_option("sqlalchemy.url") or ""
    )
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run()
