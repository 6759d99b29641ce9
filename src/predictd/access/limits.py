"""Per-key rate limits: a token bucket per API key (or client address), kept in Redis when
there is one so every replica draws from the same bucket, and in this process otherwise.

Redis is a helper, never a dependency (``RedisBreaker``): when it fails or is slow, the
local bucket decides.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any

from predictd.errors import TooManyRequests
from predictd.redis_breaker import RedisBreaker, RedisSkipped
from predictd.settings import Settings

LOCAL_KEYS = 10_000  # buckets kept per process (least recently used go first)

# KEYS[1] = the bucket; ARGV = rate per second, burst. Returns 0 when admitted, else the
# milliseconds until a token is there. Redis's own clock, so replicas agree on time.
_TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(state[1]), tonumber(state[2])
if tokens == nil then tokens, ts = burst, now end
tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) * 1000 / rate) end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""


class LocalBuckets:
    """Token buckets in this process."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """0 when admitted, else the seconds until a token is there."""
        tokens, then = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > LOCAL_KEYS:
            self._buckets.popitem(last=False)
        return wait


class RateLimiter:
    def __init__(self, settings: Settings, redis: Any | None = None) -> None:
        self.rate = settings.rate_limit_per_s
        self.burst = settings.rate_limit_burst or max(1, math.ceil(2 * self.rate))
        self.local = LocalBuckets(self.rate, self.burst)
        self.breaker = RedisBreaker(redis, settings.redis_timeout_ms / 1000, "rate limit")
        self._script: Any = redis.register_script(_TAKE) if redis is not None else None

    @property
    def redis_failures(self) -> int:
        return self.breaker.failures

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    async def admit(self, key: str) -> None:
        """Take a token for ``key`` or raise 429 with the seconds to wait."""
        if not self.enabled:
            return
        now = time.monotonic()
        wait = await self._shared(key, now)
        if wait is None:
            wait = self.local.take(key, now)
        if wait > 0:
            raise TooManyRequests(
                f"rate limit of {self.rate:g} requests/s for {key} reached; retry later",
                retry_after_s=max(1, math.ceil(wait)),
            )

    async def _shared(self, key: str, now: float) -> float | None:
        if self._script is None:
            return None
        bucket = f"predictd:ratelimit:{key}"
        try:
            waited = await self.breaker.run(
                lambda: self._script(keys=[bucket], args=[self.rate, self.burst])
            )
        except RedisSkipped:  # down, slow or refusing: this process decides alone
            return None
        return int(waited) / 1000
