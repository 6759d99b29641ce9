"""The composition root: every long-lived service predictd runs with, wired in one place.

The app's lifespan and the CLI both call ``build_services``, so a command works on the same
objects, built the same way, as the server does. Each service is given only the settings
group it works with; ``Services.settings`` keeps the whole for the HTTP layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from predictd.access import audit, snapshot
from predictd.access.keyring import KeyRing
from predictd.access.keys import KeyService
from predictd.access.limits import RateLimiter
from predictd.agent.executor import Executor
from predictd.agent.service import ActionService
from predictd.analytics.service import AnalyticsService
from predictd.db.engine import Database
from predictd.health import ReadinessProbe
from predictd.inference.cache import LocalCache, PredictionCache
from predictd.inference.service import InferenceService
from predictd.monitoring.alerts import AlertService
from predictd.monitoring.drift import DriftService
from predictd.monitoring.feedback import FeedbackService
from predictd.monitoring.performance import PerformanceService
from predictd.observability import Metrics
from predictd.recording.recorder import PredictionRecorder
from predictd.recording.repository import PredictionWriter
from predictd.registry.loader import ModelLoader
from predictd.registry.service import ModelRegistry
from predictd.settings import CacheSettings, Settings


@dataclass
class Services:
    settings: Settings
    metrics: Metrics
    db: Database
    registry: ModelRegistry
    recorder: PredictionRecorder
    inference: InferenceService
    analytics: AnalyticsService
    feedback: FeedbackService
    performance: PerformanceService
    alerts: AlertService
    drift: DriftService
    loader: ModelLoader
    readiness: ReadinessProbe
    keys: KeyRing
    key_service: KeyService
    limiter: RateLimiter
    refusals: audit.RefusalLog
    actions: ActionService
    executor: Executor  # runs approved actions (the server's schedule, `actions run`)
    redis: Any | None = None

    async def close(self) -> None:
        """Release what the services hold, users before what they use: the database last,
        after the recorder has shipped what it could. Nothing started is required: a
        command that only built them closes them the same way."""
        await self.readiness.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.inference.close()
        await self.recorder.close()
        await self.db.dispose()


def build_services(settings: Settings, metrics: Metrics) -> Services:
    """Every service, built but not started (nothing is connected, spooled or scheduled
    until something uses it; the lifespan starts the recorder and the background tasks)."""
    db = Database(settings.database, writer_connections=settings.recording.concurrency)
    recorder = PredictionRecorder(settings.recording, PredictionWriter(db), metrics)
    redis = shared_redis(settings.cache)
    cache = prediction_cache(settings.cache, redis, metrics)
    inference = InferenceService(settings.inference, settings.recording, recorder, metrics, cache)
    registry = ModelRegistry(settings.inference, db)
    loader = ModelLoader(registry, inference, metrics)
    key_service = KeyService(db)
    actions = ActionService(db, metrics)
    executor = Executor(db, registry, settings.agent, settings.retraining,
                        settings.alerts.webhook_url, actions=actions)  # fmt: skip
    access = settings.access
    admin_token = access.admin_token.get_secret_value() if access.admin_token else None
    return Services(
        settings=settings,
        metrics=metrics,
        db=db,
        registry=registry,
        recorder=recorder,
        inference=inference,
        analytics=AnalyticsService(db),
        feedback=FeedbackService(db, metrics),
        performance=PerformanceService(db),
        alerts=AlertService(db),
        drift=DriftService(db, settings.monitoring, registry.vocabulary),
        loader=loader,
        readiness=ReadinessProbe(db, recorder, loader),
        keys=KeyRing(
            key_service,
            metrics,
            admin_token,
            snapshot_path=snapshot.path_beside(settings.recording.spool_dir),
            lookup_timeout_s=access.keys_lookup_timeout_s,
        ),
        key_service=key_service,
        limiter=RateLimiter(access, redis, redis_timeout_s=settings.cache.redis_timeout_s),
        refusals=audit.RefusalLog(),
        actions=actions,
        executor=executor,
        redis=redis,
    )


def prediction_cache(
    settings: CacheSettings, redis: Any | None, metrics: Metrics
) -> PredictionCache | None:
    if settings.mode == "off":
        return None
    return PredictionCache(
        LocalCache(settings.max_items, settings.ttl_s),
        redis if settings.mode == "redis" else None,
        timeout_s=settings.redis_timeout_s,
        ttl_s=settings.ttl_s,
        lookups=metrics.cache_lookups,
    )


def shared_redis(settings: CacheSettings) -> Any | None:
    """The Redis client of REDIS_URL (connections open lazily), or None."""
    if settings.redis_url is None:
        return None
    from redis.asyncio import Redis

    timeout = settings.redis_timeout_s
    return Redis.from_url(
        settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
    )
