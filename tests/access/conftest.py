"""A migrated PostgreSQL database reached two ways: directly, and through the TCP proxy whose
``delay_s`` makes every round trip slow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy.engine import make_url

from predictd.db import migrate
from predictd.db.engine import Database
from predictd.settings import Settings
from tests.support.proxy import TcpProxy
from tests.support.server import database_name


@dataclass(frozen=True)
class SlowLink:
    direct: Database
    slow: Database  # through ``proxy``
    proxy: TcpProxy


@pytest.fixture
async def slow_link(postgres_url: str) -> AsyncIterator[SlowLink]:
    url = make_url(postgres_url)
    direct = Database(Settings(database_url=postgres_url).database)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        slow = Database(Settings(database_url=proxy.url(database_name(postgres_url))).database)
        try:
            await migrate.upgrade(direct)
            yield SlowLink(direct, slow, proxy)
        finally:
            await slow.dispose()
            await direct.dispose()
