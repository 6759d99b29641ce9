"""The app factory. Nothing happens at import; the lifespan builds and disposes everything."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.telemetry import TelemetryConfig

from predictd import __version__, telemetry, worker_metrics
from predictd.access import audit
from predictd.access.exposure import ExposedWithoutAuth, exposure_problem, open_without_auth
from predictd.agent.policy import load_policy
from predictd.agent.remediation import Remediation
from predictd.api import FAST_TABLE, ROUTERS, Dispatcher, ServingMiddleware, install_error_handlers
from predictd.api.bodies import document_bodies
from predictd.api.endpoints import FastTable
from predictd.api.routes import predict
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.monitoring.monitor import monitor_forever
from predictd.monitoring.recording_health import RecordingWatch
from predictd.monitoring.series import MonitorSeries
from predictd.monitoring.system import SystemSampler, pool_in_use
from predictd.observability import Metrics, configure_logging
from predictd.retraining import retrain_forever
from predictd.schemas.v2 import InferRequest
from predictd.services import build_services
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
    problem = exposure_problem(settings.access, settings.server.host)
    if problem is not None:  # here, so that every server running the app refuses
        raise ExposedWithoutAuth(problem)
    metrics = metrics or Metrics.create()
    # Read now, so a bad PREDICTD_AGENT_POLICY stops the server at start, naming the field.
    policy = load_policy(settings.agent.policy) if settings.agent.enabled else None
    # Before the app exists, so FastAPI's instrumentation finds the providers it will use.
    stop_telemetry = telemetry.configure() if settings.server.opentelemetry else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.server.log_level, settings.server.log_format)
        audit.set_actor(audit.Actor("predictd"))  # the server's own changes (and its tasks')
        services = build_services(settings, metrics)
        db, recorder, loader = services.db, services.recorder, services.loader
        app.state.services = services
        tasks: list[asyncio.Task[None]] = []

        async def first_load() -> None:
            """Migrate and load the first model while /health already answers (and /ready
            says `starting`). With the database away, serve the local model at once rather
            than wait on the registry's timeouts too."""
            database_away = False
            if settings.database.migrate_on_startup:
                try:
                    async with asyncio.timeout(settings.database.connect_timeout_s + 5):
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
            await loader.watch(settings.inference.registry_poll_s)

        recorder.start()
        services.inference.start()
        monitoring, alerts = settings.monitoring, settings.alerts
        metrics.sample(metrics.db_pool_in_use, lambda: pool_in_use(db))
        series = MonitorSeries(db, metrics, timedelta(hours=monitoring.window_h))
        metrics.collect_from(series)
        if worker_metrics.directory() is not None:  # one of several workers
            tasks.append(asyncio.create_task(metrics.refresh_forever()))
        tasks.append(asyncio.create_task(services.keys.forever(settings.access.keys_refresh_s)))
        tasks.append(asyncio.create_task(services.refusals.forever(db)))
        loaded = asyncio.create_task(first_load())
        tasks += [loaded, asyncio.create_task(follow_registry(loaded))]

        async def read_series(started: asyncio.Task[None]) -> None:
            await started  # after start-up's migration, not racing it for the tables
            await series.forever(monitoring.metrics_refresh_s)

        tasks.append(asyncio.create_task(read_series(loaded)))
        if monitoring.system_metrics_interval_s > 0:
            sampler = SystemSampler(db, recorder.state, lambda: pool_in_use(db))
            tasks.append(asyncio.create_task(sampler.forever(monitoring.system_metrics_interval_s)))
        watch = RecordingWatch(alerts, recorder.state, services.alerts, metrics)
        tasks.append(asyncio.create_task(watch.forever(min(5.0, alerts.recording_s / 5))))
        agent = settings.agent
        if agent.enabled and agent.execute_interval_s > 0:  # after start-up has migrated

            async def execute_actions(started: asyncio.Task[None]) -> None:
                await started
                await services.executor.forever(agent.execute_interval_s)

            tasks.append(asyncio.create_task(execute_actions(loaded)))
        if monitoring.interval_s > 0:
            vocabularies = services.registry.vocabulary
            after = None
            if policy is not None:  # the agent plans on what each pass found
                remediation = Remediation(db, services.registry, agent, services.actions, policy)
                after = remediation.after_pass
            monitor = monitor_forever(db, monitoring, alerts, metrics, vocabularies, after)
            tasks.append(asyncio.create_task(monitor))
        if settings.retraining.interval is not None:  # a staging candidate per model, per interval
            retraining = retrain_forever(db, services.registry, settings.retraining)
            tasks.append(asyncio.create_task(retraining))
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
            metrics.stop_collecting(series)
            # the refusals counted since the last write, bounded like one chunk's write
            await services.refusals.flush(db, within_s=audit.REFUSALS_WRITE_S)
            await services.close()
            if stop_telemetry is not None:
                await asyncio.to_thread(stop_telemetry)  # the last spans and metrics sent
            log.info("predictd stopped")

    app = FastAPI(
        title="predictd",
        version=__version__,
        description="Serve trained models over HTTP; every prediction is kept.",
        lifespan=lifespan,
        # FastAPI otherwise asks the OpenTelemetry API for providers on every request.
        telemetry=None if settings.server.opentelemetry else _NO_TELEMETRY,
        docs_url="/docs" if settings.server.docs else None,
        redoc_url="/redoc" if settings.server.docs else None,
        openapi_url="/openapi.json" if settings.server.docs else None,
    )
    install_error_handlers(app, metrics)
    for router in ROUTERS:
        app.include_router(router)
    document_bodies(app, *predict.BODIES, InferRequest)
    app.add_middleware(
        Dispatcher,
        table=FAST_TABLE if fast_table else FastTable([]),
        metrics=metrics,
        max_concurrency=settings.server.max_concurrency,
    )
    app.add_middleware(
        ServingMiddleware,
        metrics=metrics,
        max_body_bytes=settings.server.max_body_bytes,
        body_timeout_s=settings.server.body_timeout_s,
        loopback_only=open_without_auth(settings.access),
    )
    # outermost, so preflights are answered before anything else
    if settings.server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id", "retry-after"],
        )
    return app


def create_server_app(settings: Settings | None = None) -> FastAPI:
    """The app as a server process runs it: under `predictd serve` with the settings the
    command built (each worker gets them whole), else read from the environment. One of
    several workers joins only once its model is loaded."""
    return create_app(settings, wait_for_model=worker_metrics.directory() is not None)


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and granian (settings from the environment)."""
    return create_server_app()
