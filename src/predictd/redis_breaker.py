"""Redis as a helper, never a dependency: every call gives up after ``redis_timeout_ms``, and
after a failure Redis is left alone for ``BREAKER_S`` (a circuit breaker), so an outage costs
a handful of requests one short timeout each. Callers fall back to something local."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger("predictd.redis")

BREAKER_S = 5.0
T = TypeVar("T")


class RedisSkipped(Exception):
    """Redis failed just now, or recently enough that it is not being asked."""


class RedisBreaker:
    def __init__(self, redis: Any | None, timeout_s: float, purpose: str) -> None:
        self.redis = redis
        self.timeout_s = timeout_s
        self.purpose = purpose
        self.failures = 0
        self._skip_until = 0.0

    @property
    def configured(self) -> bool:
        return self.redis is not None

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``'s result, or RedisSkipped when Redis is away, slow or refusing."""
        if self.redis is None or time.monotonic() < self._skip_until:
            raise RedisSkipped
        try:
            async with asyncio.timeout(self.timeout_s):
                return await call()
        except Exception as exc:
            self.failures += 1
            self._skip_until = time.monotonic() + BREAKER_S
            log.warning(f"{self.purpose}: Redis unavailable, falling back to this process",
                        extra={"error": repr(exc), "retry_in_s": BREAKER_S})  # fmt: skip
            raise RedisSkipped from exc
