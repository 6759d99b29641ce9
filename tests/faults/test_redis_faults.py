"""Fault matrix 6, for the rate limiter: a real Redis of the test's own, hung with SIGSTOP,
resumed, then killed. Requests keep being answered 2xx throughout, the limiter falls back to
its local buckets, and only a handful of requests ever wait for a Redis timeout (the circuit
breaker); once Redis is back (and the breaker has cooled) the buckets are shared again."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import httpx
import redis

from predictd.redis_breaker import BREAKER_S
from tests.support.app import make_settings, running_app, services_of

TIMEOUT_MS = 50


async def burst(client: httpx.AsyncClient, count: int) -> tuple[list[int], list[float]]:
    codes, seconds = [], []
    for _ in range(count):
        started = time.perf_counter()
        response = await client.get("/analytics/summary")
        seconds.append(time.perf_counter() - started)
        codes.append(response.status_code)
    return codes, seconds


async def test_redis_hung_then_dead_never_fails_a_request(
    tmp_path: Path, own_redis: subprocess.Popen[bytes]
) -> None:
    url = f"redis://127.0.0.1:{own_redis.port}/0"  # type: ignore[attr-defined]
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", redis_url=url,
                             rate_limit_per_s=1000, rate_limit_burst=1000,
                             redis_timeout_ms=TIMEOUT_MS)  # fmt: skip
    shared = redis.Redis.from_url(url)
    async with running_app(settings) as (app, client):
        limiter = services_of(app).limiter
        codes, _ = await burst(client, 30)
        assert set(codes) == {200}
        assert limiter.redis_failures == 0
        assert shared.keys("predictd:ratelimit:*")  # the bucket lives in Redis

        own_redis.send_signal(signal.SIGSTOP)  # hung: connections open, nothing answers
        codes, seconds = await burst(client, 60)
        assert set(codes) == {200}
        slow = [s for s in seconds if s > TIMEOUT_MS / 1000 * 0.8]
        assert len(slow) <= 2, f"{len(slow)} requests waited for Redis: {slow}"
        assert limiter.redis_failures == 1  # then the breaker kept Redis out of the way

        own_redis.send_signal(signal.SIGCONT)
        await asyncio.sleep(BREAKER_S + 0.2)
        codes, _ = await burst(client, 20)
        assert set(codes) == {200}
        assert limiter.redis_failures == 1  # back on the shared buckets, no new failure

        own_redis.kill()  # dead: connections refused
        own_redis.wait(10)
        codes, seconds = await burst(client, 40)
        assert set(codes) == {200}
        assert limiter.redis_failures == 2
        assert sum(s > TIMEOUT_MS / 1000 * 0.8 for s in seconds) <= 2
    shared.close()
