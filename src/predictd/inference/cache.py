"""The prediction cache: the same input to the same model version gets the stored answer
instead of a model call. A cached answer is still a prediction — the caller gives it its own
id and record (``cache_hit``) — so analytics count it like any other.

The key is the model name, version and artifact sha256 plus a hash of the canonical input
(keys sorted, so feature order does not matter): a new version can never answer with an old
version's output. With ``REDIS_URL`` (``PREDICTD_CACHE=redis``) replicas share entries for
``PREDICTD_CACHE_TTL_S``; when Redis is away or slow the process's own LRU serves and the
miss is counted. ``local`` is that LRU alone (``PREDICTD_CACHE_MAX_ITEMS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import OrderedDict
from typing import Any

import orjson
from prometheus_client import Counter

from predictd.inference.runtime import ModelInput, ModelMeta, Prediction
from predictd.redis_breaker import RedisBreaker, RedisSkipped

PENDING_WRITES = 256  # Redis writes in flight at once; beyond it a write is skipped


def cache_key(meta: ModelMeta, value: ModelInput) -> str:
    data = {"text": value} if isinstance(value, str) else {"features": dict(value)}
    digest = hashlib.blake2b(orjson.dumps(data, option=orjson.OPT_SORT_KEYS), digest_size=16)
    return f"predictd:cache:{meta.name}:{meta.version}:{meta.sha256[:16]}:{digest.hexdigest()}"


def _encode(prediction: Prediction) -> bytes:
    return orjson.dumps([prediction.label, prediction.confidence, prediction.probabilities])


def _decode(data: bytes) -> Prediction:
    label, confidence, probabilities = orjson.loads(data)
    return Prediction(label, confidence, probabilities)


class LocalCache:
    """An LRU of encoded answers with a time to live, in this process."""

    def __init__(self, max_items: int, ttl_s: float) -> None:
        self.max_items = max_items
        self.ttl_s = ttl_s
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, data = entry
        if expires < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return data

    def put(self, key: str, data: bytes) -> None:
        self._entries[key] = (time.monotonic() + self.ttl_s, data)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_items:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class PredictionCache:
    def __init__(
        self,
        local: LocalCache,
        redis: Any | None,
        *,
        timeout_s: float,
        ttl_s: float,
        lookups: Counter,
    ) -> None:
        self.local = local
        self.lookups = lookups  # by model, source (redis | local) and result (hit | miss)
        self.ttl_s = ttl_s
        self.breaker = RedisBreaker(redis, timeout_s, "prediction cache")
        self._writes: set[asyncio.Task[None]] = set()

    @property
    def shared(self) -> bool:
        return self.breaker.configured

    async def get_many(self, keys: list[str], model: str) -> list[Prediction | None]:
        """One round trip (MGET) for a whole batch; Redis away or slow: the local LRU."""
        raw: list[bytes | None]
        source = "local"
        if self.breaker.configured:
            redis: Any = self.breaker.redis
            try:
                raw = await self.breaker.run(lambda: redis.mget(keys))
                source = "redis"
            except RedisSkipped:
                raw = [self.local.get(key) for key in keys]
        else:
            raw = [self.local.get(key) for key in keys]
        hits = sum(1 for data in raw if data is not None)
        if hits:
            self.lookups.labels(model, source, "hit").inc(hits)
        if hits < len(keys):
            self.lookups.labels(model, source, "miss").inc(len(keys) - hits)
        return [_decode(data) if data is not None else None for data in raw]

    def put(self, key: str, prediction: Prediction) -> None:
        """Store without making the caller wait (Redis writes run in the background)."""
        data = _encode(prediction)
        self.local.put(key, data)  # also the fallback while Redis is away
        if not self.breaker.configured or len(self._writes) >= PENDING_WRITES:
            return
        task = asyncio.create_task(self._write(key, data))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, key: str, data: bytes) -> None:
        redis: Any = self.breaker.redis
        ttl_ms = max(1, int(self.ttl_s * 1000))
        with contextlib.suppress(RedisSkipped):  # the local LRU has it meanwhile
            await self.breaker.run(lambda: redis.set(key, data, px=ttl_ms))

    async def close(self) -> None:
        for task in list(self._writes):
            task.cancel()
        await asyncio.gather(*self._writes, return_exceptions=True)
