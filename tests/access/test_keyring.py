"""Unknown keys looked up against a real PostgreSQL behind the TCP proxy: a flood of wrong
keys queues for the lookup slots without ever counting as a database failure, so a key made
during or after the flood still works."""

from __future__ import annotations

import asyncio
from collections import Counter

from predictd.access.keyring import KeyRing
from predictd.access.keys import KeyService, new_key
from predictd.errors import Overloaded
from predictd.observability import Metrics
from tests.access.conftest import SlowLink


async def test_a_flood_of_wrong_keys_is_busy_not_a_database_failure(slow_link: SlowLink) -> None:
    metrics = Metrics.create()
    ring = KeyRing(KeyService(slow_link.slow), metrics, lookup_timeout_s=1.0)
    await ring.refresh()  # the table is known: every key below is looked up
    slow_link.proxy.delay_s = 0.01  # healthy, 10 ms away: 1000 lookups queue for the slots

    flood = await asyncio.gather(
        *(ring.look_up(new_key()) for _ in range(1000)), return_exceptions=True
    )
    outcomes = Counter(type(r).__name__ for r in flood)
    assert set(outcomes) <= {"NoneType", "Overloaded"}, outcomes
    assert outcomes["NoneType"] > 0  # the queue's share was looked up and refused
    assert all(isinstance(r, Overloaded) for r in flood if r is not None)
    failed = metrics.registry.get_sample_value("predictd_key_lookups_total", {"result": "failed"})
    assert not failed  # waiting for a slot never counts as the database failing

    made, _ = await KeyService(slow_link.direct).create("fresh", ["predict"])
    found = await ring.look_up(made)  # not paused: asked at once
    assert found is not None
    assert found.name == "fresh"
