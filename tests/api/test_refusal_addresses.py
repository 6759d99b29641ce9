"""Refusals are limited and audited per client, not per address string: an IPv6 client
rotating through its /64 shares one budget and one audit row a minute, and an IPv4 client
is one client whether it arrives as a.b.c.d or ::ffff:a.b.c.d."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI

from tests.api.test_key_lookup import refused_rows
from tests.conftest import Artifacts
from tests.support.app import make_settings, register_demo, running_app

TEXT = {"text": "I love it"}


async def status_from(app: FastAPI, host: str) -> int:
    """One request without a key, from ``host``."""
    transport = httpx.ASGITransport(app=app, client=(host, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return (await client.post("/predict", json=TEXT)).status_code


async def test_one_client_one_budget_whatever_address_it_uses(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, db_url, auth="on", refusal_burst=3,
                             refusal_rate_per_s=0.001)  # fmt: skip
    await register_demo(settings, artifacts.sentiment)
    async with running_app(settings) as (app, _):
        rotating = [f"2001:db8:0:1::{n:x}" for n in range(1, 6)]  # one /64
        assert [await status_from(app, h) for h in rotating] == [401] * 3 + [429] * 2
        assert await status_from(app, "2001:db8:0:2::1") == 401  # the next /64 is another

        mapped = ["::ffff:192.0.2.7", "192.0.2.7", "::ffff:192.0.2.7", "192.0.2.7"]
        assert [await status_from(app, h) for h in mapped] == [401] * 3 + [429]
    rows = await refused_rows(settings)
    times: dict[str, int] = {}
    for row in rows:
        times[row["client"]] = times.get(row["client"], 0) + row["times"]
    assert times == {"2001:db8:0:1::/64": 5, "2001:db8:0:2::/64": 1, "192.0.2.7": 4}
    assert len(rows) <= 6  # one row per client and minute (two across a minute's end)
