"""The refusal budget per client address, shared by replicas through Redis: each refusal
takes a token, a token taken for a key that turned out valid is given back, and an address
out of tokens gets 429 everywhere. A client is its IPv4 address or its IPv6 /64."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from predictd.access.limits import RefusalBudget, client_key
from predictd.errors import TooManyRequests
from predictd.settings import Settings


async def test_replicas_share_the_refusal_budget(redis_url: str) -> None:
    settings = Settings(refusal_burst=3, refusal_rate_per_s=0.001)
    first_redis, second_redis = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        first = RefusalBudget(
            settings.access, first_redis, redis_timeout_s=settings.cache.redis_timeout_s
        )
        second = RefusalBudget(
            settings.access, second_redis, redis_timeout_s=settings.cache.redis_timeout_s
        )
        for _ in range(10):  # taken before a lookup, given back: a valid key costs nothing
            await first.spend("10.0.0.1")
            await second.refund("10.0.0.1")
        await first.spend("10.0.0.1")
        await second.spend("10.0.0.1")
        await first.spend("10.0.0.1")
        with pytest.raises(TooManyRequests) as refused:
            await second.spend("10.0.0.1")
        assert refused.value.retry_after_s is not None
        assert refused.value.retry_after_s >= 1
        await first.refund("10.0.0.1")  # a refund fills an empty bucket again
        await second.spend("10.0.0.1")
        with pytest.raises(TooManyRequests):
            await first.spend("10.0.0.1")
        await second.spend("10.0.0.2")  # another address has its own budget
        assert first.buckets.breaker.failures == second.buckets.breaker.failures == 0
    finally:
        await first_redis.aclose()
        await second_redis.aclose()


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("::ffff:a00:1", "10.0.0.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::ffff", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("testclient", "testclient"),
        (None, "unknown"),
    ],
)
def test_a_client_is_its_ipv4_address_or_its_ipv6_64(host: str | None, key: str) -> None:
    assert client_key(host) == key
