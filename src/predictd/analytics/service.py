"""Analytics over recorded predictions (reads the database, never the hot path)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from predictd.analytics.histogram import latency_quantiles
from predictd.analytics.repository import AnalyticsRepository, Interval
from predictd.db.engine import Database
from predictd.db.errors import translate_errors
from predictd.db.tables import LATENCY_BOUNDS_MS
from predictd.vocabulary import Window, comparable_label


class AnalyticsService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def summary(self, window: Window) -> dict[str, Any]:
        async with translate_errors("reading analytics"), self.db.read_connection() as conn:
            totals = await AnalyticsRepository(conn).totals(window)
        histogram = totals.pop("histogram")
        quantiles = latency_quantiles(histogram)
        answered = totals["total"]
        return {
            **totals,
            "cache_hit_rate": totals["cache_hits"] / answered if answered else None,
            **{f"{name}_latency_ms": value for name, value in quantiles.items()},
        }

    async def distribution(self, window: Window) -> list[tuple[Any, int]]:
        async with translate_errors("reading analytics"), self.db.read_connection() as conn:
            return await AnalyticsRepository(conn).distribution(window)

    async def confidence(self, window: Window) -> list[int]:
        async with translate_errors("reading analytics"), self.db.read_connection() as conn:
            return await AnalyticsRepository(conn).confidence_bins(window)

    async def latency(self, window: Window) -> dict[str, Any]:
        async with translate_errors("reading analytics"), self.db.read_connection() as conn:
            histogram = (await AnalyticsRepository(conn).totals(window))["histogram"]
        bounds: list[float | None] = [*LATENCY_BOUNDS_MS, None]
        return {
            "count": sum(histogram),
            **{f"{name}_ms": value for name, value in latency_quantiles(histogram).items()},
            "buckets": [
                {"le_ms": bound, "count": n} for bound, n in zip(bounds, histogram, strict=True)
            ],
        }

    async def timeseries(self, window: Window, interval: Interval) -> list[dict[str, Any]]:
        async with translate_errors("reading analytics"), self.db.read_connection() as conn:
            rows = await AnalyticsRepository(conn).timeseries(window, interval)
        points = []
        for row in rows:
            count, confidences = row["count"], row["confidence_count"]
            quantiles = latency_quantiles(row["histogram"])
            points.append(
                {
                    "ts": row["ts"],
                    "count": count,
                    "errors": row["errors"],
                    "avg_confidence": row["confidence_sum"] / confidences if confidences else None,
                    "avg_latency_ms": row["latency_sum"] / count if count else None,
                    "p50_latency_ms": quantiles["p50"],
                    "p95_latency_ms": quantiles["p95"],
                    "p99_latency_ms": quantiles["p99"],
                }
            )
        return points

    async def recent(
        self,
        window: Window,
        limit: int,
        before: tuple[datetime, UUID] | None = None,
        include_input: bool = False,
    ) -> list[dict[str, Any]]:
        async with translate_errors("reading analytics"), self.db.read_connection() as conn:
            return await AnalyticsRepository(conn).recent(window, limit, before, include_input)

    async def arm(
        self, name: str, version: int, start: datetime | None, end: datetime | None
    ) -> dict[str, Any]:
        """Everything recorded for one version of a model, shadow answers included: counts
        by variant, labels, confidence, latency, and accuracy where feedback exists."""
        window = Window(start, end, name, version, include_shadow=True)
        async with translate_errors("reading analytics"), self.db.read_connection() as conn:
            repo = AnalyticsRepository(conn)
            variants = await repo.variant_counts(window)
            labels = await repo.distribution(window)
            pairs = await repo.labelled(name, version, start, end)
        labelled = sum(n for _, _, n in pairs)
        correct = sum(
            n for pred, act, n in pairs if comparable_label(pred) == comparable_label(act)
        )
        return {
            "version": version,
            "variants": variants,
            **await self.summary(window),
            "labels": labels,
            "labelled": labelled,
            "accuracy": correct / labelled if labelled else None,
        }

    async def agreement(
        self, name: str, version: int, start: datetime | None, end: datetime | None
    ) -> tuple[int, int]:
        async with translate_errors("reading analytics"), self.db.read_connection() as conn:
            return await AnalyticsRepository(conn).agreement(name, version, start, end)
