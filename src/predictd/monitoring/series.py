"""The monitor's latest findings as Prometheus series: realised and estimated accuracy, the
drift share and each feature's drift flag, and the shadow agreement, per model and version.

They come from the rows monitor passes stored, so every process reads them from the database
(every ``PREDICTD_METRICS_REFRESH_S``, in the background) and a scrape answers from the last
read: under ``serve --workers N`` each worker shows the same values, never a sum, and never
one worker's view of a pass it did not run. Only production and staging versions get series,
and at most ``MAX_FEATURES`` feature flags each, so the label sets stay few. Whether the read
succeeded is ``predictd_db_pool_ready``. On PostgreSQL the same read says how far the
partitions of ``predictions`` reach, so a monitor that stopped making them is seen before rows
pile up in the default partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from predictd.db.engine import Database
from predictd.db.errors import translate_errors
from predictd.db.partitions import Coverage, coverage
from predictd.monitoring.repository import SeriesRepository, SystemMetricsRepository
from predictd.monitoring.repository.series import AGREEMENT
from predictd.observability import Metrics
from predictd.vocabulary import Window

log = logging.getLogger("predictd.monitor")

MAX_FEATURES = 50  # drift flags per version: the first names in order, the share covers all
READ_TIMEOUT_S = 2.0
AGREEMENT_ROWS = 1000  # newest agreement rows read back, far more than candidates at once

Key = tuple[str, str]  # model, version (as the label says it)


@dataclass(frozen=True, slots=True)
class Snapshot:
    realised: dict[Key, float] = field(default_factory=dict)
    estimated: dict[Key, float] = field(default_factory=dict)
    drift_share: dict[Key, float] = field(default_factory=dict)
    drifted: dict[tuple[str, str, str], float] = field(default_factory=dict)
    agreement: dict[Key, float] = field(default_factory=dict)
    partitions: Coverage | None = None  # PostgreSQL's partitioned predictions table only


def _accuracy(values: Any) -> float | None:
    if isinstance(values, Mapping) and isinstance(values.get("accuracy"), int | float):
        return float(values["accuracy"])
    return None


class MonitorSeries(Collector):
    """A collector over the latest monitor rows, read by ``refresh`` off the scrape path."""

    def __init__(self, db: Database, metrics: Metrics, horizon: timedelta) -> None:
        self.db = db
        self.metrics = metrics
        self.horizon = horizon  # agreement rows older than this are no longer "latest"
        self.snapshot = Snapshot()

    async def read(self) -> Snapshot:
        now = datetime.now(UTC)
        since = now - self.horizon
        async with translate_errors("reading monitor series"), self.db.engine.connect() as conn:
            snapshot = Snapshot(partitions=await coverage(conn, now))
            repo = SeriesRepository(conn)
            watched = await repo.watched_versions()
            for name, version in watched:
                key = (name, str(version))
                performance = await repo.latest_performance(name, version)
                if performance is not None:
                    for target, values in zip(
                        (snapshot.realised, snapshot.estimated), performance, strict=True
                    ):
                        accuracy = _accuracy(values)
                        if accuracy is not None:
                            target[key] = accuracy
                drift = await repo.latest_drift(name, version)
                if drift is not None:
                    self._drift(snapshot, key, *drift)
            staged = {(name, str(version)) for name, version in watched}
            for rate, labels in await repo.agreements(since, AGREEMENT_ROWS):
                if not isinstance(labels, Mapping):
                    continue
                key = (str(labels.get("model")), str(labels.get("version")))
                if key in staged and key not in snapshot.agreement:  # newest first
                    snapshot.agreement[key] = rate
        return snapshot

    @staticmethod
    def _drift(snapshot: Snapshot, key: Key, status: str, score: Any, features: Any) -> None:
        if status != "ok":  # no reference, too few rows: no verdict to show
            return
        if isinstance(score, int | float):
            snapshot.drift_share[key] = float(score)
        if not isinstance(features, Mapping):
            return
        tested = [
            (str(feature), result)
            for feature, result in sorted(features.items())
            if isinstance(result, Mapping) and result.get("status") == "ok"
        ]
        for feature, result in tested[:MAX_FEATURES]:
            snapshot.drifted[(*key, feature)] = 1.0 if result.get("drifted") else 0.0

    async def refresh(self) -> bool:
        """Read the latest rows; keep the last snapshot while the database is away.
        Reachability is its own one-round-trip probe, so many versions or a slow series read
        never pass for a database that is down."""
        self.metrics.db_pool_ready.set(1 if await self._reachable() else 0)
        try:
            async with asyncio.timeout(READ_TIMEOUT_S * 5):
                self.snapshot = await self.read()
        except Exception as exc:
            log.debug("monitor series not refreshed", extra={"error": repr(exc)})
            return False
        return True

    async def _reachable(self) -> bool:
        """Twice before saying no: one stalled round trip on a busy host, or a pooled
        connection the server closed, is not a database that is down."""
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(READ_TIMEOUT_S), self.db.engine.connect() as conn:
                    await SeriesRepository(conn).ping()
            except Exception as exc:
                log.debug("database probe failed", extra={"attempt": attempt, "error": repr(exc)})
                continue
            return True
        return False

    async def forever(self, interval_s: float) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(interval_s)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self.snapshot
        per_version = (
            ("predictd_model_realised_accuracy_ratio",
             "Accuracy on labelled answers (feedback) in the latest monitor pass.",
             snap.realised),
            ("predictd_model_estimated_accuracy_ratio",
             "Label-free accuracy estimate from confidence in the latest monitor pass.",
             snap.estimated),
            ("predictd_drift_share_ratio",
             "Share of the tested features that drifted, in the latest drift report.",
             snap.drift_share),
            ("predictd_shadow_agreement_ratio",
             "Share of shadowed inputs on which the candidate version answered what "
             "production answered, in the latest monitor pass.",
             snap.agreement),
        )  # fmt: skip
        for name, help_text, values in per_version:
            family = GaugeMetricFamily(name, help_text, labels=["model", "version"])
            for (model, version), value in sorted(values.items()):
                family.add_metric([model, version], value)
            yield family
        drifted = GaugeMetricFamily(
            "predictd_drift_feature_drifted",
            f"1 if the feature drifted in the latest drift report, else 0 (the first "
            f"{MAX_FEATURES} tested features of a version).",
            labels=["model", "version", "feature"],
        )
        for labels, value in sorted(snap.drifted.items()):
            drifted.add_metric(list(labels), value)
        yield drifted
        yield from self._partitions(snap.partitions)

    @staticmethod
    def _partitions(found: Coverage | None) -> Iterator[GaugeMetricFamily]:
        """Both families always, with a sample only where the table is partitioned."""
        ahead = GaugeMetricFamily(
            "predictd_partitions_ahead",
            "Partitions of predictions that start after now (PostgreSQL); made by the "
            "monitor pass or `predictd db partitions ensure`.",
        )
        default = GaugeMetricFamily(
            "predictd_partition_default_used",
            "1 if rows landed in the default partition of predictions (a period with no "
            "partition), else 0; the next ensure moves them out.",
        )
        if found is not None:
            ahead.add_metric([], found.ahead)
            default.add_metric([], 1.0 if found.default_used else 0.0)
        yield ahead
        yield default


async def measure_agreement(
    db: Database, window: timedelta, model: str | None = None, now: datetime | None = None
) -> list[dict[str, Any]]:
    """A monitor pass's step: for each version that answered shadowed inputs in the window,
    how often it gave production's answer, stored as a ``shadow_agreement`` row of
    ``system_metrics`` (value: the rate; labels: model, version, shadowed, agreed)."""
    end = now or datetime.now(UTC)
    scope = Window(end - window, end, model)
    async with translate_errors("measuring shadow agreement"), db.engine.begin() as conn:
        repo = SeriesRepository(conn)
        found: list[dict[str, Any]] = []
        for name, version in await repo.shadowed_versions(scope):
            shadowed, agreed = await repo.agreement(name, version, Window(end - window, end))
            if shadowed:
                found.append({"model": name, "version": version, "shadowed": shadowed,
                              "agreed": agreed, "rate": agreed / shadowed})  # fmt: skip
        if found:
            rows = [
                {"ts": end, "name": AGREEMENT, "value": row["rate"],
                 "labels": {k: v for k, v in row.items() if k != "rate"}}
                for row in found
            ]  # fmt: skip
            await SystemMetricsRepository(conn).add(rows)
    return found
