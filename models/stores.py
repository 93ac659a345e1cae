"""Which store an exception says is unreachable: the live state (Redis) or the records (SQL)."""

from __future__ import annotations

from typing import Literal

import redis.exceptions
import sqlalchemy.exc

Store = Literal["redis", "database"]

REDIS_DOWN: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # refused, reset, and BusyLoadingError while loading AOF
    redis.exceptions.TimeoutError,
)
DATABASE_DOWN: tuple[type[Exception], ...] = (
    # psycopg's connection failures, server shutdowns and deadlocks all arrive as these:
    # each is over once the server answers again, so each is worth a retry.
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # the pool had no connection to give
)
STORE_DOWN = REDIS_DOWN + DATABASE_DOWN


def store_down(exc: BaseException) -> Store | None:
    """``"redis"`` or ``"database"`` when ``exc`` means that store cannot be reached now."""
    if isinstance(exc, REDIS_DOWN):
        return "redis"
    if isinstance(exc, DATABASE_DOWN):
        return "database"
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return "database"
    return None
