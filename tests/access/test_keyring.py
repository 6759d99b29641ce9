"""Unknown keys looked up against a real PostgreSQL behind the TCP proxy: a flood of wrong
keys queues for the lookup slots without ever counting as a database failure, so a key made
during or after the flood still works."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy.engine import make_url

from predictd.access.keyring import KeyRing
from predictd.access.keys import KeyService, new_key
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.errors import Overloaded
from predictd.observability import Metrics
from predictd.settings import Settings
from tests.support.proxy import TcpProxy
from tests.support.server import database_name


async def test_a_flood_of_wrong_keys_is_busy_not_a_database_failure(postgres_url: str) -> None:
    url = make_url(postgres_url)
    direct = Database(Settings(database_url=postgres_url))
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        slow = Database(Settings(database_url=proxy.url(database_name(postgres_url))))
        try:
            await migrate.upgrade(direct)
            metrics = Metrics.create()
            ring = KeyRing(KeyService(slow), metrics, lookup_timeout_s=1.0)
            await ring.refresh()  # the table is known: every key below is looked up
            proxy.delay_s = 0.01  # healthy, 10 ms away: 1000 lookups queue for the slots

            flood = await asyncio.gather(
                *(ring.look_up(new_key()) for _ in range(1000)), return_exceptions=True
            )
            outcomes = Counter(type(r).__name__ for r in flood)
            assert set(outcomes) <= {"NoneType", "Overloaded"}, outcomes
            assert outcomes["NoneType"] > 0  # the queue's share was looked up and refused
            assert all(isinstance(r, Overloaded) for r in flood if r is not None)
            failed = metrics.registry.get_sample_value(
                "predictd_key_lookups_total", {"result": "failed"}
            )
            assert not failed  # waiting for a slot never counts as the database failing

            made, _ = await KeyService(direct).create("fresh", ["predict"])
            found = await ring.look_up(made)  # not paused: asked at once
            assert found is not None
            assert found.name == "fresh"
        finally:
            await slow.dispose()
            await direct.dispose()
