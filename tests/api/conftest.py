"""An API stack on real PostgreSQL and Redis (no MQTT), one per module."""

from __future__ import annotations

import pytest

from tests.stack import start_stack


@pytest.fixture(scope="module")
def api_stack(postgres_server, postgres_cluster, redis_server):
    name = postgres_cluster.create_database()
    stack = start_stack(
        database_url=postgres_cluster.url_for(name),
        redis_url=redis_server,
        mqtt_url=None,
        crm_url=None,
        max_body_bytes=4096,
    )
    yield stack
    stack.stop()
