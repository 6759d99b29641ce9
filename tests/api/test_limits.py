"""Rate limits (token bucket per key, shared through the real Redis, local when Redis is away)
answer 429 with Retry-After; the concurrency cap answers 503 with Retry-After, never 500, and
leaves the probes alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from starlette.types import Receive, Scope, Send

from predictd.access.keys import KeyService
from predictd.api.dispatch import Dispatcher
from predictd.api.endpoints import FastTable
from predictd.api.middleware import ServingMiddleware
from predictd.db.engine import Database
from predictd.observability import Metrics
from tests.support.app import make_settings, running_app, services_of

SUMMARY = "/analytics/summary"


async def test_each_client_gets_its_own_bucket(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}",
                             rate_limit_per_s=2, rate_limit_burst=3)  # fmt: skip
    async with running_app(settings) as (_, client):
        codes = [(await client.get(SUMMARY)).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        limited = await client.get(SUMMARY)
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        assert (await client.get("/health")).status_code == 200  # probes are not limited
        await asyncio.sleep(0.6)  # 2 tokens a second: one is back
        assert (await client.get(SUMMARY)).status_code == 200


async def test_replicas_share_a_bucket_through_redis(
    tmp_path: Path, db_url: str, redis_url: str
) -> None:
    common = {"auth": "on", "rate_limit_per_s": 1, "rate_limit_burst": 4, "redis_url": redis_url}
    first = make_settings(tmp_path / "a", db_url, **common)
    second = make_settings(tmp_path / "b", db_url, **common)
    db = Database(first.database)
    try:
        async with running_app(first) as (app_a, a), running_app(second) as (app_b, b):
            key, _ = await KeyService(db).create("shared", ["read"])
            other, _ = await KeyService(db).create("other", ["read"])
            for app in (app_a, app_b):
                await services_of(app).keys.refresh()
            auth = {"authorization": f"Bearer {key}"}
            codes = [(await c.get(SUMMARY, headers=auth)).status_code for c in (a, b, a, b, a, b)]
            assert codes == [200, 200, 200, 200, 429, 429]  # 4 between them, not 4 each
            elsewhere = await b.get(SUMMARY, headers={"authorization": f"Bearer {other}"})
            assert elsewhere.status_code == 200  # another key, another bucket
    finally:
        await db.dispose()


async def test_redis_away_falls_back_to_local_buckets(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", rate_limit_per_s=1,
                             rate_limit_burst=2, redis_url="redis://127.0.0.1:9/0")  # fmt: skip
    async with running_app(settings) as (app, client):
        codes = [(await client.get(SUMMARY)).status_code for _ in range(4)]
        assert codes == [200, 200, 429, 429]
        # The breaker: one request paid for finding Redis away, the rest did not ask.
        assert services_of(app).limiter.redis_failures == 1


async def test_the_concurrency_cap_answers_503_not_500() -> None:
    release = asyncio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    metrics = Metrics.create()
    app = Dispatcher(slow, table=FastTable([]), metrics=metrics, max_concurrency=2)
    served = ServingMiddleware(app, metrics=metrics, max_body_bytes=1024)
    transport = httpx.ASGITransport(app=served)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        busy = [asyncio.create_task(client.get("/predict")) for _ in range(2)]
        await asyncio.sleep(0.05)
        refused = await client.get("/analytics/summary")
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "overloaded"
        assert refused.headers["retry-after"] == "1"
        probe = asyncio.create_task(client.get("/health"))  # uncapped: waits like any request
        await asyncio.sleep(0.05)
        release.set()
        assert [r.status_code for r in await asyncio.gather(*busy, probe)] == [200, 200, 200]
        assert app.in_flight == 0
        assert (await client.get("/predict")).status_code == 200
