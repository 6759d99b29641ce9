"""One monitor pass: performance and drift per version, then the alert rules over what it
measured. Run by `predictd monitor run` and, with PREDICTD_MONITOR_INTERVAL_S, inside the
server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from predictd.analytics.service import AnalyticsService
from predictd.db import partitions, schedules
from predictd.db.engine import Database
from predictd.monitoring.alerts import (
    AlertService,
    Changes,
    Webhook,
    accuracy_findings,
    drift_findings,
    serving_findings,
)
from predictd.monitoring.drift import DriftService, Vocabularies
from predictd.monitoring.performance import PerformanceService
from predictd.monitoring.repository import MonitorRepository
from predictd.monitoring.series import measure_agreement
from predictd.observability import Metrics
from predictd.settings import AlertSettings, MonitoringSettings
from predictd.vocabulary import Window

log = logging.getLogger("predictd.monitor")

MONITOR_LOCK = 0x7072_6564  # advisory lock key: one monitor pass at a time per database
MONITOR_SCHEDULE = "monitor"  # its row in `schedules`: one pass per interval across replicas


@dataclass(frozen=True, slots=True)
class MonitorResult:
    performance: list[dict[str, Any]]
    drift: list[dict[str, Any]]
    alerts: Changes
    agreement: list[dict[str, Any]] = field(default_factory=list)  # per shadowed candidate


async def run_monitor(
    db: Database,
    settings: MonitoringSettings,
    alerts: AlertSettings,
    window: timedelta,
    model: str | None = None,
    metrics: Metrics | None = None,
    vocabularies: Vocabularies | None = None,
) -> MonitorResult:
    end = datetime.now(UTC)
    await _ensure_partitions(db, end)
    performance = await PerformanceService(db).run(window, model, now=end)
    drift = await DriftService(db, settings, vocabularies).run(window, model, now=end)
    agreement = await measure_agreement(db, window, model, now=end)
    findings = accuracy_findings(performance, await _training_accuracy(db, performance), alerts)
    findings += drift_findings(drift)
    analytics = AnalyticsService(db)
    for name in sorted({row["model_name"] for row in performance}):
        summary = await analytics.summary(Window(end - window, end, name))
        findings += serving_findings(name, summary, alerts)
    service = AlertService(db)
    changes = await service.apply(findings)
    await Webhook(alerts.webhook_url).send(changes)
    if metrics is not None:
        metrics.alerts_active.clear()
        for (rule, severity), count in (await service.active_counts()).items():
            metrics.alerts_active.labels(rule=rule, severity=severity).set(count)
    return MonitorResult(performance, drift, changes, agreement)


async def _ensure_partitions(db: Database, now: datetime) -> None:
    """Keep the next partitions of `predictions` made (PostgreSQL). A failure is logged and
    the pass goes on: a missing partition only sends rows to the default partition."""
    try:
        done = await partitions.ensure(
            db, db.settings.partition_interval, db.settings.partitions_ahead, now=now
        )
    except Exception as exc:
        log.warning("could not create partitions", extra={"error": repr(exc)})
        return
    if done.created:
        log.info("partitions created", extra={"partitions": done.created, "moved": done.moved})


async def _training_accuracy(
    db: Database, performance: list[dict[str, Any]]
) -> dict[tuple[str, int], float]:
    keys = {(row["model_name"], row["model_version"]) for row in performance}
    if not keys:
        return {}
    async with db.engine.connect() as conn:
        return await MonitorRepository(conn).training_accuracy(keys)


@asynccontextmanager
async def exclusive_pass(db: Database) -> AsyncIterator[bool]:
    """True for the one replica that runs this pass: on PostgreSQL a session advisory lock,
    so N replicas on one schedule store one row per version, not N."""
    if db.dialect != "postgresql":
        yield True
        return
    async with db.engine.connect() as conn:
        repo = MonitorRepository(conn)
        held = await repo.try_lock(MONITOR_LOCK)
        try:
            yield held
        finally:
            if held:
                await repo.unlock(MONITOR_LOCK)


AfterPass = Callable[[MonitorResult], Awaitable[object]]


async def monitor_forever(
    db: Database,
    settings: MonitoringSettings,
    alerts: AlertSettings,
    metrics: Metrics,
    vocabularies: Vocabularies | None = None,
    after: AfterPass | None = None,
) -> None:
    """The in-server schedule: a failed pass (database away) is logged and retried next time.
    ``after`` (the agent's planning) runs on what the pass found, by the same replica."""
    window = timedelta(hours=settings.window_h)
    period = timedelta(seconds=settings.interval_s)
    while True:
        await asyncio.sleep(settings.interval_s)
        try:
            async with exclusive_pass(db) as mine:
                if not mine:
                    log.debug("monitor pass skipped: another replica is running it")
                    continue
                if not await schedules.claim(db, MONITOR_SCHEDULE, period):
                    log.debug("monitor pass skipped: another replica ran it this interval")
                    continue
                result = await run_monitor(
                    db, settings, alerts, window, metrics=metrics, vocabularies=vocabularies
                )
                if after is not None:
                    try:
                        await after(result)
                    except Exception as exc:  # the pass itself is stored; plan again next time
                        log.warning("after the monitor pass", extra={"error": repr(exc)})
            log.info(
                "monitor pass",
                extra={"versions": len(result.performance),
                       "drift_detected": sum(bool(r["drift_detected"]) for r in result.drift),
                       "alerts_opened": len(result.alerts.opened),
                       "alerts_resolved": len(result.alerts.resolved)},
            )  # fmt: skip
        except Exception as exc:
            log.warning("monitor pass failed", extra={"error": repr(exc)})
