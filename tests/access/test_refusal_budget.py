"""The refusal budget per client address, shared by replicas through Redis: looking takes
nothing, each refusal takes a token, and an address out of tokens gets 429 everywhere."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from predictd.access.limits import RefusalBudget
from predictd.errors import TooManyRequests
from predictd.settings import Settings


async def test_replicas_share_the_refusal_budget(redis_url: str) -> None:
    settings = Settings(refusal_burst=3, refusal_rate_per_s=0.001)
    first_redis, second_redis = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        first = RefusalBudget(settings, first_redis)
        second = RefusalBudget(settings, second_redis)
        for _ in range(10):
            await first.check("10.0.0.1")  # looking costs nothing
        await first.spend("10.0.0.1")
        await second.spend("10.0.0.1")
        await first.spend("10.0.0.1")
        with pytest.raises(TooManyRequests) as refused:
            await second.check("10.0.0.1")
        assert refused.value.retry_after_s is not None
        assert refused.value.retry_after_s >= 1
        with pytest.raises(TooManyRequests):
            await first.spend("10.0.0.1")
        await second.check("10.0.0.2")  # another address has its own budget
        assert first.buckets.breaker.failures == second.buckets.breaker.failures == 0
    finally:
        await first_redis.aclose()
        await second_redis.aclose()
