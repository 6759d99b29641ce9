"""Finding the real PostgreSQL the suite talks to, and making throwaway databases on it."""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
import pytest
from sqlalchemy.engine import make_url

REQUIRE_SERVICES = os.environ.get("PREDICTD_REQUIRE_SERVICES") == "1"
ADMIN_URL = os.environ.get(
    "PREDICTD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


# Every skip for a missing service starts with this, so the run's summary can count them.
SKIP_PREFIX = "service unavailable: "


def unavailable(what: str) -> None:
    """A missing service fails the run in CI and skips locally."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (PREDICTD_REQUIRE_SERVICES=1) but unavailable")
    pytest.skip(f"{SKIP_PREFIX}{what}")


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(ADMIN_URL), timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgres_available() -> bool:
    try:
        asyncio.run(_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    return True


def create_database() -> str:
    """A fresh, empty database; returns its URL."""
    name = f"predictd_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _redis_url() -> str:
    """Database 15 (14 for the second pytest-xdist worker, ...), so workers running in
    parallel never flush each other's keys."""
    url = make_url(os.environ.get("PREDICTD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    database = (int(url.database or 0) - worker) % 16
    return url.set(database=str(database)).render_as_string(hide_password=False)


REDIS_URL = _redis_url()


def redis_available() -> bool:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False
