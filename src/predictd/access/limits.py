"""Rate limits as token buckets, kept in Redis when there is one so every replica draws from
the same bucket, and in this process otherwise: one bucket per API key (or client address)
for requests (``RateLimiter``), and one per client address for refused requests
(``RefusalBudget``), so a client cycling through wrong keys is stopped before its keys cost
database lookups and audit rows. A client is known by ``client_key``: its IPv4 address, or
the /64 of its IPv6 address.

Redis is a helper, never a dependency (``RedisBreaker``): when it fails or is slow, the
local bucket decides.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from typing import Any

from predictd.errors import TooManyRequests
from predictd.redis_breaker import RedisBreaker, RedisSkipped
from predictd.settings import AccessSettings

LOCAL_KEYS = 10_000  # buckets kept per process (least recently used go first)

# KEYS[1] = the bucket; ARGV = rate per second, burst, tokens to take (negative: give back, up
# to the burst). Returns 0 when a token is there (and taken), else the milliseconds until one
# is. Redis's own clock, so replicas agree on time.
_TAKE = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(state[1]), tonumber(state[2])
if tokens == nil then tokens, ts = burst, now end
tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
local wait = 0
if cost < 0 then tokens = math.min(burst, tokens - cost)
elseif tokens >= 1 then tokens = tokens - cost else wait = math.ceil((1 - tokens) * 1000 / rate) end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""


class LocalBuckets:
    """Token buckets in this process."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float, cost: int = 1) -> float:
        """0 when a token is there (and ``cost`` tokens are taken; a negative cost gives them
        back), else the seconds until one is."""
        tokens, then = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        wait = 0.0
        if cost < 0:
            tokens = min(self.burst, tokens - cost)
        elif tokens >= 1:
            tokens -= cost
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > LOCAL_KEYS:
            self._buckets.popitem(last=False)
        return wait


class TokenBuckets:
    """Buckets of one rate and burst, shared through Redis when it answers."""

    def __init__(
        self, rate: float, burst: int, redis: Any | None, timeout_s: float, purpose: str
    ) -> None:
        self.rate, self.burst, self.purpose = rate, burst, purpose
        self.local = LocalBuckets(rate, burst)
        self.breaker = RedisBreaker(redis, timeout_s, purpose)
        self._script: Any = redis.register_script(_TAKE) if redis is not None else None

    async def take(self, key: str, cost: int = 1) -> float:
        """0 when ``key`` has a token (``cost`` of them are taken), else the seconds to wait."""
        now = time.monotonic()
        wait = await self._shared(key, cost)
        return self.local.take(key, now, cost) if wait is None else wait

    async def _shared(self, key: str, cost: int) -> float | None:
        if self._script is None:
            return None
        bucket = f"predictd:ratelimit:{key}"
        try:
            waited = await self.breaker.run(
                lambda: self._script(keys=[bucket], args=[self.rate, self.burst, cost])
            )
        except RedisSkipped:  # down, slow or refusing: this process decides alone
            return None
        return int(waited) / 1000


class RateLimiter:
    """Requests per key (or address), and the refusals per address (``refusals``)."""

    def __init__(
        self, settings: AccessSettings, redis: Any | None = None, *, redis_timeout_s: float
    ) -> None:
        self.rate = settings.rate_limit_per_s
        self.burst = settings.rate_limit_burst or max(1, math.ceil(2 * self.rate))
        self.buckets = TokenBuckets(self.rate, self.burst, redis, redis_timeout_s, "rate limit")
        self.refusals = RefusalBudget(settings, redis, redis_timeout_s=redis_timeout_s)

    @property
    def redis_failures(self) -> int:
        return self.buckets.breaker.failures

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    async def admit(self, key: str) -> None:
        """Take a token for ``key`` or raise 429 with the seconds to wait."""
        if not self.enabled:
            return
        wait = await self.buckets.take(key)
        if wait > 0:
            raise TooManyRequests(
                f"rate limit of {self.rate:g} requests/s for {key} reached; retry later",
                retry_after_s=max(1, math.ceil(wait)),
            )


class RefusalBudget:
    """Refused requests (401/403) each client address may cause. A key this server does not
    know takes a token before it is looked up (``spend``), given back when it turns out valid
    (``refund``): concurrent requests cannot all pass a budget that is only looked at, and a
    lookup the database cannot answer (503) is not free. An address without a token gets 429
    instead of a lookup. A request with a key this server already knows never asks (a client
    behind the same address as an attacker keeps working)."""

    def __init__(
        self, settings: AccessSettings, redis: Any | None = None, *, redis_timeout_s: float
    ) -> None:
        self.rate = settings.refusal_rate_per_s
        self.burst = settings.refusal_burst
        self.buckets = TokenBuckets(self.rate, self.burst, redis, redis_timeout_s, "refusal limit")

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    async def spend(self, address: str) -> None:
        """One refusal for ``address``; raise 429 when it had none left."""
        if not self.enabled:
            return
        wait = await self.buckets.take(f"refused:{address}")
        if wait > 0:
            raise TooManyRequests(
                f"too many refused requests from {address}; retry later",
                retry_after_s=max(1, math.ceil(wait)),
            )

    async def refund(self, address: str) -> None:
        """Give back a token ``spend`` took for a request that was not refused after all."""
        if self.enabled:
            await self.buckets.take(f"refused:{address}", -1)


def client_key(host: str | None) -> str:
    """What a client is known by, for its limits and its refusals in the audit log: an IPv4
    address as it is, an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) as its IPv4 form, any
    other IPv6 address as its /64 — what one site is usually given, so a client rotating
    through its /64 stays one client. Anything else (a test client's name) is kept, cut short."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
