"""The app factory. Nothing happens at import; the lifespan builds and disposes everything."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.telemetry import TelemetryConfig

from predictd import __version__, worker_metrics
from predictd.access import audit, snapshot
from predictd.access.exposure import ExposedWithoutAuth, exposure_problem, open_without_auth
from predictd.access.keyring import KeyRing
from predictd.access.keys import KeyService
from predictd.access.limits import RateLimiter
from predictd.analytics.service import AnalyticsService
from predictd.api import (
    FAST_TABLE,
    ROUTERS,
    Dispatcher,
    Services,
    ServingMiddleware,
    install_error_handlers,
)
from predictd.api.bodies import document_bodies
from predictd.api.endpoints import FastTable
from predictd.api.routes import predict
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.health import ReadinessProbe
from predictd.inference.cache import LocalCache, PredictionCache
from predictd.inference.service import InferenceService
from predictd.monitoring.alerts import AlertService
from predictd.monitoring.drift import DriftService
from predictd.monitoring.feedback import FeedbackService
from predictd.monitoring.monitor import monitor_forever
from predictd.monitoring.performance import PerformanceService
from predictd.monitoring.recording_health import RecordingWatch
from predictd.monitoring.system import SystemSampler, pool_in_use
from predictd.observability import Metrics, configure_logging
from predictd.recording.recorder import PredictionRecorder
from predictd.recording.repository import PredictionWriter
from predictd.registry.loader import ModelLoader
from predictd.registry.service import ModelRegistry
from predictd.schemas.v2 import InferRequest
from predictd.settings import Settings

log = logging.getLogger("predictd.app")

RETRY_S = 2.0
# A worker whose first load takes longer joins anyway and answers 503 until it has a model.
WORKER_JOIN_WAIT_S = 60.0


async def _migrate_until_done(db: Database) -> None:
    """Auto-migrate, retrying while the database is unreachable."""
    while True:
        try:
            await migrate.upgrade(db)
            log.info("database schema is up to date")
            return
        except Exception as exc:
            log.warning("migration failed; retrying", extra={"error": repr(exc)})
            await asyncio.sleep(RETRY_S)


_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(
    settings: Settings | None = None,
    metrics: Metrics | None = None,
    *,
    wait_for_model: bool = False,
    fast_table: bool = True,
) -> FastAPI:
    """``wait_for_model``: finish the lifespan's start-up only after the first model load
    (bounded by ``WORKER_JOIN_WAIT_S``), for workers sharing a socket. A single server starts
    at once instead, so /health answers while a database at fault slows the first load.
    ``fast_table=False`` serves the hot endpoints through their FastAPI routes (the parity
    test compares the two)."""
    settings = settings or Settings()
    problem = exposure_problem(settings, settings.host)
    if problem is not None:  # here, so that every server running the app refuses
        raise ExposedWithoutAuth(problem)
    metrics = metrics or Metrics.create()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.log_format)
        audit.set_actor(audit.Actor("predictd"))  # the server's own changes (and its tasks')
        db = Database(settings)
        recorder = PredictionRecorder(settings, PredictionWriter(db), metrics)
        redis = shared_redis(settings)
        inference = InferenceService(
            settings, recorder, metrics, prediction_cache(settings, redis, metrics)
        )
        registry = ModelRegistry(settings, db)
        loader = ModelLoader(registry, inference, metrics)
        key_service = KeyService(db)
        admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
        services = Services(
            settings=settings,
            metrics=metrics,
            db=db,
            registry=registry,
            recorder=recorder,
            inference=inference,
            analytics=AnalyticsService(db),
            feedback=FeedbackService(db),
            performance=PerformanceService(db),
            alerts=AlertService(db),
            drift=DriftService(db, settings, registry.vocabulary),
            loader=loader,
            readiness=ReadinessProbe(db, recorder, loader),
            keys=KeyRing(
                key_service,
                metrics,
                admin_token,
                snapshot_path=snapshot.path_beside(settings.spool_dir),
                lookup_timeout_s=settings.keys_lookup_timeout_s,
            ),
            key_service=key_service,
            limiter=RateLimiter(settings, redis),
            refusals=audit.RefusalLog(),
        )
        app.state.services = services
        tasks: list[asyncio.Task[None]] = []

        async def first_load() -> None:
            """Migrate and load the first model while /health already answers (and /ready
            says `starting`). With the database away, serve the local model at once rather
            than wait on the registry's timeouts too."""
            database_away = False
            if settings.migrate_on_startup:
                try:
                    async with asyncio.timeout(settings.db_connect_timeout_s + 5):
                        await migrate.upgrade(db)
                except Exception as exc:
                    log.warning("database not migrated at startup", extra={"error": repr(exc)})
                    tasks.append(asyncio.create_task(_migrate_until_done(db)))
                    database_away = True
            if database_away:
                await loader.serve_local()
            else:
                await loader.attempt()
            services.readiness.started = True
            # What start-up built (the app, the model and its vocabulary) lives as long as
            # the process: frozen, it is left out of the collector's full passes, which
            # otherwise stall every request in flight (p99 166 -> 35 ms measured at c=32).
            gc.freeze()
            log.info("started", extra={"model": services.readiness.model().detail})

        async def follow_registry(loaded: asyncio.Task[None]) -> None:
            await loaded
            await loader.watch(settings.registry_poll_s)

        recorder.start()
        inference.start()
        if worker_metrics.directory() is not None:  # one of several workers
            tasks.append(asyncio.create_task(metrics.refresh_forever()))
        tasks.append(asyncio.create_task(services.keys.forever(settings.keys_refresh_s)))
        tasks.append(asyncio.create_task(services.refusals.forever(db)))
        loaded = asyncio.create_task(first_load())
        tasks += [loaded, asyncio.create_task(follow_registry(loaded))]
        if settings.system_metrics_interval_s > 0:
            sampler = SystemSampler(db, recorder.state, lambda: pool_in_use(db))
            tasks.append(asyncio.create_task(sampler.forever(settings.system_metrics_interval_s)))
        watch = RecordingWatch(settings, recorder.state, services.alerts, metrics)
        tasks.append(asyncio.create_task(watch.forever(min(5.0, settings.alert_recording_s / 5))))
        if settings.monitor_interval_s > 0:
            tasks.append(
                asyncio.create_task(monitor_forever(db, settings, metrics, registry.vocabulary))
            )
        try:
            if wait_for_model:
                # Workers share one listening socket and the kernel hands connections only to
                # workers that accept: one that joins once its model is loaded never answers
                # 503 while a sibling is ready (nor does a SIGHUP replacement before it can).
                await asyncio.wait({loaded}, timeout=WORKER_JOIN_WAIT_S)
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            # the refusals counted since the last write, bounded like one chunk's write
            await services.refusals.flush(db, within_s=audit.REFUSALS_WRITE_S)
            await services.readiness.close()
            if redis is not None:
                await redis.aclose()
            await inference.close()
            await recorder.close()
            await db.dispose()
            log.info("predictd stopped")

    app = FastAPI(
        title="predictd",
        version=__version__,
        description="Serve trained models over HTTP; every prediction is kept.",
        lifespan=lifespan,
        # FastAPI otherwise asks the OpenTelemetry API for providers on every request.
        telemetry=None if settings.opentelemetry else _NO_TELEMETRY,
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
        openapi_url="/openapi.json" if settings.docs else None,
    )
    install_error_handlers(app, metrics)
    for router in ROUTERS:
        app.include_router(router)
    document_bodies(app, *predict.BODIES, InferRequest)
    app.add_middleware(
        Dispatcher,
        table=FAST_TABLE if fast_table else FastTable([]),
        metrics=metrics,
        max_concurrency=settings.max_concurrency,
    )
    app.add_middleware(
        ServingMiddleware,
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
        loopback_only=open_without_auth(settings),
    )
    if settings.cors_origins:  # outermost, so preflights are answered before anything else
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id", "retry-after"],
        )
    return app


def prediction_cache(
    settings: Settings, redis: Any | None, metrics: Metrics
) -> PredictionCache | None:
    if settings.cache == "off":
        return None
    return PredictionCache(
        LocalCache(settings.cache_max_items, settings.cache_ttl_s),
        redis if settings.cache == "redis" else None,
        timeout_s=settings.redis_timeout_ms / 1000,
        ttl_s=settings.cache_ttl_s,
        lookups=metrics.cache_lookups,
    )


def shared_redis(settings: Settings) -> Any | None:
    """The Redis client of REDIS_URL (connections open lazily), or None."""
    if settings.redis_url is None:
        return None
    from redis.asyncio import Redis

    timeout = settings.redis_timeout_ms / 1000
    return Redis.from_url(
        settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
    )


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and multi-worker serving (settings from the env)."""
    return create_app(wait_for_model=worker_metrics.directory() is not None)
